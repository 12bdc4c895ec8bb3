/**
 * A page served by another HTTP server on another 127.0.0.1 port tries what issue 11 reproduced:
 * rewrite the config (`archive: false`) and start a clean-up, by fetch (text/plain and JSON), by
 * a form post and by asking for the token; once from the browser that holds web mode's cookie and
 * once from one that does not. Everything is refused: the config file, the database and the
 * archive folder stay as they were.
 */
import Database from 'better-sqlite3';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Page } from '@playwright/test';
import { expect, test } from './fixtures.js';

function hostilePage(target: string): string {
  const settings = JSON.stringify({ method: 'saveSettings', params: { settings: { archive: false, maxSizeMB: 1 } } });
  const apply = JSON.stringify({ method: 'apply', params: { policy: { maxSizeMB: 1 } } });
  return `<!doctype html><html><body>
<form id="f" method="POST" action="${target}/api" enctype="text/plain" target="sink"><input name='${settings.slice(0, -2)}' value='"}}'></form>
<iframe name="sink"></iframe>
<script>
const target = ${JSON.stringify(target)};
const tries = [];
const post = (body, type, mode) => fetch(target + '/api', { method: 'POST', mode, credentials: 'include', headers: { 'content-type': type }, body })
  .then((r) => r.type + ':' + r.status, (e) => 'refused:' + e.name);
tries.push(post(${JSON.stringify(settings)}, 'text/plain', 'no-cors'));
tries.push(post(${JSON.stringify(apply)}, 'text/plain', 'no-cors'));
tries.push(post(${JSON.stringify(settings)}, 'application/json', 'cors'));
tries.push(post(${JSON.stringify(apply)}, 'application/json', 'cors'));
tries.push(fetch(target + '/api/token', { credentials: 'include' }).then((r) => r.text(), (e) => 'refused:' + e.name));
tries.push(fetch(target + '/api/token', { credentials: 'include', mode: 'no-cors' }).then((r) => r.type + ':' + r.status, (e) => 'refused:' + e.name));
document.getElementById('f').submit();
Promise.all(tries).then((results) => { window.results = results; document.title = 'done'; });
</script></body></html>`;
}

async function startHostile(target: string): Promise<{ server: Server; url: string }> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(hostilePage(target));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/` };
}

function sessionCount(db: string): number {
  const conn = new Database(db, { readonly: true });
  try {
    return (conn.prepare('SELECT count(*) AS n FROM session').get() as { n: number }).n;
  } finally {
    conn.close();
  }
}

async function attack(page: Page, url: string): Promise<string[]> {
  await page.goto(url);
  await expect(page).toHaveTitle('done', { timeout: 20_000 });
  // The form post's answer lands in the iframe; give it time to arrive.
  await page.waitForTimeout(500);
  return page.evaluate(() => (window as unknown as { results: string[] }).results);
}

test('a page on another 127.0.0.1 port cannot change settings or start a clean-up, with or without the cookie', async ({ app, env }) => {
  await expect(app.locator('body[data-ready="true"]')).toBeAttached({ timeout: 30_000 });
  const target = new URL(app.url()).origin;
  const configBefore = readFileSync(env.config, 'utf8');
  const sessionsBefore = sessionCount(env.db);
  const hostile = await startHostile(target);
  try {
    // Same browser as web mode's page: it holds the cookie (SameSite does not separate ports).
    const cookies = await app.context().cookies(target);
    expect(cookies.map((c) => c.name)).toContain('sk_token');
    const withCookie = await app.context().newPage();
    const results = await attack(withCookie, hostile.url);
    // The JSON fetches and the token fetch are stopped by the browser (no CORS); no-cors ones are opaque.
    expect(results[2]).toMatch(/^refused/);
    expect(results[3]).toMatch(/^refused/);
    expect(results[4]).toMatch(/^refused/);
    // Another browser, without the cookie.
    const other = await app.context().browser()!.newContext();
    try {
      await attack(await other.newPage(), hostile.url);
    } finally {
      await other.close();
    }
  } finally {
    await new Promise<void>((r) => hostile.server.close(() => r()));
  }
  expect(readFileSync(env.config, 'utf8')).toBe(configBefore);
  expect(sessionCount(env.db)).toBe(sessionsBefore);
  expect(existsSync(env.archiveDir) ? readdirSync(env.archiveDir) : []).toEqual([]);
  // Web mode's own page still works.
  await app.reload();
  await expect(app.locator('#size-dialog')).toBeVisible();
});
