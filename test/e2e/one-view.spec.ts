/**
 * One view of the file and its server in the session browser (Chromium, web mode, the config
 * naming a fresh PostgreSQL database as the primary store): the file is mirrored, then one session
 * leaves the file. The browser lists it marked "server only" beside sessions in both; it opens with
 * its messages paged from the server, its attachment decoded from the server and served from the
 * attachment URL; Restore to this computer brings it back, and the file's rows
 * are then the ones the server's copy was made from, digesting as the server's copy does.
 */
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freshDatabase, type FreshDatabase } from '../external/servers.js';
import { sessionRowsText } from '../helpers/session-rows.js';
import { CLI, CONFIG_TEXT, ROOT, expect, openSessions, snap, test as base } from './fixtures.js';

interface Evicted {
  id: string;
  title: string;
  messages: number;
  /** Its rows as the file held them when the server's copy was made. */
  rows: string;
}


const test = base.extend<{ server: FreshDatabase; evicted: Evicted }>({
  server: async ({}, use) => {
    const server = await freshDatabase('postgres');
    await use(server);
    await server.drop();
  },
  // The file mirrored into the server, then one session (the childless root with the most
  // messages) gone from the file: all before the app starts, which depends on `env`.
  env: async ({ env, server }, use, testInfo) => {
    // The app fixture skips the electron project without a binary: no mirror to set up for it then.
    const electron = process.env['ELECTRON_PATH'];
    if (testInfo.project.name === 'electron' && (!electron || !existsSync(electron))) testInfo.skip(true, 'ELECTRON_PATH does not name an Electron binary (none can be downloaded here); the chromium project runs these specs against web mode');
    writeFileSync(env.config, CONFIG_TEXT.replace('ARCHIVE_DIR', env.archiveDir).replace('"warnAtMB": [20],', `"warnAtMB": [20], "storage": "postgres", "connectionString": ${JSON.stringify(server.url)},`));
    const sync = spawnSync(process.execPath, [CLI, ...env.cliArgs, 'sync', '--once'], { encoding: 'utf8', env: { ...process.env, XDG_DATA_HOME: env.dataHome, XDG_CONFIG_HOME: join(env.dir, 'config-home') } });
    expect(sync.status, sync.stderr).toBe(0);
    const file = new Database(env.db);
    file.pragma('foreign_keys = ON');
    const { id, title, messages } = file
      .prepare(
        `SELECT s.id, s.title, (SELECT count(*) FROM message m WHERE m.session_id = s.id) AS messages FROM session s
         WHERE s.parent_id IS NULL AND s.id NOT IN (SELECT parent_id FROM session WHERE parent_id IS NOT NULL)
           AND (SELECT count(*) FROM session t WHERE t.title = s.title) = 1
           AND EXISTS (SELECT 1 FROM part p WHERE p.session_id = s.id AND instr(p.data, '"data:') > 0)
         ORDER BY messages DESC, s.id LIMIT 1`,
      )
      .get() as { id: string; title: string; messages: number };
    const evicted: Evicted = { id, title, messages, rows: sessionRowsText(file, id) };
    file.prepare('DELETE FROM session WHERE id = ?').run(id);
    file.close();
    writeFileSync(join(env.dir, 'evicted.json'), JSON.stringify(evicted));
    await use(env);
  },
  evicted: async ({ env }, use) => {
    await use(JSON.parse(readFileSync(join(env.dir, 'evicted.json'), 'utf8')) as Evicted);
  },
});

