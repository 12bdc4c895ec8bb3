import { readFileSync } from 'node:fs';
import { CONFIG_TEXT, expect, snap, test } from './fixtures.js';

test('settings saved to a JSONC file keep its comments', async ({ app, env }, testInfo) => {
  await app.locator('#size-dialog').getByRole('button', { name: 'Open settings' }).click();
  await expect(app.getByRole('heading', { name: 'Settings' })).toBeVisible();
  await expect(app.locator('#settings-form[data-loaded="true"]')).toBeVisible();
  const retention = app.getByLabel('Remove old sessions automatically at startup');
  await expect(retention).not.toBeChecked();
  await expect(app.getByLabel('Largest database size (MB)')).toBeDisabled();
  await retention.check();
  await app.getByLabel('Largest database size (MB)').fill('25');
  await app.getByLabel('Oldest session to keep (days)').fill('90');
  // The live preview follows the values.
  await expect(app.locator('#preview-summary')).toContainText('would be removed at the next start');
  await snap(app, `settings-light-${testInfo.project.name}`, testInfo);
  await app.emulateMedia({ colorScheme: 'dark' });
  await snap(app, `settings-dark-${testInfo.project.name}`, testInfo);
  await app.emulateMedia({ colorScheme: 'light' });
  await app.getByRole('button', { name: 'Save' }).click();
  await expect(app.locator('#save-status')).toContainText('Saved to');
  const text = readFileSync(env.config, 'utf8');
  expect(text).toContain('// OpenCode\'s own settings stay as they are');
  expect(text).toContain('/* inline comment */');
  expect(text).toContain('// warn early for the test database');
  expect(text).toContain('"theme": "opencode"');
  expect(text).toMatch(/"maxSizeMB": 25/);
  expect(text).toMatch(/"maxAgeDays": 90/);
  // Keys the form did not change were not rewritten.
  expect(text).not.toContain('"orderBy"');
  expect(text).not.toContain('"storage"');
});

test('a bad value shows an error next to its field and saves nothing', async ({ app, env }, testInfo) => {
  await app.evaluate(() => {
    location.hash = '#settings';
  });
  await app.locator('#size-dialog').evaluate((d: HTMLDialogElement) => d.open && d.close());
  await expect(app.getByRole('heading', { name: 'Settings' })).toBeVisible();
  await expect(app.locator('#settings-form[data-loaded="true"]')).toBeVisible();
  await app.getByLabel('Remove old sessions automatically at startup').check();
  await app.getByLabel('Largest database size (MB)').fill('-5');
  await app.getByLabel('Warn at (MB, comma-separated)').fill('100, lots');
  await app.getByRole('button', { name: 'Save' }).click();
  await expect(app.locator('#save-status')).toContainText('Not saved');
  await expect(app.locator('#f-maxSizeMB-error')).toContainText('expected a positive number');
  await expect(app.getByLabel('Largest database size (MB)')).toHaveAttribute('aria-invalid', 'true');
  await expect(app.locator('#f-warnAtMB-error')).toContainText('expected a positive number');
  await expect(app.getByLabel('Largest database size (MB)')).toBeFocused();
  await snap(app, `settings-error-${testInfo.project.name}`, testInfo);
  expect(readFileSync(env.config, 'utf8')).toBe(CONFIG_TEXT.replace('ARCHIVE_DIR', env.archiveDir));
});

test('test connection: sqlite checks the file; every control has a label and is reachable by keyboard', async ({ app }) => {
  await app.locator('#size-dialog').getByRole('button', { name: 'Open settings' }).click();
  await app.getByRole('button', { name: 'Test connection' }).click();
  await expect(app.locator('#test-result')).toContainText('is readable');
  await app.getByLabel('Backend').selectOption('postgres');
  await expect(app.getByLabel('Connection string')).toBeEnabled();
  const unlabelled = await app.evaluate(() =>
    [...document.querySelectorAll('#settings-form input, #settings-form select')].filter((el) => (el as HTMLInputElement).labels?.length === 0).map((el) => el.id),
  );
  expect(unlabelled).toEqual([]);
  await app.getByLabel('Remove old sessions automatically at startup').focus();
  let reached = false;
  for (let i = 0; i < 40 && !reached; i++) {
    await app.keyboard.press('Tab');
    reached = await app.evaluate(() => document.activeElement?.id === 'btn-save');
  }
  expect(reached).toBe(true);
});
