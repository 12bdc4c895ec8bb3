import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { CLI, expect, openPlan, snap, test } from './fixtures.js';
import { sessionIds } from '../helpers/session-rows.js';

/** The root sessions among `ids`. */
function rootIds(db: string, ids: Set<string>): string[] {
  const conn = new Database(db, { readonly: true });
  try {
    const children = new Set((conn.prepare('SELECT id FROM session WHERE parent_id IS NOT NULL').all() as { id: string }[]).map((r) => r.id));
    return [...ids].filter((id) => !children.has(id));
  } finally {
    conn.close();
  }
}

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
  await openPlan(app);
  const input = dialog.getByLabel('Keep the database under');
  // Just below the threshold that fired (20 MB), not a fraction of the smallest one.
  await expect(input).toHaveValue('18');
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
  const summary = await openPlan(app);
  const planned = Number(await summary.getAttribute('data-evict'));
  await dialog.getByRole('button', { name: 'Archive and clean up', exact: true }).click();
  // More than half the sessions: said with the count and asked again, the safe answer focused.
  await expect(dialog.locator('#confirm-title')).toContainText(`Remove ${planned} sessions of 93?`);
  await expect(dialog.locator('#confirm-text')).toContainText(`This removes ${planned} sessions of 93`);
  await expect(dialog.getByRole('button', { name: 'Cancel' })).toBeFocused();
  await snap(app, `confirm-${testInfo.project.name}`, testInfo);
  await dialog.getByRole('button', { name: `Archive and remove ${planned} sessions` }).click();
  await expect(dialog.locator('#apply-result')).toBeVisible({ timeout: 60_000 });
  await expect(dialog.locator('#apply-result')).toContainText(`${planned} sessions removed`);
  await expect(dialog.locator('#apply-result')).toContainText('Reclaimed');
  await expect(dialog.locator('#apply-progress')).toHaveAttribute('value', '100');
  await snap(app, `clean-up-done-${testInfo.project.name}`, testInfo);
  const archives = readdirSync(env.archiveDir).filter((f) => f.endsWith('.json.gz'));
  expect(archives.length).toBeGreaterThanOrEqual(1);
  expect(statSync(`${env.archiveDir}/${archives[0]}`).size).toBeGreaterThan(0);
  const after = statSync(env.db).size;
  expect(after).toBeLessThan(before);
  expect(after).toBeLessThanOrEqual(18 * 1024 * 1024);
  for (const name of archives) await expect(dialog.locator('#apply-archive')).toContainText(name);
});

test('"Remind me later" closes the dialog and it comes back at the next start', async ({ app }) => {
  const dialog = app.locator('#size-dialog');
  await dialog.getByRole('button', { name: 'Remind me later' }).click();
  await expect(dialog).toBeHidden();
  await app.reload();
  await expect(app.locator('#size-dialog')).toBeVisible();
});

test('Enter twice along the default focus removes nothing', async ({ app, env }) => {
  const dialog = app.locator('#size-dialog');
  await expect(dialog.getByRole('button', { name: 'Archive and clean up now…' })).toBeFocused();
  await app.keyboard.press('Enter');
  await expect(dialog.locator('#plan-summary')).toBeVisible();
  await app.keyboard.press('Enter');
  await app.keyboard.press('Enter');
  await app.waitForTimeout(500);
  expect(existsSync(env.archiveDir) ? readdirSync(env.archiveDir) : []).toEqual([]);
  await expect(dialog.locator('#apply-progress')).toHaveCount(0);
});

