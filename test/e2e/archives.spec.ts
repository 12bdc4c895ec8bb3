/**
 * Archives and history in Chromium: after a clean-up from the dialog, the Archives view lists its
 * archive, shows the sessions in it, restores one (back exactly: every row as before) and lists
 * the clean-up in the history.
 */
import Database from 'better-sqlite3';
import { expect, openPlan, snap, test } from './fixtures.js';

function rowsOf(db: string, id: string): string {
  const conn = new Database(db, { readonly: true });
  try {
    const out = [
      conn.prepare('SELECT * FROM session WHERE id = ?').all(id),
      conn.prepare('SELECT * FROM message WHERE session_id = ? ORDER BY id').all(id),
      conn.prepare('SELECT * FROM part WHERE session_id = ? ORDER BY id').all(id),
    ];
    return JSON.stringify(out, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString('base64') : v));
  } finally {
    conn.close();
  }
}

test('the archive of a clean-up is listed, a session restored from it comes back exactly, the history has the run', async ({ app, env }, testInfo) => {
  const dialog = app.locator('#size-dialog');
  const summary = await openPlan(app, '30');
  await expect(summary).toHaveAttribute('data-evict', '26');
  const planned = (await summary.getAttribute('data-ids'))!.split(' ');
  const before = new Map(planned.map((id) => [id, rowsOf(env.db, id)]));
  await dialog.getByRole('button', { name: 'Archive and clean up', exact: true }).click();
  await expect(dialog.locator('#apply-result')).toBeVisible({ timeout: 60_000 });
  await dialog.getByRole('button', { name: 'Close' }).first().click();

  await app.getByRole('button', { name: 'Archives', exact: true }).click();
  await expect(app.locator('#view-archives[data-loaded="true"]')).toBeAttached();
  const row = app.locator('#archives-table tbody tr[data-archive]');
  await expect(row).toHaveCount(1);
  await expect(row.locator('td').nth(1)).toHaveText(/^26( \(\+\d+\))?$/);
  await expect(app.locator('#history-table tbody tr').first()).toContainText('26 sessions');
  await row.getByRole('button', { name: /Show the sessions/ }).click();
  await expect(app.locator('#archive-sessions tbody tr')).toHaveCount(26);
  for (const size of [{ width: 1280, height: 800 }, { width: 800, height: 600 }]) {
    await app.setViewportSize(size);
    for (const scheme of ['light', 'dark'] as const) {
      await app.emulateMedia({ colorScheme: scheme });
      await snap(app, `archives-${size.width}x${size.height}-${scheme}-${testInfo.project.name}`, testInfo);
    }
  }
  const id = planned[0]!;
  expect(rowsOf(env.db, id)).toBe('[[],[],[]]');
  await app.locator(`button[data-restore="${id}"]`).click();
  await expect(app.locator('#archives-status')).toContainText('Restored');
  await expect(app.locator(`#archive-sessions tr[data-session-id="${id}"]`)).toHaveAttribute('data-present', 'true');
  expect(rowsOf(env.db, id)).toBe(before.get(id));
  // The others are still only in the archive.
  expect(rowsOf(env.db, planned[1]!)).toBe('[[],[],[]]');
});
