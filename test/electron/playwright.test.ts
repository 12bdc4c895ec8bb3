/**
 * Runs the Playwright specs (test/e2e, playwright.config.ts) as part of `npm test`: Chromium
 * against web mode; the Electron project reports itself skipped unless ELECTRON_PATH is set.
 * This test fails when any spec fails; Playwright's own output is printed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/env.js';

const chromium = '/usr/bin/chromium';

describe('Playwright (renderer in Chromium via web mode)', () => {
  it.skipIf(!existsSync(chromium))('every spec passes', () => {
    const run = spawnSync(process.execPath, [join(ROOT, 'node_modules', '@playwright', 'test', 'cli.js'), 'test'], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, PLAYWRIGHT_BROWSERS_PATH: '0', CI: '1' },
      maxBuffer: 64 * 1024 * 1024,
      timeout: 600_000,
    });
    process.stdout.write(run.stdout);
    process.stderr.write(run.stderr);
    expect(run.error).toBeUndefined();
    expect(run.stdout).toMatch(/\d+ passed/);
    expect(run.stdout).not.toMatch(/\d+ failed/);
    expect(run.status).toBe(0);
  }, 600_000);
});
