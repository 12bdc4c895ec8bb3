/**
 * Web mode's rules for acting: POST /api needs the token in its header, our own Origin and a JSON
 * body (the cookie alone never acts); the token is handed to our own page only; a malformed path
 * is a 400 and an oversized body a 413 that reaches the client, with or without Content-Length.
 * The browser half (a hostile page on another port in Chromium) is test/e2e/security.spec.ts.
 */
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateFixture } from '../fixtures/generate.js';
// From the build: the server forks dist/main/utility.js beside it.
import { startWebServer, type WebServer } from '../../dist/web/server.js';
import { tempDir } from '../helpers/env.js';

const dir = tempDir('sk-web-security-');
const TOKEN = 'security-token';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request; `body` as a Buffer is sent whole, a number is that many bytes sent chunked (no Content-Length). */
function call(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: string | Buffer | number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    if (typeof body === 'number') {
      const chunk = Buffer.alloc(1024 * 1024, 0x61);
      let left = body;
      const pump = (): void => {
        while (left > 0) {
          left -= chunk.length;
          if (!req.write(chunk)) return void req.once('drain', pump);
        }
        req.end();
      };
      // A server that answered and closed ends the upload: the answer is what counts.
      req.on('response', () => {
        left = 0;
      });
      pump();
    } else {
      req.end(body);
    }
  });
}

describe('web mode: who may act', () => {
  let server: WebServer;
  let origin: string;
  const json = (extra: Record<string, string> = {}): Record<string, string> => ({ 'content-type': 'application/json', ...extra });
  const ping = JSON.stringify({ method: 'ping' });
  beforeAll(async () => {
    const db = join(dir, 'opencode.db');
    generateFixture({ path: db, targetBytes: 2 * 1024 * 1024, seed: 3, diffFiles: false });
    server = await startWebServer({ db, cacheDir: join(dir, 'cache'), token: TOKEN, env: { ...process.env, XDG_DATA_HOME: join(dir, 'data'), XDG_CONFIG_HOME: join(dir, 'config') } });
    origin = `http://127.0.0.1:${server.port}`;
  });
  afterAll(() => server.close());

  it('answers POST /api with the header token, our Origin and a JSON body', async () => {
    const ok = await call(server.port, 'POST', '/api', json({ 'x-session-keeper-token': TOKEN, origin }), ping);
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toMatchObject({ ok: true, result: { pong: true } });
    // localhost is our origin too when the page was opened by that name.
    const local = await call(server.port, 'POST', '/api', json({ 'x-session-keeper-token': TOKEN, host: `localhost:${server.port}`, origin: `http://localhost:${server.port}` }), ping);
    expect(local.status).toBe(200);
  });

  it('refuses the cookie alone, another Origin, no Origin, the token in the query and a non-JSON body', async () => {
    const cookie = `sk_token=${TOKEN}`;
    const cases: [string, Record<string, string>, string, number][] = [
      ['cookie only', json({ cookie, origin }), '/api', 403],
      ['another port', json({ 'x-session-keeper-token': TOKEN, origin: 'http://127.0.0.1:1' }), '/api', 403],
      ['a null origin', json({ 'x-session-keeper-token': TOKEN, origin: 'null' }), '/api', 403],
      ['no origin', json({ 'x-session-keeper-token': TOKEN }), '/api', 403],
      ['query token', json({ cookie, origin }), `/api?token=${TOKEN}`, 403],
      ['text/plain', { 'content-type': 'text/plain', 'x-session-keeper-token': TOKEN, origin }, '/api', 415],
      ['form', { 'content-type': 'application/x-www-form-urlencoded', 'x-session-keeper-token': TOKEN, origin }, '/api', 415],
    ];
    for (const [name, headers, path, status] of cases) {
      const answer = await call(server.port, 'POST', path, headers, ping);
      expect(answer.status, name).toBe(status);
      expect(answer.body, name).not.toContain('pong');
    }
    // No CORS: a preflight gets nothing that would let another origin send JSON.
    const preflight = await call(server.port, 'OPTIONS', '/api', { origin: 'http://127.0.0.1:1', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-session-keeper-token' });
    expect(preflight.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('gives the token to our own page with the cookie only, and the event stream needs the token', async () => {
    const cookie = `sk_token=${TOKEN}`;
    const own = await call(server.port, 'GET', '/api/token', { cookie, 'sec-fetch-site': 'same-origin' });
    expect(own.status).toBe(200);
    expect(JSON.parse(own.body)).toEqual({ token: TOKEN });
    expect((await call(server.port, 'GET', '/api/token', { cookie, 'sec-fetch-site': 'same-site', origin: 'http://127.0.0.1:1' })).status).toBe(403);
    expect((await call(server.port, 'GET', '/api/token', { cookie, 'sec-fetch-site': 'same-site' })).status).toBe(403);
    expect((await call(server.port, 'GET', '/api/token', {})).status).toBe(403);
    expect((await call(server.port, 'GET', '/api/events', { cookie })).status).toBe(401);
    // The page itself and attachments still open with the cookie.
    expect((await call(server.port, 'GET', '/', { cookie })).status).toBe(200);
  });

  it('answers 400 for a malformed path and 413 for an oversized body, before reading it all', async () => {
    for (const path of ['/%zz', '/attachment/%E0%A4%A', '/api%zz']) {
      const answer = await call(server.port, 'GET', `${path}?token=${TOKEN}`);
      expect(answer.status, path).toBe(400);
    }
    const headers = json({ 'x-session-keeper-token': TOKEN, origin });
    const declared = Buffer.alloc(50 * 1024 * 1024, 0x20);
    const big = await call(server.port, 'POST', '/api', headers, declared);
    expect(big.status).toBe(413);
    expect(JSON.parse(big.body)).toMatchObject({ ok: false, error: { code: 'bad-request' } });
    const chunked = await call(server.port, 'POST', '/api', headers, 50 * 1024 * 1024);
    expect(chunked.status).toBe(413);
    // The server is still there.
    expect((await call(server.port, 'POST', '/api', headers, ping)).status).toBe(200);
  });
});
