/**
 * The session browser in Chromium: search, sort by size, a project's sessions from the totals,
 * and a pin that lands in the JSONC config with its comments kept.
 */
import Database from 'better-sqlite3';
import { readdirSync, readFileSync } from 'node:fs';
import { expect, openSessions, ready, test } from './fixtures.js';

function sql<T>(db: string, query: string, ...args: unknown[]): T[] {
  const conn = new Database(db, { readonly: true });
  try {
    return conn.prepare(query).all(...args) as T[];
  } finally {
    conn.close();
  }
}

test('search, sort and projects page through the sessions; pin writes keep with comments kept', async ({ app, env }) => {
  await openSessions(app);
  const table = app.locator('#browse-table');
  await expect(table).toHaveAttribute('data-total', '93');
  await expect(table.locator('tbody tr')).toHaveCount(50);
  await expect(app.locator('#browse-range')).toHaveText('1–50 of 93 sessions');
  await app.getByRole('button', { name: 'Next' }).click();
  await expect(app.locator('#browse-range')).toHaveText('51–93 of 93 sessions');
  await app.getByRole('button', { name: 'Previous' }).click();

  // Largest first: sizes descending down the page.
  await app.getByLabel('Sort', { exact: true }).selectOption('size');
  await expect(async () => {
    const sizes = (await table.locator('tbody tr').evaluateAll((rows) => rows.map((r) => Number(r.getAttribute('data-bytes')))));
    expect(sizes.length).toBe(50);
    expect(sizes).toEqual([...sizes].sort((a, b) => b - a));
  }).toPass();

  // Search: exactly the titles SQL finds.
  const word = sql<{ title: string }>(env.db, 'SELECT title FROM session WHERE parent_id IS NULL ORDER BY id LIMIT 1')[0]!.title.split(/\s+/).find((w) => w.length > 3)!;
  const matching = sql<{ n: number }>(env.db, "SELECT count(*) AS n FROM session WHERE parent_id IS NULL AND title LIKE '%' || ? || '%'", word)[0]!.n;
  await app.getByLabel('Search', { exact: true }).fill(word);
  await expect(table).toHaveAttribute('data-total', String(matching));
  await app.getByLabel('Search', { exact: true }).fill('');
  await expect(table).toHaveAttribute('data-total', '93');

  // A project from the totals: its sessions, as many as SQL counts.
  const top = sql<{ project: string; n: number }>(env.db, 'SELECT project_id AS project, count(*) AS n FROM session WHERE parent_id IS NULL GROUP BY project_id ORDER BY n DESC LIMIT 1')[0]!;
  await app.locator(`button.project[data-project="${top.project}"]`).click();
  await expect(table).toHaveAttribute('data-total', String(top.n));
  await expect(app.locator(`button.project[data-project="${top.project}"]`)).toHaveAttribute('aria-pressed', 'true');
  await app.getByRole('button', { name: /^All projects/ }).click();

  // Pin the first row.
  const first = (await table.locator('tbody tr').first().getAttribute('data-session-id'))!;
  await app.locator(`button[data-pin="${first}"]`).click();
  await expect(app.locator(`button[data-pin="${first}"]`)).toHaveAttribute('aria-pressed', 'true');
  const text = readFileSync(env.config, 'utf8');
  expect(text).toContain("// OpenCode's own settings stay as they are");
  expect(text).toContain('/* inline comment */');
  expect(text).toContain('// warn early for the test database');
  expect(text).toMatch(new RegExp(`"keep": \\[\\s*"${first}"\\s*\\]`));
  await app.locator(`button[data-pin="${first}"]`).click();
  await expect(app.locator(`button[data-pin="${first}"]`)).toHaveAttribute('aria-pressed', 'false');
  expect(readFileSync(env.config, 'utf8')).not.toContain(first);
});

test('a session opens with its messages paged, attachments as links to the attachment URL, never base64', async ({ app, env }) => {
  await openSessions(app);
  await app.getByLabel('Sort', { exact: true }).selectOption('size');
  // The root session holding the largest attachment.
  const rootId = sql<{ session: string }>(
    env.db,
    "SELECT session_id AS session FROM part WHERE instr(data, '\"data:') > 0 AND session_id IN (SELECT id FROM session WHERE parent_id IS NULL) ORDER BY length(data) DESC LIMIT 1",
  )[0]!.session;
  await app.getByLabel('Search', { exact: true }).fill(sql<{ title: string }>(env.db, 'SELECT title FROM session WHERE id = ?', rootId)[0]!.title);
  await app.locator(`button[data-open-session="${rootId}"]`).click();
  const viewer = app.locator('#session-view');
  await expect(viewer).toHaveAttribute('data-loaded', 'true');
  await expect(viewer.locator('#session-messages > li').first()).toBeVisible();
  while ((await viewer.locator('a.attachment-link').count()) === 0 && (await app.locator('#btn-session-more').isVisible())) {
    await app.locator('#btn-session-more').click();
    await expect(app.locator('#btn-session-more')).toBeEnabled();
  }
  const link = viewer.locator('a.attachment-link').first();
  await expect(link).toBeVisible();
  expect(await app.content()).not.toMatch(/base64,/);
  const response = app.context().waitForEvent('response', (r) => r.url().includes('/attachment/'));
  await link.click();
  const answer = await response;
  expect(answer.status()).toBe(200);
  expect(Number(answer.headers()['content-length'])).toBeGreaterThan(1000);
  await app.getByRole('button', { name: 'Back to the list' }).click();
  await expect(app.locator('#browse-table')).toBeVisible();
});

