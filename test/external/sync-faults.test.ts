/**
 * The mirror's faults, through the built CLI in child processes against real servers: the
 * server unreachable mid-run (a TCP proxy in front of it is cut and brought back on the same port,
 * never the shared server; PostgreSQL) queues the work, says so once and catches up; SIGKILL of the mirror at
 * 20+ random points while the local file keeps changing leaves nothing duplicated or missing on
 * the server (PostgreSQL and MariaDB), and the mirror never changes the local file. SIGKILL in the
 * middle of a first sync (its pipelined path, sessions verified in groups) leaves no unfinished
 * session where a reader looks, and the next run completes it without a row twice.
 */
import Database from 'better-sqlite3';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, readFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openReader } from '../../src/store/open-store.js';
import { generateFixture } from '../fixtures/generate.js';
import { CLI, tempDir } from '../helpers/env.js';
import { freshDatabase, serverQuery, type FreshDatabase } from './servers.js';
import { sessionsAsText } from './sync-helpers.js';

const MB = 1024 * 1024;
const dir = tempDir('sk-sync-faults-');
const seed = join(dir, 'seed.db');
const databases: FreshDatabase[] = [];
const env = { ...process.env, XDG_CACHE_HOME: join(dir, 'cache') };

beforeAll(() => {
  generateFixture({ path: seed, targetBytes: 8 * MB, seed: 41, rootSessions: 30, schema: '1.18', newerLayoutShare: 0.3, hugeAttachmentBytes: 2 * MB });
});
afterAll(async () => {
  for (const d of databases) await d.drop();
});

async function fresh(backend: 'postgres' | 'mysql' = 'postgres'): Promise<FreshDatabase> {
  const d = await freshDatabase(backend);
  databases.push(d);
  return d;
}

const fileHash = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

function collect(child: ChildProcess): { done: Promise<{ status: number | null; signal: NodeJS.Signals | null }>; out: () => string; err: () => string } {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ status: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (status, signal) => resolve({ status, signal })));
  return { done, out: () => stdout, err: () => stderr };
}

/** A TCP proxy in front of `port` that can be cut (every connection dropped, nothing listening) and brought back on the same port. */
async function cuttableProxy(port: number): Promise<{ port: number; cut: () => Promise<void>; resume: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  let server: Server;
  const listen = (at: number): Promise<number> =>
    new Promise((resolve, reject) => {
      server = createServer((client) => {
        const upstream = createConnection({ host: '127.0.0.1', port });
        sockets.add(client).add(upstream);
        client.pipe(upstream).pipe(client);
        client.on('error', () => undefined);
        upstream.on('error', () => undefined);
        client.on('close', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
      });
      server.once('error', reject);
      server.listen(at, '127.0.0.1', () => resolve((server.address() as { port: number }).port));
    });
  const own = await listen(0);
  return {
    port: own,
    cut: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
        sockets.clear();
      });
    },
    resume: async () => {
      await listen(own);
    },
  };
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Changes a few sessions the way OpenCode does: a new message and part, an updated part, a new event. */
function writeLikeOpenCode(db: string, round: number): void {
  const file = new Database(db);
  const sessions = file.prepare('SELECT id FROM session ORDER BY id').pluck().all() as string[];
  const now = Date.now();
  for (const [i, sessionId] of sessions.filter((_, i) => i % 2 === round % 2).entries()) {
    const messageId = `msg_${(now + i).toString(16).padStart(12, '0')}t${round}x${i}`;
    file.prepare('INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?, ?, ?, ?, ?)').run(messageId, sessionId, now, now, JSON.stringify({ role: 'user', time: { created: now } }));
    file.prepare('INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?, ?, ?, ?, ?, ?)').run(`prt_${messageId.slice(4)}`, messageId, sessionId, now, now, JSON.stringify({ type: 'text', text: `round ${round}` }));
    file.prepare("UPDATE part SET data = json_set(data, '$.round', ?), time_updated = ? WHERE id = (SELECT id FROM part WHERE session_id = ? ORDER BY id LIMIT 1)").run(round, now, sessionId);
    const seq = file.prepare('SELECT seq FROM event_sequence WHERE aggregate_id = ?').pluck().get(sessionId) as number | undefined;
    if (seq !== undefined) {
      file.prepare('UPDATE event_sequence SET seq = ? WHERE aggregate_id = ?').run(seq + 1, sessionId);
      file.prepare('INSERT INTO event (id, aggregate_id, seq, type, data) VALUES (?, ?, ?, ?, ?)').run(`evt_${messageId.slice(4)}`, sessionId, seq + 1, 'session.updated.1', JSON.stringify({ sessionID: sessionId, round }));
    }
  }
  file.close();
}

