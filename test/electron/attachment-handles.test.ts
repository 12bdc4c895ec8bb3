/**
 * Attachments as file handles, end to end: a worker moves the FileHandle it decoded into to the
 * pool's owner; consumers (web mode, Electron's protocol handler, run here under Node against the
 * utility forked as Electron would fork it) get the bytes from the handle the utility holds, so a
 * cache file swapped for a symlink after extraction never serves the outside file; descriptors
 * stay bounded however many attachments a page asks for, and 1,000 requests leave none behind.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { copyFileSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateFixture } from '../fixtures/generate.js';
// From the build: the pool starts dist/worker/tasks.js and the server forks dist/main/utility.js.
import { attachmentResponse } from '../../dist/main/attachment-http.js';
import { AttachmentStreams } from '../../dist/main/attachment-streams.js';
import { readAttachmentStream, type AttachmentStream } from '../../dist/main/client.js';
import { SessionService } from '../../dist/main/service.js';
import { StreamMux } from '../../dist/main/stream-mux.js';
import { startWebServer, type WebServer } from '../../dist/web/server.js';
import { PooledReader } from '../../dist/worker/pool.js';
import { tempDir } from '../helpers/env.js';

const MB = 1024 * 1024;
const dir = tempDir('sk-handles-');
const db = join(dir, 'opencode.db');
const env = { ...process.env, XDG_DATA_HOME: join(dir, 'data'), XDG_CONFIG_HOME: join(dir, 'config'), XDG_CACHE_HOME: join(dir, 'xdg-cache') };
let refs: string[] = [];

beforeAll(() => {
  generateFixture({ path: db, targetBytes: 10 * MB, seed: 21, diffFiles: false });
  const conn = new Database(db, { readonly: true });
  refs = conn.prepare(`SELECT id FROM part WHERE instr(data, '"data:') > 0 ORDER BY id LIMIT 40`).pluck().all() as string[];
  conn.close();
  expect(refs.length).toBeGreaterThanOrEqual(20);
}, 120_000);

const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

/** Descriptors of this process, and those of them that lead into `folder`. */
function descriptors(folder?: string): { all: number; inside: number } {
  let all = 0;
  let inside = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    all++;
    try {
      if (folder && readlinkSync(`/proc/self/fd/${fd}`).startsWith(folder)) inside++;
    } catch {
      // closed while we looked (the readdir's own descriptor)
    }
  }
  return { all, inside };
}

/** A consumer and the utility's stream server in this process, joined the way IPC joins them. */
function loopback(streams: AttachmentStreams): (relPath: string, range?: string) => Promise<AttachmentStream> {
  const shell: StreamMux = new StreamMux((envelope) => queueMicrotask(() => utility.dispatch(envelope)));
  const utility: StreamMux = new StreamMux((envelope) => queueMicrotask(() => shell.dispatch(envelope)));
  let next = 1;
  return (relPath, range) => {
    const stream = next++;
    const port = shell.open(stream);
    streams.serve(utility.open(stream), range ? { relPath, range } : { relPath });
    return readAttachmentStream(port, 10_000);
  };
}

async function bodyOf(stream: AttachmentStream): Promise<Buffer> {
  const pieces: Buffer[] = [];
  if (stream.body) for await (const chunk of stream.body) pieces.push(Buffer.from(chunk));
  return Buffer.concat(pieces);
}

