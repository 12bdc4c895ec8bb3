import { readFileSync } from 'node:fs';
import { CONFIG_TEXT, expect, openSettings, snap, test } from './fixtures.js';

test('settings saved to a JSONC file keep its comments', async ({ app, env }, testInfo) => {
  await openSettings(app);
  await expect(app.getByRole('heading', { name: 'Settings' })).toBeVisible();
  const retention = app.getByLabel('Remove old sessions automatically at startup');
  await expect(retention).not.toBeChecked();
  await expect(app.getByLabel('Largest database size (MB)')).toBeDisabled();
  await retention.check();
  await app.getByLabel('Largest database size (MB)').fill('30');
  await app.getByLabel('Oldest session to keep (days)').fill('365');
  // The live preview follows the values.
  // Fewer than half the sessions: saved without a second question.
  await expect(app.locator('#preview-summary')).toContainText(/^At next start: 26 sessions of 93 would be removed/);
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
  expect(text).toMatch(/"maxSizeMB": 30/);
  expect(text).toMatch(/"maxAgeDays": 365/);
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
  await expect(app.locator('#f-maxSizeMB-error')).toHaveText('Enter a size in MB greater than 0 (leave it empty for no size limit).');
  await expect(app.getByLabel('Largest database size (MB)')).toHaveAttribute('aria-invalid', 'true');
  await expect(app.locator('#f-warnAtMB-error')).toHaveText('"lots" is not a number. Enter sizes in MB separated by commas, for example 100, 500, 1024.');
  await expect(app.getByLabel('Largest database size (MB)')).toBeFocused();
  await snap(app, `settings-error-${testInfo.project.name}`, testInfo);
  expect(readFileSync(env.config, 'utf8')).toBe(CONFIG_TEXT.replace('ARCHIVE_DIR', env.archiveDir));
});

test('test connection: sqlite checks the file; every control has a label and is reachable by keyboard', async ({ app }) => {
  await openSettings(app);
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

test('values are checked as they are typed, without waiting for the preview', async ({ app }) => {
  await openSettings(app);
  // A slow preview (a large file) must not hold the messages back.
  await app.route('**/api', async (route) => {
    if ((route.request().postData() ?? '').includes('"plan"')) await new Promise((r) => setTimeout(r, 3000));
    await route.continue().catch(() => undefined);
  });
  await app.getByLabel('Remove old sessions automatically at startup').check();
  const started = Date.now();
  await app.getByLabel('Most sessions to keep').fill('2.5');
  await expect(app.locator('#f-maxSessions-error')).toHaveText('2.5 is not a whole number. Enter a whole number of sessions, for example 200 (leave it empty for no count limit).', { timeout: 1000 });
  await app.getByLabel('Oldest session to keep (days)').fill('soon');
  await expect(app.locator('#f-maxAgeDays-error')).toHaveText('"soon" is not a number. Enter a number of days, for example 90.', { timeout: 1000 });
  expect(Date.now() - started).toBeLessThan(2500);
  await app.getByLabel('Backend').selectOption('postgres');
  await expect(app.locator('#f-connectionString-error')).toHaveText('Enter the connection string for PostgreSQL, for example postgres://user@localhost/opencode.');
  await app.unroute('**/api');
});

test('values that would remove most sessions at the next start, or turn archiving off, are confirmed with the count', async ({ app, env }, testInfo) => {
  const original = readFileSync(env.config, 'utf8');
  await openSettings(app);
  await app.getByLabel('Remove old sessions automatically at startup').check();
  await app.getByLabel('Largest database size (MB)').fill('1.5');
  const preview = app.locator('#preview-summary');
  await expect(preview).toContainText(/^At next start: \d+ sessions of 93 would be removed/);
  const n = Number(await preview.getAttribute('data-evict'));
  expect(n).toBeGreaterThan(46);
  // Enter in the field submits; it asks instead of saving, the safe answer focused; Enter again cancels.
  await app.getByLabel('Largest database size (MB)').press('Enter');
  await expect(app.locator('#save-confirm-text')).toContainText(`At next start: ${n} sessions of 93 would be removed`);
  await expect(app.getByRole('button', { name: 'Cancel' })).toBeFocused();
  await snap(app, `settings-confirm-${testInfo.project.name}`, testInfo);
  await app.keyboard.press('Enter');
  await expect(app.locator('#save-status')).toHaveText('Not saved.');
  expect(readFileSync(env.config, 'utf8')).toBe(original);
  // Said yes to: saved.
  await app.getByRole('button', { name: 'Save', exact: true }).click();
  await app.getByRole('button', { name: `Save: remove ${n} sessions at next start` }).click();
  await expect(app.locator('#save-status')).toContainText('Saved to');
  expect(readFileSync(env.config, 'utf8')).toMatch(/"maxSizeMB": 1.5/);
  // Turning archiving off asks too, even when nothing would be removed.
  await app.getByLabel('Remove old sessions automatically at startup').uncheck();
  await app.getByLabel('Archive sessions before removing them').uncheck();
  await app.getByRole('button', { name: 'Save', exact: true }).click();
  await expect(app.locator('#save-confirm-text')).toContainText('Archiving turns off');
  await app.getByRole('button', { name: 'Save with archiving off' }).click();
  await expect(app.locator('#save-status')).toContainText('Saved to');
  expect(readFileSync(env.config, 'utf8')).toMatch(/"archive": false/);
});