test('a server-only session is listed as such, opens paged from the server, and Restore brings it back byte for byte', async ({ app, env, server, evicted }, testInfo) => {
  expect(evicted.messages).toBeGreaterThan(20);
  await openSessions(app);
  const table = app.locator('#browse-table');
  // Every root is listed: the file's 92 (in both) and the one only the server holds.
  await expect(table).toHaveAttribute('data-total', '93');
  await expect(table.locator('tbody tr[data-where="both"]').first()).toBeVisible();
  // "Only on the server": exactly that one.
  await app.getByLabel('Where', { exact: true }).selectOption('server');
  await expect(table).toHaveAttribute('data-total', '1');
  await expect(table.locator('tbody tr')).toHaveCount(1);
  await app.getByLabel('Where', { exact: true }).selectOption('');
  await expect(table).toHaveAttribute('data-total', '93');
  await app.getByLabel('Search', { exact: true }).fill(evicted.title);
  const row = table.locator(`tr[data-session-id="${evicted.id}"]`);
  await expect(row).toHaveAttribute('data-where', 'server');
  await expect(row.locator('.where')).toHaveText('server only');
  await snap(app, 'browser-server-only-800', testInfo);
  // Sorted by attachment bytes: the file cannot say a server-only session's, so a dash that says why.
  await app.getByLabel('Sort', { exact: true }).selectOption('attachments');
  await expect(row.locator('.kind-cell')).toHaveText('—');
  await expect(row.locator('.kind-cell span')).toHaveAttribute('title', /only on the server/);
  await app.getByLabel('Sort', { exact: true }).selectOption('size');
  // Nothing of the file's to archive, remove or pin.
  await expect(row.locator('input[data-select]')).toHaveCount(0);
  await expect(row.locator('button[data-pin]')).toHaveCount(0);

  // Opened: its pages come from the server (showSession answers where: server), 20 messages at a time.
  const pages: { where?: string; messages: unknown[] }[] = [];
  app.on('response', (response) => {
    if (!response.url().endsWith('/api') || !(response.request().postData() ?? '').includes('"showSession"')) return;
    void response.json().then((reply: { ok: boolean; result?: { where?: string; messages: unknown[] } }) => reply.result && pages.push(reply.result));
  });
  await row.locator('button.open-session').click();
  const viewer = app.locator('#session-view');
  await expect(viewer).toHaveAttribute('data-loaded', 'true');
  await expect(viewer).toHaveAttribute('data-where', 'server');
  await expect(viewer.locator('.where')).toHaveText('server only');
  while (await app.locator('#btn-session-more').isVisible()) {
    await app.locator('#btn-session-more').click();
    await expect(app.locator('#btn-session-more')).toBeEnabled();
  }
  await expect(viewer.locator('#session-messages > li')).toHaveCount(evicted.messages);
  await expect.poll(() => pages.reduce((n, p) => n + p.messages.length, 0)).toBe(evicted.messages);
  expect(pages.every((p) => p.where === 'server' && p.messages.length <= 20)).toBe(true);
  expect(pages.length).toBe(Math.max(1, Math.ceil(evicted.messages / 20)));

  // Its attachment decodes from the server into the cache and is served from the attachment URL.
  const link = viewer.locator('a.attachment-link').first();
  await expect(link).toBeVisible();
  expect(await app.content()).not.toMatch(/base64,/);
  const served = app.context().waitForEvent('response', (r) => r.url().includes('/attachment/'));
  await link.click();
  const answer = await served;
  expect(answer.status()).toBe(200);
  expect(Number(answer.headers()['content-length'])).toBeGreaterThan(0);

  await app.getByRole('button', { name: 'Restore to this computer' }).click();
  await expect(app.locator('#restore-result')).toHaveText('Restored to this computer: 1 session, checked against the server.', { timeout: 60_000 });
  await expect(viewer.locator('.where')).toHaveText('both');
  await expect(app.getByRole('button', { name: 'Restore to this computer' })).toHaveCount(0);
  await snap(app, 'browser-restored-800', testInfo);

  // In the file again: the rows the server's copy was made from, digesting as the server's copy does.
  const file = new Database(env.db, { readonly: true });
  try {
    expect(sessionRowsText(file, evicted.id)).toBe(evicted.rows);
  } finally {
    file.close();
  }
  const { openFileReader, openMirrorTarget } = (await import(join(ROOT, 'dist', 'store', 'open-store.js'))) as typeof import('../../src/store/open-store.js');
  const reader = openFileReader(env.db);
  const target = await openMirrorTarget(server.url);
  try {
    const held = (await target.heldVersions([evicted.id])).get(evicted.id);
    expect(held?.digest).toMatch(/^[0-9a-f]{64}$/);
    expect((await target.digestOf(reader.exportSessions([evicted.id]))).digest).toBe(held?.digest);
  } finally {
    await reader.close();
    await target.close();
  }

  await app.getByRole('button', { name: 'Back to the list' }).click();
  await expect(row).toHaveAttribute('data-where', 'both');
  await expect(row.locator('input[data-select]')).toHaveCount(1);
});