describe.runIf(process.platform === 'linux')('attachments handed over as file handles', () => {
  it('a worker moves the FileHandle it decoded into to the pool owner, who reads the bytes from it', async () => {
    const pool = await PooledReader.open(db, 1);
    const cache = join(dir, 'cache-pool');
    try {
      const opened = await pool.openAttachment(refs[0] as string, cache);
      expect(opened.handle.fd).toBeGreaterThan(2);
      const bytes = await opened.handle.readFile();
      expect(bytes.length).toBe(opened.result.bytes);
      expect(sha256(bytes)).toBe(opened.result.sha256);
      // The descriptor is this thread's now: it leads to the entry the worker named by its content.
      expect(readlinkSync(`/proc/self/fd/${opened.handle.fd}`)).toBe(opened.result.path);
      await opened.handle.close();
      expect(descriptors(cache).inside).toBe(0);
    } finally {
      await pool.close();
    }
  }, 60_000);

  describe('a cache file swapped for a symlink after extraction', () => {
    let server: WebServer;
    const cacheDir = join(dir, 'cache-web');
    const outside = join(dir, 'outside-secret.bin');

    beforeAll(async () => {
      writeFileSync(outside, 'not an attachment: a file outside the cache');
      server = await startWebServer({ db, cacheDir, token: 't', env });
    });
    afterAll(() => server.close());

    it('serves the extracted bytes, never the outside file (web mode and the Electron protocol handler)', async () => {
      const extracted = await server.client.request('attachment', { ref: refs[1] as string });
      const original = readFileSync(extracted.path);
      expect(sha256(original)).toBe(extracted.sha256);
      rmSync(extracted.path);
      symlinkSync(outside, extracted.path);

      const web = await new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port: server.port, path: `/attachment/${extracted.relPath}`, headers: { 'x-session-keeper-token': 't' } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        });
        req.on('error', reject);
        req.end();
      });
      expect(web.status).toBe(200);
      expect(web.body.toString()).not.toContain('outside the cache');
      expect(sha256(web.body)).toBe(extracted.sha256);

      const electron = await attachmentResponse(server.client, new Request(`sk-attachment://cache/${extracted.relPath}`, { headers: { range: 'bytes=10-' } }));
      expect(electron.status).toBe(206);
      expect(Buffer.from(await electron.arrayBuffer()).equals(original.subarray(10))).toBe(true);
    }, 60_000);

    it('without a handle held, the symlink is refused rather than followed', async () => {
      const cache = join(dir, 'cache-evict');
      // One handle kept: extracting a second attachment lets the first one's go.
      const service = await SessionService.open({ db, cacheDir: cache, threads: 1, handles: { max: 1 } });
      try {
        const first = await service.attachment(refs[2] as string);
        await service.attachment(refs[3] as string);
        rmSync(first.path);
        symlinkSync(outside, first.path);
        const open = loopback(new AttachmentStreams(service, cache));
        const answer = await open(`${first.sha256.slice(0, 2)}/${first.sha256}`);
        expect([403, 404]).toContain(answer.status);
        expect(answer.body).toBeNull();
        expect(answer.message ?? '').not.toContain('outside the cache');
      } finally {
        await service.close();
      }
    }, 60_000);
  });

  it('an attachment of a session retention evicted is no longer served from the handle held for it', async () => {
    const copy = join(dir, 'evict.db');
    copyFileSync(db, copy);
    const server = await startWebServer({ db: copy, cacheDir: join(dir, 'cache-retention'), token: 't', env });
    try {
      const plan = await server.client.request('plan', { policy: { maxSessions: 1 } });
      const evicted = new Set(plan.evict.flatMap((e) => [e.id, ...e.children]));
      const conn = new Database(copy, { readonly: true });
      const ref = (conn.prepare(`SELECT id, session_id AS sessionId FROM part WHERE instr(data, '"data:') > 0 ORDER BY id`).all() as { id: string; sessionId: string }[]).find((p) => evicted.has(p.sessionId))?.id;
      conn.close();
      expect(ref).toBeDefined();
      const extracted = await server.client.request('attachment', { ref: ref as string });
      const url = `sk-attachment://cache/${extracted.relPath}`;
      expect((await attachmentResponse(server.client, new Request(url))).status).toBe(200);
      const applied = await server.client.request('apply', { planId: plan.planId });
      expect(applied.evicted.length).toBeGreaterThan(0);
      const after = await attachmentResponse(server.client, new Request(url));
      expect(after.status).toBe(404);
      expect((await server.client.request('health')).attachmentHandles).toBe(0);
    } finally {
      await server.close();
    }
  }, 120_000);

  it('a page of 100 attachment requests holds a bounded number of descriptors; 1,000 in a row leave none open', async () => {
    const cacheDir = join(dir, 'cache-fds');
    const before = descriptors();
    const service = await SessionService.open({ db, cacheDir, threads: 2, handles: { max: 8 } });
    const streams = new AttachmentStreams(service, cacheDir, 8);
    const open = loopback(streams);
    let peak = 0;
    const watch = setInterval(() => (peak = Math.max(peak, descriptors(cacheDir).inside)), 1);
    try {
      // A page: 100 requests at once, each streamed.
      await Promise.all(
        Array.from({ length: 100 }, async (_, i) => {
          const result = await service.attachment(refs[i % refs.length] as string);
          const body = await bodyOf(await open(`${result.sha256.slice(0, 2)}/${result.sha256}`, 'bytes=0-99'));
          expect(body.length).toBe(Math.min(100, result.bytes));
        }),
      );
      // Then 1,000 in a row, over more attachments than handles are kept.
      for (let i = 0; i < 1000; i++) {
        const result = await service.attachment(refs[i % refs.length] as string);
        const body = await bodyOf(await open(`${result.sha256.slice(0, 2)}/${result.sha256}`, i % 2 ? undefined : 'bytes=1-'));
        expect(body.length).toBe(i % 2 ? result.bytes : result.bytes - 1);
        peak = Math.max(peak, descriptors(cacheDir).inside);
      }
      // Kept handles (8) + streams reading (8) + one decode per worker (2).
      expect(peak).toBeLessThanOrEqual(8 + 8 + 2);
      expect(descriptors(cacheDir).inside).toBeLessThanOrEqual(8);
      expect(service.handles.open).toBeLessThanOrEqual(8);
      expect(streams.reading).toBe(0);
    } finally {
      clearInterval(watch);
      await service.close();
    }
    await expect.poll(() => descriptors(cacheDir).inside, { timeout: 5_000 }).toBe(0);
    await expect.poll(() => descriptors().all, { timeout: 5_000 }).toBeLessThanOrEqual(before.all);
  }, 300_000);

  it('idle handles close by themselves', async () => {
    const cacheDir = join(dir, 'cache-idle');
    const service = await SessionService.open({ db, cacheDir, inline: true, handles: { max: 8, idleMs: 200 } });
    try {
      for (const ref of refs.slice(0, 5)) await service.attachment(ref);
      expect(descriptors(cacheDir).inside).toBe(5);
      await expect.poll(() => descriptors(cacheDir).inside, { timeout: 5_000 }).toBe(0);
      expect(service.handles.open).toBe(0);
    } finally {
      await service.close();
    }
  }, 60_000);
});
