/**
 * The session browser in Chromium: search, sort by size, a project's sessions from the totals,
 * and a pin that lands in the JSONC config with its comments kept.
 */
import Database from 'better-sqlite3';
import { readdirSync, readFileSync } from 'node:fs';
import type { Page } from '@playwright/test';
import { expect, test } from './fixtures.js';

function sql<T>(db: string, query: string, ...args: unknown[]): T[] {
  const conn = new Database(db, { readonly: true });
  try {
    return conn.prepare(query).all(...args) as T[];
  } finally {
    conn.close();
  }
}

async function openBrowser(app: Page): Promise<void> {
  await expect(app.locator('body[data-ready="true"]')).toBeAttached({ timeout: 30_000 });
  await app.locator('#size-dialog').evaluate((d: HTMLDialogElement) => d.open && d.close());
  await app.getByRole('button', { name: 'Sessions', exact: true }).click();
  await expect(app.locator('#view-sessions[data-loaded="true"]')).toBeAttached();
}

test('search, sort and projects page through the sessions; pin writes keep with comments kept', async ({ app, env }) => {
  await openBrowser(app);
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
  await openBrowser(app);
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
  await openBrowser(app);
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
