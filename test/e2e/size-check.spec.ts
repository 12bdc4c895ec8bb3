import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { CLI, expect, snap, test } from './fixtures.js';

test('the size-check dialog opens at startup for a database over a threshold', async ({ app, env }, testInfo) => {
  const dialog = app.locator('#size-dialog');
  await expect(dialog).toBeVisible();
  await expect(dialog.locator('#dialog-title')).toContainText('Your OpenCode database is');
  await expect(dialog.locator('#dialog-summary')).toContainText('20 MB warning threshold');
  await expect(dialog.getByRole('group', { name: /What the space is made of/ })).toBeVisible();
  await expect(dialog.locator('table.largest tbody tr')).toHaveCount(5);
  for (const name of ['Archive and clean up now…', 'Open settings', 'Remind me later']) {
    await expect(dialog.getByRole('button', { name })).toBeVisible();
  }
  // Keyboard: the first action has focus; Tab moves through the others.
  await expect(dialog.getByRole('button', { name: 'Archive and clean up now…' })).toBeFocused();
  await app.keyboard.press('Tab');
  await expect(dialog.getByRole('button', { name: 'Open settings' })).toBeFocused();
  await snap(app, `size-check-light-${testInfo.project.name}`, testInfo);
  await app.emulateMedia({ colorScheme: 'dark' });
  await snap(app, `size-check-dark-${testInfo.project.name}`, testInfo);
  void env;
});

test('the plan preview matches retention --dry-run --json', async ({ app, env }) => {
  const dialog = app.locator('#size-dialog');
  await dialog.getByRole('button', { name: 'Archive and clean up now…' }).click();
  const input = dialog.getByLabel('Keep the database under');
  await expect(input).toHaveValue('16');
  await input.fill('12');
  const summary = dialog.locator('#plan-summary');
  await expect(summary).toBeVisible();
  await expect(async () => {
    const run = spawnSync(process.execPath, [CLI, ...env.cliArgs, '--json', 'retention', '--dry-run', '--max-size-mb', '12'], { encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
    const plan = JSON.parse(run.stdout) as { evict: { id: string }[]; freesBytes: number };
    expect(plan.evict.length).toBeGreaterThan(0);
    expect(await summary.getAttribute('data-ids')).toBe(plan.evict.map((e) => e.id).join(' '));
    expect(Number(await summary.getAttribute('data-frees'))).toBe(plan.freesBytes);
    expect(Number(await summary.getAttribute('data-evict'))).toBe(plan.evict.length);
  }).toPass({ timeout: 15_000 });
  await expect(dialog.locator('table.plan tbody tr').first()).toBeVisible();
});

test('"archive and clean up" leaves an archive and a smaller database', async ({ app, env }, testInfo) => {
  const before = statSync(env.db).size;
  const dialog = app.locator('#size-dialog');
  await dialog.getByRole('button', { name: 'Archive and clean up now…' }).click();
  await expect(dialog.locator('#plan-summary')).toBeVisible();
  await dialog.getByRole('button', { name: 'Archive and clean up', exact: true }).click();
  await expect(dialog.locator('#apply-result')).toBeVisible({ timeout: 60_000 });
  await expect(dialog.locator('#apply-result')).toContainText('Reclaimed');
  await expect(dialog.locator('#apply-progress')).toHaveAttribute('value', '100');
  await snap(app, `clean-up-done-${testInfo.project.name}`, testInfo);
  const archives = readdirSync(env.archiveDir).filter((f) => f.endsWith('.json.gz'));
  expect(archives.length).toBeGreaterThanOrEqual(1);
  expect(statSync(`${env.archiveDir}/${archives[0]}`).size).toBeGreaterThan(0);
  const after = statSync(env.db).size;
  expect(after).toBeLessThan(before);
  expect(after).toBeLessThanOrEqual(16 * 1024 * 1024);
  for (const name of archives) await expect(dialog.locator('#apply-archive')).toContainText(name);
});

test('"Remind me later" closes the dialog and it comes back at the next start', async ({ app }) => {
  const dialog = app.locator('#size-dialog');
  await dialog.getByRole('button', { name: 'Remind me later' }).click();
  await expect(dialog).toBeHidden();
  await app.reload();
  await expect(app.locator('#size-dialog')).toBeVisible();
});

test('"Compact history" frees the superseded snapshots stats counted and keeps every session', async ({ app, env }) => {
  const count = (sql: string): number => Number(spawnSync('sqlite3', [env.db, sql], { encoding: 'utf8' }).stdout.trim());
  const sessionsBefore = count('SELECT count(*) FROM session');
  const partsBefore = count('SELECT count(*) FROM part');
  const eventsBefore = count('SELECT count(*) FROM event');
  const stats = spawnSync(process.execPath, [CLI, ...env.cliArgs, '--json', 'stats'], { encoding: 'utf8' });
  expect(stats.status, stats.stderr).toBe(0);
  const compactable = (JSON.parse(stats.stdout) as { compactableBytes: number }).compactableBytes;
  expect(compactable).toBeGreaterThan(0);
  const dialog = app.locator('#size-dialog');
  const button = dialog.locator('#btn-compact');
  await expect(button).toContainText('keeps every session');
  expect(Number(await button.getAttribute('data-frees'))).toBe(compactable);
  await button.click();
  const result = dialog.locator('#compact-result');
  await expect(result).toBeVisible({ timeout: 60_000 });
  const deleted = Number(await result.getAttribute('data-deleted'));
  expect(deleted).toBeGreaterThan(0);
  expect(count('SELECT count(*) FROM event')).toBe(eventsBefore - deleted);
  expect(count('SELECT count(*) FROM session')).toBe(sessionsBefore);
  expect(count('SELECT count(*) FROM part')).toBe(partsBefore);
  expect(spawnSync('sqlite3', [env.db, 'PRAGMA integrity_check'], { encoding: 'utf8' }).stdout.trim()).toBe('ok');
});
