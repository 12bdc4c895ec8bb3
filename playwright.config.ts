/**
 * Browser tests of the renderer. `chromium`: Debian's Chromium against web mode
 * (`session-keeper serve`). `electron`: the same specs through the demo Electron app, only when
 * ELECTRON_PATH names an Electron binary (none can be downloaded here); otherwise every test in
 * that project reports itself skipped with the reason. Screenshots land in test-results/.
 */
import { defineConfig } from '@playwright/test';

const electronPath = process.env['ELECTRON_PATH'] ?? '';
if (!electronPath && process.env['TEST_WORKER_INDEX'] === undefined) {
  console.log('electron project: skipped (ELECTRON_PATH does not name an Electron binary; none can be downloaded here)');
}

export default defineConfig({
  testDir: 'test/e2e',
  outputDir: 'test-results/playwright',
  timeout: 90_000,
  expect: { timeout: 15_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: [['list']],
  use: {
    viewport: { width: 800, height: 600 },
    trace: 'off',
    screenshot: 'only-on-failure',
  },
  projects: [
    {
      name: 'chromium',
      use: {
        browserName: 'chromium',
        launchOptions: {
          executablePath: '/usr/bin/chromium',
          args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
        },
      },
    },
    {
      name: 'electron',
      metadata: { electronPath, skipped: electronPath ? null : 'ELECTRON_PATH is not set' },
    },
  ],
});
