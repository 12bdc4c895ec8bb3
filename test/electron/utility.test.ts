/**
 * The utility process under Node (child_process.fork of dist/main/utility.js), driven through
 * the same UtilityClient Electron's main and web mode use: requests answered, malformed requests
 * rejected with an error reply, a killed worker thread replaced, a killed utility process
 * restarted (with the restart events), and the memory ceiling held while paging through a 300 MB
 * database with a 100 MB PDF under --max-old-space-size=64.
 */
import { fork } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateFixture } from '../fixtures/generate.js';
import { ApiError, type ProtocolEvent, type Reply } from '../../src/core/utility-protocol.js';
import { nodeSpawner, UtilityClient } from '../../src/main/client.js';
import { ROOT, tempDir } from '../helpers/env.js';

const MB = 1024 * 1024;
const ENTRY = join(ROOT, 'dist', 'main', 'utility.js');
const dir = tempDir('sk-utility-');
const db = join(dir, 'opencode.db');
const env = { ...process.env, XDG_DATA_HOME: join(dir, 'data'), XDG_CONFIG_HOME: join(dir, 'config'), SESSION_KEEPER_TEST_HOOKS: '1' };

describe('utility process under Node', () => {
  let client: UtilityClient;
  const events: ProtocolEvent[] = [];

  beforeAll(() => {
    generateFixture({ path: db, targetBytes: 12 * MB, hugeAttachmentBytes: 1 * MB, seed: 3 });
    client = new UtilityClient(nodeSpawner({ entry: ENTRY, db, cacheDir: join(dir, 'cache'), env }), { initialDelayMs: 50 }).start();
    client.onEvent((e) => events.push(e));
  });
  afterAll(() => client.close());

  it('answers typed requests', async () => {
    expect((await client.request('ping')).pong).toBe(true);
    const startup = await client.request('startup');
    expect(startup.error).toBeNull();
    expect(startup.bytes).toBe(statSync(db).size + (existsSync(`${db}-wal`) ? statSync(`${db}-wal`).size : 0));
    expect(events.some((e) => e.event === 'startup')).toBe(true);
    const list = await client.request('listSessions', { limit: 5 });
    expect(list.sessions).toHaveLength(5);
    const page = await client.request('showSession', { sessionId: list.sessions[0]!.id, limit: 3 });
    expect(page.messages.length).toBeGreaterThan(0);
    const stats = await client.request('stats');
    expect(stats.sessions).toBeGreaterThan(5);
    const plan = await client.request('plan', { policy: { maxSessions: 3 } });
    expect(plan.evict.length).toBeGreaterThan(0);
    expect(plan.policy.maxSessions).toBe(3);
    const settings = await client.request('getSettings');
    expect(settings.path).toBe(join(dir, 'config', 'opencode', 'opencode.json'));
    const conn = await client.request('testConnection', { storage: 'sqlite' });
    expect(conn.ok).toBe(true);
  });

  it('rejects malformed and unknown requests with an error reply and keeps answering', async () => {
    const bad: unknown[] = [
      { type: 'request', method: 'dropTables' },
      { type: 'request', method: 'showSession', params: {} },
      { type: 'request', method: 'listSessions', params: { limit: 'all' } },
      { type: 'request', method: 'listSessions', params: { limit: 5, extra: true } },
      { type: 'request', method: 'attachment', params: { ref: 'x'.repeat(10_000) } },
      { type: 'nonsense' },
    ];
    for (const message of bad) {
      const reply: Reply = await client.sendRaw(message);
      expect(reply.ok, JSON.stringify(message)).toBe(false);
      if (!reply.ok) expect(reply.error.code).toBe('bad-request');
    }
    // Typed requests validated before they leave: the same error reply, no process involved.
    const local = await client.send({ method: 'nope' });
    expect(local.ok).toBe(false);
    // A well-formed request for something missing is an error reply too, with its code.
    await expect(client.request('showSession', { sessionId: 'ses_missing' })).rejects.toMatchObject({ code: 'not-found' });
    expect((await client.request('ping')).pong).toBe(true);
  });

  it('replaces a killed worker thread', async () => {
    await client.request('listSessions', { limit: 1 });
    const killed = await client.request('debugKillWorker');
    expect(killed.killed).toBe(true);
    const list = await client.request('listSessions', { limit: 2, cursor: null });
    expect(list.sessions).toHaveLength(2);
    const health = await client.request('health');
    expect(health.workerThreads).toBeGreaterThanOrEqual(1);
  });

  it('restarts a killed utility process with backoff and says so', async () => {
    const before = (await client.request('ping')).pid;
    const pending = client.request('stats', { largest: 3 }).catch((e: unknown) => e);
    client.killForTest();
    const failed = await pending;
    // The request in flight either finished first or was rejected as unavailable; never left hanging.
    if (failed instanceof ApiError) expect(failed.code).toBe('unavailable');
    const after = (await client.request('ping')).pid;
    expect(after).not.toBe(before);
    expect(events.some((e) => e.event === 'restarting')).toBe(true);
    expect(events.some((e) => e.event === 'restarted')).toBe(true);
    expect((await client.request('listSessions', { limit: 1 })).sessions).toHaveLength(1);
  });

  it('answers over process.send without the client too (a bare fork), even messages that are not objects', async () => {
    const child = fork(ENTRY, ['--db', db, '--cache-dir', join(dir, 'cache')], { env, stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    const replies: Reply[] = [];
    child.on('message', (m: unknown) => {
      if ((m as { type?: string }).type === 'reply') replies.push(m as Reply);
    });
    for (const junk of ['just a string', 42, null, [1, 2, 3], true]) child.send(junk as never);
    child.send({ type: 'request', id: 'a1', method: 'ping' });
    await expect.poll(() => replies.find((r) => r.id === 'a1'), { timeout: 10_000 }).toMatchObject({ ok: true });
    await expect.poll(() => replies.filter((r) => r.id === null && !r.ok).length, { timeout: 10_000 }).toBe(5);
    expect(child.exitCode).toBeNull();
    child.kill();
  });
});

describe('memory ceiling: paging through a 300 MB database with a 100 MB PDF (--max-old-space-size=64)', () => {
  const bigDb = join(dir, 'big.db');
  let huge: { partId: string; sessionId: string };

  beforeAll(() => {
    const summary = generateFixture({ path: bigDb, targetBytes: 300 * MB, hugeAttachmentBytes: 100 * MB, seed: 17, diffFiles: false });
    huge = { partId: summary.hugePartId as string, sessionId: summary.hugeSessionId as string };
  }, 300_000);

  it('lists every session, pages every message and extracts the PDF without dying', async () => {
    let exited: string | null = null;
    const client = new UtilityClient(
      nodeSpawner({ entry: ENTRY, db: bigDb, cacheDir: join(dir, 'big-cache'), env, execArgv: ['--max-old-space-size=64'], onStderr: () => undefined }),
      { initialDelayMs: 60_000 },
    ).start();
    client.onEvent((e) => {
      if (e.event === 'restarting') exited = e.reason;
    });
    try {
      let cursor: string | null = null;
      const ids: string[] = [];
      do {
        const page = await client.request('listSessions', { limit: 100, cursor });
        ids.push(...page.sessions.map((s) => s.id));
        cursor = page.nextCursor;
      } while (cursor);
      expect(ids).toContain(huge.sessionId);
      let messages = 0;
      // The huge session and a spread of others, every page of each.
      for (const id of [huge.sessionId, ...ids.filter((_, i) => i % 10 === 0)]) {
        let c: string | null = null;
        do {
          const page = await client.request('showSession', { sessionId: id, limit: 50, cursor: c });
          messages += page.messages.length;
          c = page.nextCursor;
        } while (c);
      }
      expect(messages).toBeGreaterThan(0);
      const attachment = await client.request('attachment', { ref: huge.partId });
      expect(attachment.bytes).toBe(100 * MB);
      expect(statSync(attachment.path).size).toBe(100 * MB);
      const health = await client.request('health');
      expect(health.heapPeak).toBeLessThan(64 * MB);
      expect(health.workerHeapPeak).toBeLessThan(64 * MB);
      expect(exited).toBeNull();
    } finally {
      await client.close();
    }
  }, 300_000);
});
