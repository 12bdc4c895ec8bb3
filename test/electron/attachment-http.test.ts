/**
 * Attachment URLs, in the plain module Electron's protocol.handle uses and over web mode's HTTP:
 * a file inside the cache streams, a Range request gets 206 with exactly those bytes, and `..`,
 * absolute paths and symlinks out of the cache are refused (403/404). Web mode also needs its
 * token on every request and answers on 127.0.0.1 only, with the URL as the first line of stdout.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateFixture } from '../fixtures/generate.js';
import { parseRange, resolveAttachmentRequest } from '../../src/main/attachment-http.js';
// From the build: the server forks dist/main/utility.js beside it.
import { startWebServer, type WebServer } from '../../dist/web/server.js';
import { CLI, ROOT, tempDir } from '../helpers/env.js';

const dir = tempDir('sk-attach-');
const cache = join(dir, 'cache');
const SHA = 'ab'.padEnd(64, 'c');
const REL = `ab/${SHA}`;
const content = Buffer.from(Array.from({ length: 100_000 }, (_, i) => i % 251));

beforeAll(() => {
  mkdirSync(join(cache, 'ab'), { recursive: true });
  writeFileSync(join(cache, REL), content);
  writeFileSync(join(dir, 'secret.txt'), 'top secret');
  symlinkSync(join(dir, 'secret.txt'), join(cache, 'ab', 'link-out'));
  symlinkSync(dir, join(cache, 'dir-out'));
});

describe('attachment-http (shared by protocol.handle and web mode)', () => {
  it('serves a file inside the cache, whole or by range', () => {
    const whole = resolveAttachmentRequest(cache, REL, { mime: 'application/pdf' });
    expect(whole.status).toBe(200);
    expect(whole.headers['content-length']).toBe(String(content.length));
    expect(whole.headers['content-type']).toBe('application/pdf');
    const part = resolveAttachmentRequest(cache, REL, { range: 'bytes=10-19' });
    expect(part.status).toBe(206);
    expect(part.headers['content-range']).toBe(`bytes 10-19/${content.length}`);
    expect(part.file).toMatchObject({ start: 10, end: 19 });
    expect(resolveAttachmentRequest(cache, REL, { range: 'bytes=999999-' }).status).toBe(416);
    expect(resolveAttachmentRequest(cache, REL, { mime: 'text/html' }).headers['content-type']).toBe('application/octet-stream');
    expect(parseRange('bytes=-10', 100)).toEqual({ start: 90, end: 99 });
  });

  it('refuses .., absolute paths and symlinks out of the cache', () => {
    for (const path of ['../secret.txt', 'ab/../../secret.txt', '%2e%2e/secret.txt', '..%2fsecret.txt', encodeURIComponent(join(dir, 'secret.txt')), '/etc/passwd', 'ab/link-out', 'dir-out/secret.txt']) {
      const answer = resolveAttachmentRequest(cache, path);
      expect([403, 404], path).toContain(answer.status);
      expect(answer.file, path).toBeUndefined();
    }
    expect(resolveAttachmentRequest(cache, 'ab').status).toBe(404); // a folder is not a file
    expect(resolveAttachmentRequest(cache, 'ab/missing').status).toBe(404);
  });
});

function get(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers, method: 'GET' }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('web mode over HTTP', () => {
  let server: WebServer;
  const db = join(dir, 'opencode.db');
  beforeAll(async () => {
    generateFixture({ path: db, targetBytes: 4 * 1024 * 1024, seed: 9, diffFiles: false });
    server = await startWebServer({ db, cacheDir: cache, token: 'test-token', env: { ...process.env, XDG_DATA_HOME: join(dir, 'data'), XDG_CONFIG_HOME: join(dir, 'config') } });
  });
  afterAll(() => server.close());

  it('streams attachments with Range support and refuses paths out of the cache', async () => {
    const auth = { 'x-session-keeper-token': 'test-token' };
    const whole = await get(server.port, `/attachment/${REL}`, auth);
    expect(whole.status).toBe(200);
    expect(whole.body.equals(content)).toBe(true);
    const ranged = await get(server.port, `/attachment/${REL}`, { ...auth, range: 'bytes=1000-1999' });
    expect(ranged.status).toBe(206);
    expect(ranged.headers['content-range']).toBe(`bytes 1000-1999/${content.length}`);
    expect(ranged.body.equals(content.subarray(1000, 2000))).toBe(true);
    for (const path of ['/attachment/../secret.txt', '/attachment/ab/../../secret.txt', '/attachment/%2e%2e/secret.txt', `/attachment/${encodeURIComponent(join(dir, 'secret.txt'))}`, '/attachment//etc/passwd', '/attachment/ab/link-out', '/attachment/dir-out/secret.txt']) {
      const res = await get(server.port, path, auth);
      expect([403, 404], path).toContain(res.status);
      expect(res.body.toString()).not.toContain('top secret');
    }
  });

  it('needs the token on every request and the right Host', async () => {
    expect((await get(server.port, '/')).status).toBe(401);
    expect((await get(server.port, `/attachment/${REL}`)).status).toBe(401);
    expect((await get(server.port, '/?token=wrong')).status).toBe(401);
    expect((await get(server.port, '/?token=test-token')).status).toBe(200);
    expect((await get(server.port, '/?token=test-token', { host: 'evil.example:80' })).status).toBe(403);
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?token=test-token$/);
  });

  it('answers the typed API and rejects malformed bodies', async () => {
    expect((await server.client.request('ping')).pong).toBe(true);
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: server.port, path: '/api', method: 'POST', headers: { 'x-session-keeper-token': 'test-token', 'content-type': 'application/json', origin: `http://127.0.0.1:${server.port}` } }, (r) => {
        let body = '';
        r.on('data', (c: Buffer) => (body += c.toString()));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end(JSON.stringify({ method: 'listSessions', params: { limit: -1 } }));
    });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({ ok: false, error: { code: 'bad-request' } });
  });
});

describe('session-keeper serve', () => {
  it('prints its URL with the token as the first line of stdout and listens on 127.0.0.1', async () => {
    const db = join(dir, 'opencode.db');
    const child = spawn(process.execPath, [CLI, '--db', db, '--cache-dir', cache, 'serve'], {
      cwd: ROOT,
      env: { ...process.env, XDG_DATA_HOME: join(dir, 'data'), XDG_CONFIG_HOME: join(dir, 'config') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      const line = await new Promise<string>((resolve) => createInterface({ input: child.stdout }).once('line', resolve));
      const url = new URL(line);
      expect(url.hostname).toBe('127.0.0.1');
      expect(url.searchParams.get('token')).toMatch(/^[A-Za-z0-9_-]{24,}$/);
      const page = await get(Number(url.port), `/?token=${url.searchParams.get('token')}`);
      expect(page.status).toBe(200);
      expect(page.body.toString()).toContain('session-keeper');
      expect(readFileSync(join(ROOT, 'dist', 'renderer', 'index.html'), 'utf8')).toContain('size-dialog');
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });
});