/** Whether some local session's current version is not on the server yet. */
async function behind(db: string, url: string): Promise<boolean> {
  const [local, server] = await Promise.all([sessionsAsText(db), sessionsAsText(url)]);
  return [...local].some(([id, text]) => server.get(id) !== text);
}

/** Moves whenever the mirror records a session (0 before the schema exists). */
async function syncedMark(url: string): Promise<string> {
  try {
    const [row] = await serverQuery<{ n: string | number; t: string | number | null }>(url, 'SELECT count(*) AS n, max(time_synced) AS t FROM sk_sync_base');
    return `${row?.n}:${row?.t}`;
  } catch {
    return 'none';
  }
}


/** Every message, part and event of the file is on the server exactly once (no duplicate from a killed run). */
async function expectEveryRowOnce(db: string, url: string): Promise<void> {
  const file = new Database(db, { readonly: true });
  const localRows = file.prepare('SELECT (SELECT count(*) FROM message) + (SELECT count(*) FROM part) + (SELECT count(*) FROM event) AS n').pluck().get() as number;
  file.close();
  const [stored] = await serverQuery<{ n: string | number }>(url, "SELECT (SELECT count(*) FROM sk_message) + (SELECT count(*) FROM sk_part) + (SELECT count(*) FROM sk_row WHERE table_name = 'event') AS n");
  expect(Number(stored?.n)).toBe(localRows);
}

