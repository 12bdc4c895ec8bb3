/**
 * A clean-up a person can follow: phases with their counts, a warning when the dialog is closed
 * mid-run, the run shown again when the dialog is reopened, a note when it ends and every figure
 * read again; Cancel from the dialog. The utility pauses each run for a few seconds after its
 * archive is written (a test hook) so that "mid-run" is a moment the test can count on.
 */
import Database from 'better-sqlite3';
import { existsSync, readdirSync } from 'node:fs';
import { expect, openPlan, snap, test } from './fixtures.js';

test.use({ serveEnv: { SESSION_KEEPER_TEST_HOOKS: '1', SESSION_KEEPER_TEST_RUN_PAUSE_MS: '4000' } });

function sessionCount(db: string): number {
  const conn = new Database(db, { readonly: true });
  try {
    return (conn.prepare('SELECT count(*) AS n FROM session WHERE parent_id IS NULL').get() as { n: number }).n;
  } finally {
    conn.close();
  }
}

async function startRun(app: import('@playwright/test').Page): Promise<number> {
  const dialog = app.locator('#size-dialog');
  const summary = await openPlan(app);
  const planned = Number(await summary.getAttribute('data-evict'));
  await dialog.getByRole('button', { name: 'Archive and clean up', exact: true }).click();
  await dialog.getByRole('button', { name: `Archive and remove ${planned} sessions` }).click();
  return planned;
}

test('closing mid-run warns, the reopened dialog shows the run, a note says when it ended, figures are read again', async ({ app, env }, testInfo) => {
  const dialog = app.locator('#size-dialog');
  const planned = await startRun(app);
  // The archive phase counted up to every session, then the run waits before verifying.
  await expect(dialog.locator('.phase[data-phase="archive"]')).toHaveClass(/done/);
  await expect(dialog.locator('.phase[data-phase="verify"]')).toHaveClass(/running/);
  await expect(dialog.locator('.phase-figure[data-phase="archive"]')).toHaveText(/^done$|sessions, .* written$/);
  await expect(dialog.locator('#btn-cancel-run')).toBeVisible();
  await snap(app, `run-${testInfo.project.name}`, testInfo);
  // Escape does not close silently.
  await app.keyboard.press('Escape');
  await expect(dialog.locator('#close-warning')).toBeVisible();
  await expect(dialog.locator('#close-warning')).toContainText('goes on in the background');
  await expect(dialog).toBeVisible();
  await dialog.getByRole('button', { name: 'Close, let it run' }).click();
  await expect(dialog).toBeHidden();
  // Reopened while it runs: the run, not a new plan.
  await app.getByRole('button', { name: 'Size check and clean-up…' }).click();
  await expect(dialog.locator('#run-title')).toHaveText('Archiving and cleaning up');
  await expect(dialog.locator('#btn-clean')).toHaveCount(0);
  // It ends: the dialog says what it did, the page says so too, the figures are new.
  await expect(dialog.locator('#apply-result')).toBeVisible({ timeout: 60_000 });
  await expect(dialog.locator('#apply-result')).toContainText(`${planned} sessions removed`);
  await expect(app.locator('#banner')).toContainText(`The clean-up finished: ${planned} sessions removed`);
  await expect(dialog.locator('#dialog-summary')).toContainText('It is under every warning threshold.');
  await expect(app.locator('#home-warning')).toHaveCount(0);
  expect(sessionCount(env.db)).toBe(93 - planned);
});

test('Cancel from the dialog: nothing removed, the run says so', async ({ app, env }) => {
  const dialog = app.locator('#size-dialog');
  const before = sessionCount(env.db);
  await startRun(app);
  await expect(dialog.locator('.phase[data-phase="verify"]')).toHaveClass(/running/);
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await expect(dialog.locator('#btn-cancel-run')).toHaveText('Cancelling…');
  await expect(dialog.locator('#run-title')).toHaveText('Cancelled', { timeout: 60_000 });
  await expect(dialog.locator('#apply-result')).toHaveAttribute('data-cancelled', 'yes');
  await expect(dialog.locator('#apply-result')).toContainText('Cancelled: 0 sessions removed');
  await expect(app.locator('#banner')).toContainText('The clean-up was cancelled');
  expect(sessionCount(env.db)).toBe(before);
  // Cancelled before anything was deleted: the unfinished archive is not left behind.
  expect(existsSync(env.archiveDir) ? readdirSync(env.archiveDir).filter((f) => f.endsWith('.json.gz')) : []).toEqual([]);
});
