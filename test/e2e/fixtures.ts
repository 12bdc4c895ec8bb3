/**
 * One app per test: a copy of a generated OpenCode database (over a 20 MB warning threshold), a
 * JSONC config with comments, a private data folder (warning state) and attachment cache; then
 * either `session-keeper serve` opened in Chromium, or the demo Electron app when ELECTRON_PATH
 * is set for the `electron` project.
 */
import { expect, test as base, _electron, type Locator, type Page } from '@playwright/test';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(ROOT, 'dist', 'bin', 'session-keeper.js');
const MB = 1024 * 1024;

export const CONFIG_TEXT = `{
  // OpenCode's own settings stay as they are
  "$schema": "https://opencode.ai/config.json",
  "theme": "opencode", /* inline comment */
  "session": {
    // warn early for the test database
    "warnAtMB": [20],
    "archiveDir": "ARCHIVE_DIR"
  }
}
`;

export interface AppEnv {
  dir: string;
  db: string;
  config: string;
  archiveDir: string;
  cacheDir: string;
  dataHome: string;
  /** CLI flags that point at the same database, config and cache. */
  cliArgs: string[];
}

interface Fixtures {
  env: AppEnv;
  app: Page;
  /** Extra environment for the served utility (test hooks), set with test.use. */
  serveEnv: Record<string, string>;
}

interface WorkerFixtures {
  baseDb: string;
}

export const test = base.extend<Fixtures, WorkerFixtures>({
  serveEnv: [{}, { option: true }],

  baseDb: [
    async ({}, use) => {
      const dir = mkdtempSync(join(tmpdir(), 'sk-e2e-base-'));
      const path = join(dir, 'opencode.db');
      const { generateFixture } = (await import(join(ROOT, 'build', 'dev', 'test', 'fixtures', 'generate.js'))) as typeof import('../fixtures/generate.js');
      generateFixture({ path, targetBytes: 36 * MB, hugeAttachmentBytes: 3 * MB, seed: 5, diffFiles: false });
      await use(path);
      rmSync(dir, { recursive: true, force: true });
    },
    { scope: 'worker' },
  ],

  env: async ({ baseDb }, use) => {
    const dir = mkdtempSync(join(tmpdir(), 'sk-e2e-'));
    const db = join(dir, 'opencode.db');
    copyFileSync(baseDb, db);
    const archiveDir = join(dir, 'archive');
    const config = join(dir, 'opencode.jsonc');
    writeFileSync(config, CONFIG_TEXT.replace('ARCHIVE_DIR', archiveDir));
    const cacheDir = join(dir, 'cache');
    const dataHome = join(dir, 'data');
    mkdirSync(dataHome);
    await use({ dir, db, config, archiveDir, cacheDir, dataHome, cliArgs: ['--db', db, '--config', config, '--cache-dir', cacheDir] });
    rmSync(dir, { recursive: true, force: true });
  },

  // Not the built-in `page`: that would launch a browser for the electron project too.
  app: async ({ env, playwright, serveEnv }, use, testInfo) => {
    const childEnv = { ...process.env, XDG_DATA_HOME: env.dataHome, XDG_CONFIG_HOME: join(env.dir, 'config-home'), ...serveEnv };
    if (testInfo.project.name === 'electron') {
      const electronPath = process.env['ELECTRON_PATH'];
      const main = join(ROOT, 'out', 'main', 'index.js');
      if (!electronPath || !existsSync(electronPath)) {
        testInfo.skip(true, 'ELECTRON_PATH does not name an Electron binary (none can be downloaded here); the chromium project runs these specs against web mode');
        return;
      }
      if (!existsSync(main)) testInfo.skip(true, 'the demo app is not built: run npx electron-vite build');
      const electronApp = await _electron.launch({
        executablePath: electronPath,
        args: [main, '--no-sandbox'],
        env: { ...childEnv, SK_DEMO_DB: env.db, SK_DEMO_CONFIG: env.config, SK_DEMO_CACHE: env.cacheDir } as Record<string, string>,
      });
      const window = await electronApp.firstWindow();
      await window.setViewportSize({ width: 800, height: 600 });
      await use(window);
      await electronApp.close();
      return;
    }
    const server: ChildProcess = spawn(process.execPath, [CLI, ...env.cliArgs, 'serve'], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    server.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const url = await new Promise<string>((resolveUrl, reject) => {
      const lines = createInterface({ input: server.stdout! });
      lines.once('line', (line) => resolveUrl(line.trim()));
      server.once('exit', (code) => reject(new Error(`serve exited (${code}): ${stderr}`)));
    });
    const browser = await playwright.chromium.launch(testInfo.project.use.launchOptions ?? {});
    const context = await browser.newContext({ viewport: { width: 800, height: 600 } });
    const page = await context.newPage();
    await page.goto(url);
    await use(page);
    if (testInfo.status !== testInfo.expectedStatus) {
      await page.screenshot({ path: testInfo.outputPath('failed.png') }).catch(() => undefined);
    }
    await browser.close();
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
  },
});

export { expect } from '@playwright/test';

/** Saves a screenshot as a test artifact under test-results/. */
export async function snap(page: Page, name: string, testInfo: { outputPath: (n: string) => string; attach: (n: string, o: { path: string; contentType: string }) => Promise<void> }): Promise<void> {
  const path = testInfo.outputPath(`${name}.png`);
  await page.screenshot({ path });
  await testInfo.attach(name, { path, contentType: 'image/png' });
  const shots = join(ROOT, 'test-results', 'screenshots');
  mkdirSync(shots, { recursive: true });
  copyFileSync(path, join(shots, `${name}.png`));
}

/** The page once it has loaded its figures. */
export async function ready(page: Page): Promise<void> {
  await expect(page.locator('body[data-ready="true"]')).toBeAttached({ timeout: 30_000 });
}

/** The session browser, the size-check dialog closed first if it opened at startup, once its first page is in. */
export async function openSessions(page: Page): Promise<void> {
  await ready(page);
  await page.locator('#size-dialog').evaluate((d: HTMLDialogElement) => d.open && d.close());
  await page.getByRole('button', { name: 'Sessions', exact: true }).click();
  await expect(page.locator('#view-sessions[data-loaded="true"]')).toBeAttached();
}

/**
 * The size-check dialog's plan: "Archive and clean up now…", the size typed when given; resolves
 * with the plan's summary once it is shown (for `underMB`, once it is the plan of that size).
 */
export async function openPlan(page: Page, underMB?: string): Promise<Locator> {
  const dialog = page.locator('#size-dialog');
  await dialog.getByRole('button', { name: 'Archive and clean up now…' }).click();
  if (underMB !== undefined) await dialog.getByLabel('Keep the database under').fill(underMB);
  const summary = dialog.locator('#plan-summary');
  await expect(summary).toBeVisible();
  return summary;
}

/** The settings panel opened from the size-check dialog, once its form is filled. */
export async function openSettings(page: Page): Promise<void> {
  await page.locator('#size-dialog').getByRole('button', { name: 'Open settings' }).click();
  await expect(page.locator('#settings-form[data-loaded="true"]')).toBeVisible();
}