test('stale plan: while a new plan is made Apply waits, and it runs the plan on screen', async ({ app, env }) => {
  const dialog = app.locator('#size-dialog');
  const applies: string[] = [];
  app.on('request', (r) => {
    const body = r.postData() ?? '';
    if (r.url().endsWith('/api') && body.includes('"apply"')) applies.push(body);
  });
  await dialog.getByRole('button', { name: 'Archive and clean up now…' }).click();
  const summary = dialog.locator('#plan-summary');
  await expect(summary).toBeVisible();
  const oldPlan = await summary.getAttribute('data-plan-id');
  const oldIds = await summary.getAttribute('data-ids');
  // Planning is slow on a large file: hold every plan answer back by 2 s, as a 1 GB file would.
  await app.route('**/api', async (route) => {
    if ((route.request().postData() ?? '').includes('"plan"')) await new Promise((r) => setTimeout(r, 2000));
    await route.continue();
  });
  const input = dialog.getByLabel('Keep the database under');
  await input.fill('30');
  const apply = dialog.getByRole('button', { name: 'Archive and clean up', exact: true });
  // At once: the old plan is marked out of date and Apply is disabled.
  await expect(apply).toBeDisabled();
  await expect(dialog.locator('#plan-stale')).toBeVisible();
  await expect(dialog.locator('#plan-box')).toHaveClass(/stale/);
  await expect(dialog.locator('#plan-box')).toHaveAttribute('aria-busy', 'true');
  // Every way of pressing it meanwhile does nothing.
  await apply.click({ force: true });
  await apply.evaluate((b: HTMLButtonElement) => b.click());
  await apply.focus();
  await app.keyboard.press('Enter');
  await app.waitForTimeout(300);
  expect(applies).toEqual([]);
  // The new plan arrives: a new id, fewer sessions, Apply enabled for it.
  await expect(apply).toBeEnabled({ timeout: 10_000 });
  await expect(dialog.locator('#plan-stale')).toBeHidden();
  const newPlan = await summary.getAttribute('data-plan-id');
  const newIds = (await summary.getAttribute('data-ids'))!.split(' ');
  expect(newPlan).not.toBe(oldPlan);
  expect(newIds.join(' ')).not.toBe(oldIds);
  await app.unroute('**/api');
  const before = sessionIds(env.db);
  const roots = rootIds(env.db, before);
  await apply.click();
  await expect(dialog.locator('#apply-result')).toBeVisible({ timeout: 60_000 });
  expect(applies).toHaveLength(1);
  expect(JSON.parse(applies[0]!)).toEqual({ method: 'apply', params: { planId: newPlan } });
  const after = sessionIds(env.db);
  const removedRoots = [...before].filter((id) => !after.has(id) && newIds.includes(id));
  expect(removedRoots.sort()).toEqual([...newIds].sort());
  // Nothing beyond the plan on screen: every root not in it is still there.
  for (const id of roots) if (!newIds.includes(id)) expect(after.has(id), id).toBe(true);
});

test('the whole plan can be seen, and a session kept out of this clean-up stays', async ({ app, env }) => {
  const dialog = app.locator('#size-dialog');
  const summary = await openPlan(app, '30');
  await expect(summary).toHaveAttribute('data-evict', '26');
  await dialog.getByRole('button', { name: 'Show all 26' }).click();
  await expect(dialog.locator('table.plan tbody tr[data-session-id]')).toHaveCount(26);
  const first = (await summary.getAttribute('data-ids'))!.split(' ')[0]!;
  await dialog.locator(`button[data-keep="${first}"]`).click();
  await expect(dialog.locator('#plan-excluded')).toHaveAttribute('data-excluded', first);
  await expect(summary).not.toHaveAttribute('data-ids', new RegExp(first));
  const planned = (await summary.getAttribute('data-ids'))!.split(' ');
  await dialog.getByRole('button', { name: 'Archive and clean up', exact: true }).click();
  await expect(dialog.locator('#apply-result')).toBeVisible({ timeout: 60_000 });
  const after = sessionIds(env.db);
  expect(after.has(first)).toBe(true);
  for (const id of planned) expect(after.has(id), id).toBe(false);
});

test('one of the largest sessions can be archived and removed on its own, after a confirmation', async ({ app, env }) => {
  const dialog = app.locator('#size-dialog');
  await expect(dialog.locator('table.largest tbody tr[data-session-id]')).toHaveCount(5);
  const ids = await dialog.locator('table.largest tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-session-id') ?? ''));
  const roots = new Set(rootIds(env.db, new Set(ids)));
  const id = ids.find((i) => roots.has(i))!;
  expect(id).toBeDefined();
  await dialog.locator(`button[data-remove="${id}"]`).click();
  await expect(dialog.locator('#confirm-title')).toHaveText('Remove 1 session of 93?');
  await expect(dialog.getByRole('button', { name: 'Cancel' })).toBeFocused();
  await dialog.getByRole('button', { name: 'Archive and remove 1 session' }).click();
  await expect(dialog.locator('#apply-result')).toContainText('1 session removed', { timeout: 60_000 });
  expect(sessionIds(env.db).has(id)).toBe(false);
  expect(readdirSync(env.archiveDir).filter((f) => f.endsWith('.json.gz'))).toHaveLength(1);
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