describe('sync faults', () => {
  it('the server unreachable mid-run: the work is queued, said once, and caught up when it is back', async () => {
    const target = await fresh();
    const db = join(dir, 'outage.db');
    copyFileSync(seed, db);
    const url = new URL(target.url);
    const proxy = await cuttableProxy(Number(url.port || 5432));
    url.port = String(proxy.port);
    url.password = 'not-printed-s3cret';
    const child = spawn(process.execPath, [CLI, '--db', db, 'sync', '--to', url.toString(), '--poll-ms', '100'], { stdio: 'pipe', env });
    const run = collect(child);
    try {
      await waitFor('the first pass', () => /sessions written/.test(run.err()));
      await proxy.cut();
      writeLikeOpenCode(db, 1);
      await waitFor('the outage to be noticed', () => /retrying until it is back/.test(run.err()));
      // Several retry periods pass while the server is away: no error loop, one line.
      writeLikeOpenCode(db, 2);
      await new Promise((r) => setTimeout(r, 3000));
      expect(run.err().match(/retrying until it is back/g)?.length).toBe(1);
      expect(child.exitCode).toBeNull();
      await proxy.resume();
      await waitFor('the catch-up', () => /reachable again/.test(run.err()), 60_000);
      await waitFor('every session on the server', async () => {
        const [local, server] = await Promise.all([sessionsAsText(db), sessionsAsText(target.url)]);
        return local.size === server.size && [...local].every(([id, text]) => server.get(id) === text);
      });
      expect(run.err()).not.toContain('not-printed-s3cret');
    } finally {
      child.kill('SIGTERM');
      await run.done;
      await proxy.cut().catch(() => undefined);
    }
  });

  it.each(['postgres', 'mysql'] as const)('SIGKILL in the middle of a first sync (%s): no unfinished session visible, none duplicated, the next run completes it', async (backend) => {
    const target = await fresh(backend);
    // Many small sessions: a first sync of several verification groups.
    const db = join(dir, `first-kills-${backend}.db`);
    generateFixture({ path: db, targetBytes: 6 * MB, seed: 43, rootSessions: 160, schema: '1.18', newerLayoutShare: 0.3 });
    const local = await sessionsAsText(db);
    let killedMidFirstSync = 0;
    const partsNow = async (): Promise<number> => {
      try {
        return Number((await serverQuery<{ n: string | number }>(target.url, 'SELECT count(*) AS n FROM sk_part'))[0]?.n);
      } catch {
        return -1; // no schema yet
      }
    };
    for (let round = 0; round < 4; round++) {
      const before = await partsNow();
      const syncedBefore = await syncedMark(target.url);
      const child = spawn(process.execPath, [CLI, '--db', db, 'sync', '--to', target.url, '--once'], { stdio: 'pipe', env });
      const run = collect(child);
      // Rows on their way (round 0), then a group verified too (later rounds): the kill lands among batches and groups.
      await waitFor('rows arriving', async () => child.exitCode !== null || (round === 0 ? (await partsNow()) > Math.max(0, before) : (await syncedMark(target.url)) !== syncedBefore), 30_000);
      await new Promise((r) => setTimeout(r, 30 * round));
      child.kill('SIGKILL');
      await run.done;
      const [unfinished] = await serverQuery<{ n: string | number }>(target.url, 'SELECT count(*) AS n FROM sk_session WHERE complete <> 1');
      const [complete] = await serverQuery<{ n: string | number }>(target.url, 'SELECT count(*) AS n FROM sk_session WHERE complete = 1');
      if (Number(complete?.n) < local.size) killedMidFirstSync++;
      // A reader sees only finished sessions, each exactly as the file holds it.
      const reader = await openReader(target.url);
      const listed = (await reader.listSessions({ limit: 1000 })).sessions.map((s) => s.id);
      const ids = await reader.allSessionIds();
      await reader.close();
      expect(listed.length).toBe(Number(complete?.n));
      expect(ids.length).toBe(Number(complete?.n));
      const server = await sessionsAsText(target.url, ids);
      for (const [id, text] of server) expect(text).toBe(local.get(id));
      // Each finished session has its mirror state; an unfinished one has none (the next run replaces it).
      const [owned] = await serverQuery<{ n: string | number }>(target.url, 'SELECT count(*) AS n FROM sk_sync_session s JOIN sk_session t ON t.id = s.session_id WHERE t.complete = 1 AND t.digest = s.digest');
      expect(Number(owned?.n)).toBe(Number(complete?.n));
      const [stray] = await serverQuery<{ n: string | number }>(target.url, 'SELECT count(*) AS n FROM sk_sync_session s JOIN sk_session t ON t.id = s.session_id WHERE t.complete <> 1');
      expect(Number(stray?.n)).toBe(0);
      if (round === 0) expect(Number(unfinished?.n) + Number(complete?.n)).toBeLessThanOrEqual(local.size);
    }
    expect(killedMidFirstSync).toBeGreaterThanOrEqual(3);
    const last = spawn(process.execPath, [CLI, '--db', db, '--json', 'sync', '--to', target.url, '--once'], { stdio: 'pipe', env });
    const run = collect(last);
    expect((await run.done).status, run.err()).toBe(0);
    expect(await sessionsAsText(target.url)).toEqual(local);
    await expectEveryRowOnce(db, target.url);
    const [partial] = await serverQuery<{ n: string | number }>(target.url, 'SELECT count(*) AS n FROM sk_session WHERE complete <> 1 OR digest IS NULL');
    expect(Number(partial?.n)).toBe(0);
    expect((JSON.parse(run.out()) as { status: { mirrored: number } }).status.mirrored).toBe(local.size);
  }, 300_000);

  it.each(['postgres', 'mysql'] as const)('SIGKILL at 22 random points while the file changes (%s): nothing duplicated or missing, the local file untouched by the mirror', async (backend) => {
    const target = await fresh(backend);
    const db = join(dir, `kills-${backend}.db`);
    copyFileSync(seed, db);
    let killedMidWrite = 0;
    let random = 7;
    const next = (): number => (random = (random * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    for (let round = 0; round < 22; round++) {
      if (round > 0) writeLikeOpenCode(db, round);
      const before = fileHash(db);
      const syncedBefore = await syncedMark(target.url);
      const child = spawn(process.execPath, [CLI, '--db', db, 'sync', '--to', target.url, '--once'], { stdio: 'pipe', env });
      const run = collect(child);
      // The kill lands at a random moment after the run's first session is in: between or inside session transactions.
      await waitFor('a session written', async () => child.exitCode !== null || (await syncedMark(target.url)) !== syncedBefore, 30_000);
      await new Promise((r) => setTimeout(r, next() * 250));
      const finishedFirst = child.exitCode !== null;
      child.kill('SIGKILL');
      const ended = await run.done;
      expect(fileHash(db)).toBe(before);
      // A kill that counts landed inside a pass: sessions were written in it, and the server is still behind the file.
      const progressed = (await syncedMark(target.url)) !== syncedBefore;
      if (!finishedFirst && ended.signal === 'SIGKILL' && progressed && (await behind(db, target.url))) killedMidWrite++;
    }
    expect(killedMidWrite).toBeGreaterThanOrEqual(20);
    // What a kill left is never a half-written session: every one on the server is complete and verified.
    const partial = await serverQuery<{ n: string | number }>(target.url, 'SELECT count(*) AS n FROM sk_session WHERE complete <> 1 OR digest IS NULL');
    expect(Number(partial[0]?.n)).toBe(0);
    // A last pass completes it: every session equal, every row once.
    const before = fileHash(db);
    const last = spawn(process.execPath, [CLI, '--db', db, '--json', 'sync', '--to', target.url, '--once'], { stdio: 'pipe', env });
    const run = collect(last);
    expect((await run.done).status).toBe(0);
    expect(fileHash(db)).toBe(before);
    const [local, server] = await Promise.all([sessionsAsText(db), sessionsAsText(target.url)]);
    expect(server).toEqual(local);
    await expectEveryRowOnce(db, target.url);
    const summary = JSON.parse(run.out()) as { status: { pending: number; mirrored: number } };
    expect(summary.status.pending).toBe(0);
    expect(summary.status.mirrored).toBe(local.size);
  }, 300_000);
});