test.describe('Restore to this computer as a run', () => {
  // The utility pauses before each tree it restores, so the run can be seen, reloaded and cancelled.
  test.use({ serveEnv: { SESSION_KEEPER_TEST_HOOKS: '1', SESSION_KEEPER_TEST_RUN_PAUSE_MS: '5000' } });

  test('a reloaded page follows the restore; Cancel stops it before the tree, the history lists both restores, password masked', async ({ app, env, server, evicted }, testInfo) => {
    const inFile = (): number => {
      const file = new Database(env.db, { readonly: true });
      try {
        return file.prepare('SELECT (SELECT count(*) FROM session WHERE id = ?) + (SELECT count(*) FROM message WHERE session_id = ?)').pluck().get(evicted.id, evicted.id) as number;
      } finally {
        file.close();
      }
    };
    await openSessions(app);
    await app.getByLabel('Search', { exact: true }).fill(evicted.title);
    const row = app.locator(`#browse-table tr[data-session-id="${evicted.id}"]`);
    await row.locator('button.open-session').click();
    await app.getByRole('button', { name: 'Restore to this computer' }).click();
    await expect(app.locator('#restore-run #run-title')).toHaveText('Restoring from the server');
    await expect(app.locator('#restore-run #btn-cancel-run')).toBeVisible();

    // Reloaded mid-run: the browser finds the run in runStatus and follows it, with its Cancel.
    await app.reload();
    await openSessions(app);
    const run = app.locator('#selection-action #restore-run');
    await expect(run.locator('#run-title')).toHaveText('Restoring from the server');
    await snap(app, 'browser-restore-running-800', testInfo);
    await run.getByRole('button', { name: 'Cancel' }).click();
    await expect(app.locator('#selection-action #restore-result')).toHaveText('Cancelled: 0 sessions restored and checked against the server; 1 session left on the server.', { timeout: 30_000 });
    await expect(app.locator('#selection-action #restore-result')).toHaveAttribute('data-cancelled', 'yes');
    // Stopped before the tree: nothing of it written to the file, and the list still says server only.
    expect(inFile()).toBe(0);
    await app.getByLabel('Search', { exact: true }).fill(evicted.title);
    await expect(row).toHaveAttribute('data-where', 'server');

    // Restored again, to the end this time.
    await row.locator('button.open-session').click();
    await app.getByRole('button', { name: 'Restore to this computer' }).click();
    await expect(app.locator('#restore-line #restore-result')).toHaveText('Restored to this computer: 1 session, checked against the server.', { timeout: 60_000 });
    expect(inFile()).toBe(1 + evicted.messages);

    // Both in the history, newest first, the server named without its password.
    await app.getByRole('button', { name: 'Archives', exact: true }).click();
    const history = app.locator('#history-table tbody tr .history-what');
    await expect(history).toHaveCount(2);
    const masked = new URL(server.url);
    await expect(history.nth(0)).toHaveText(new RegExp(`^Restored 1 session from .*${masked.host.replace(/[.]/g, '\\.')}`));
    await expect(history.nth(1)).toHaveText(/^Restored 0 sessions from .* \(cancelled\)$/);
    if (masked.password) expect(await app.locator('#history-table').textContent()).not.toContain(masked.password);
    await snap(app, 'archives-history-restore-800', testInfo);
  });
});