test('sessions chosen in the browser are archived and removed, after a confirmation that states the count', async ({ app, env }) => {
  await openSessions(app);
  await app.getByLabel('Sort', { exact: true }).selectOption('size');
  const rows = app.locator('#browse-table tbody tr');
  await expect(rows).toHaveCount(50);
  // Old enough to be removable: the generated sessions are all older than an hour.
  const first = (await rows.nth(0).getAttribute('data-session-id'))!;
  await app.locator(`input[data-select="${first}"]`).check();
  await app.getByRole('button', { name: 'Next' }).click();
  await expect(app.locator('#browse-range')).toHaveText('51–93 of 93 sessions');
  const second = (await rows.nth(0).getAttribute('data-session-id'))!;
  await app.locator(`input[data-select="${second}"]`).check();
  await expect(app.locator('#browse-selection')).toHaveText('2 sessions selected.');
  await app.getByRole('button', { name: 'Archive and remove selected…' }).click();
  await expect(app.locator('#remove-text')).toContainText('This removes 2 sessions of 93');
  await expect(app.getByRole('button', { name: 'Cancel' })).toBeFocused();
  await app.getByRole('button', { name: 'Archive and remove 2 sessions' }).click();
  await expect(app.locator('#remove-result')).toContainText('2 sessions archived and removed', { timeout: 60_000 });
  await expect(app.locator('#browse-table')).toHaveAttribute('data-total', '91');
  const left = new Set(sql<{ id: string }>(env.db, 'SELECT id FROM session').map((r) => r.id));
  expect(left.has(first)).toBe(false);
  expect(left.has(second)).toBe(false);
  expect(readdirSync(env.archiveDir).filter((f) => f.endsWith('.json.gz'))).toHaveLength(1);
});

test('the chart’s attachments slice opens the browser sorted by attachment bytes; slices not of sessions say why', async ({ app, env }) => {
  await ready(app);
  const dialog = app.locator('#size-dialog');
  await expect(dialog).toBeVisible();
  // Free pages, indexes and data-folder places are not per session: plain, with a title saying so.
  await expect(dialog.locator('.bars [data-slice="free"]')).toHaveAttribute('title', /not to any session/);
  await expect(dialog.locator('.bars span[data-slice="other"]')).toHaveCount(1);
  await expect(dialog.locator('.bars button[data-slice]')).toHaveCount(3);
  // A button, reached and pressed with the keyboard.
  const slice = dialog.locator('.bars button[data-slice="attachments"]');
  await slice.focus();
  await app.keyboard.press('Enter');
  await expect(dialog).toBeHidden();
  const table = app.locator('#browse-table');
  await expect(table).toHaveAttribute('data-sort', 'attachments');
  await expect(app.getByLabel('Sort', { exact: true })).toHaveValue('attachments');
  await expect(table.locator('thead th[data-kind="attachments"]')).toHaveText('Attachments');

  // Independent SQL: each root tree's data URLs as stored (file parts' and tool outputs' alike), largest first.
  const expected = sql<{ id: string; b: number }>(
    env.db,
    `WITH tree AS (SELECT id, coalesce(parent_id, id) AS root FROM session)
     SELECT t.root AS id, sum(length(j.value)) AS b FROM part p JOIN tree t ON t.id = p.session_id, json_tree(p.data) AS j
     WHERE j.key = 'url' AND j.type = 'text' AND j.value LIKE 'data:%'
     GROUP BY t.root ORDER BY b DESC, t.root LIMIT 5`,
  );
  expect(expected.length).toBeGreaterThan(2);
  const rows = table.locator('tbody tr');
  await expect(rows.first()).toHaveAttribute('data-session-id', expected[0]!.id);
  const shown = await rows.evaluateAll((trs) => trs.map((r) => ({ id: r.getAttribute('data-session-id'), b: Number(r.querySelector('[data-kind-bytes]')?.getAttribute('data-kind-bytes')) })));
  // Descending by attachment bytes down the page, and the largest ones the SQL's, in its order.
  expect(shown.map((r) => r.b)).toEqual([...shown.map((r) => r.b)].sort((a, b) => b - a));
  expect(shown.slice(0, expected.length).map((r) => r.id)).toEqual(expected.map((e) => e.id));
  for (const [i, e] of expected.entries()) expect(Math.abs(shown[i]!.b - e.b)).toBeLessThanOrEqual(e.b * 0.01 + 64);
});
