/**
 * The hard cases against real servers, through the built CLI in child processes: a migration
 * killed with SIGKILL and run again; the server going away mid-migration and mid-read (a TCP proxy
 * in front of PostgreSQL is killed, never the shared server); offload retention; and the memory
 * ceiling of a migration moving a ~100 MB attachment under a 64 MB heap.
 */
import Database from 'better-sqlite3';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateFixture, type FixtureSummary } from '../fixtures/generate.js';
import { openReader } from '../../src/store/open-store.js';
import { CLI, emptyOpenCodeDb, insertMessage, insertRawPart, insertSession, parseJson, runCli, tempDir } from '../helpers/env.js';
import { freshDatabase, rowsDigest, serverQuery, type FreshDatabase } from './servers.js';

const MB = 1024 * 1024;
const dir = tempDir('sk-external-fail-');
const source = join(dir, 'opencode.db');
let fixture: FixtureSummary;
const databases: FreshDatabase[] = [];

beforeAll(() => {
  fixture = generateFixture({ path: source, targetBytes: 24 * MB, hugeAttachmentBytes: 4 * MB, seed: 33, rootSessions: 40 });
});
afterAll(async () => {
  for (const d of databases) await d.drop();
});

async function fresh(backend: 'postgres' | 'mysql' = 'postgres'): Promise<string> {
  const d = await freshDatabase(backend);
  databases.push(d);
  return d.url;
}

const fileHash = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

function exited(child: ChildProcess): Promise<{ status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr })));
}

/** A TCP proxy to `port` that can be killed once `limit` bytes have passed in `direction`. */
function proxy(port: number, limit: number, direction: 'up' | 'down'): Promise<{ port: number; killed: Promise<void> }> {
  const sockets = new Set<Socket>();
  let passed = 0;
  let markKilled: () => void = () => undefined;
  const killed = new Promise<void>((resolve) => (markKilled = resolve));
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host: '127.0.0.1', port });
    sockets.add(client).add(upstream);
    const count = (d: Buffer): void => {
      passed += d.length;
      if (passed > limit) {
        server.close();
        for (const s of sockets) s.destroy();
        markKilled();
      }
    };
    client.on('data', (d: Buffer) => direction === 'up' && count(d));
    upstream.on('data', (d: Buffer) => direction === 'down' && count(d));
    client.pipe(upstream).pipe(client);
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ port: (server.address() as { port: number }).port, killed })),
  );
}

function counts(path: string): { sessions: number; messages: number; parts: number } {
  const db = new Database(path, { readonly: true });
  const n = (sql: string): number => db.prepare(sql).pluck().get() as number;
  const result = { sessions: n('SELECT count(*) FROM session'), messages: n('SELECT count(*) FROM message'), parts: n('SELECT count(*) FROM part') };
  db.close();
  return result;
}

async function serverCounts(url: string): Promise<{ sessions: number; complete: number; messages: number; parts: number }> {
  const n = async (sql: string): Promise<number> => Number((await serverQuery<{ n: number | string }>(url, sql))[0]?.n ?? 0);
  return {
    sessions: await n('SELECT COUNT(*) AS n FROM sk_session'),
    complete: await n('SELECT COUNT(*) AS n FROM sk_session WHERE complete = 1'),
    messages: await n('SELECT COUNT(*) AS n FROM sk_message'),
    parts: await n('SELECT COUNT(*) AS n FROM sk_part'),
  };
}

describe('postgres: interruptions', () => {
  it('a migration killed with SIGKILL midway completes when run again, with no duplicates, verified', async () => {
    const url = await fresh();
    const child = spawn(process.execPath, [CLI, '--db', source, 'migrate', '--to', url, '--no-progress', '--json'], { stdio: 'pipe' });
    const done = exited(child);
    // Killed once a few sessions are complete and another is in flight.
    for (let i = 0; i < 600; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const c = await serverCounts(url).catch(() => ({ complete: 0, sessions: 0 }));
      if (c.complete >= 5 && c.sessions > c.complete) break;
    }
    child.kill('SIGKILL');
    const killed = await done;
    expect(killed.signal).toBe('SIGKILL');
    const midway = await serverCounts(url);
    expect(midway.complete).toBeLessThan(fixture.sessions);

    const again = parseJson<{ verified: boolean; copied: number; skipped: number; sessions: number }>(
      runCli(['--db', source, 'migrate', '--to', url, '--json']),
    );
    expect(again.verified).toBe(true);
    expect(again.skipped).toBeGreaterThanOrEqual(midway.complete);
    expect(again.copied + again.skipped).toBe(fixture.sessions);
    const after = await serverCounts(url);
    expect(after).toEqual({ sessions: fixture.sessions, complete: fixture.sessions, messages: fixture.messages, parts: fixture.parts });
  });

  it("a session's rows reach the server only after its session row: with that row held back, killed and run again, every row once", async () => {
    const url = await fresh();
    // The schema first (a one-session file of other ids), so the lock below is on a table that exists.
    const other = join(dir, 'schema-only.db');
    generateFixture({ path: other, targetBytes: 256 * 1024, seed: 34, rootSessions: 1 });
    parseJson(runCli(['--db', other, 'migrate', '--to', url, '--json']));
    const before = await serverCounts(url);
    const orphans = async (): Promise<number> => {
      const n = async (table: string): Promise<number> =>
        Number((await serverQuery<{ n: string }>(url, `SELECT COUNT(*) AS n FROM ${table} r WHERE NOT EXISTS (SELECT 1 FROM sk_session s WHERE s.id = r.session_id)`))[0]?.n ?? 0);
      return (await n('sk_message')) + (await n('sk_part')) + (await n('sk_row'));
    };
    // Session rows wait on this lock; everything else may go on.
    const pg = (await import('pg')).default;
    const locker = new pg.Client({ connectionString: url });
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE sk_session IN EXCLUSIVE MODE');
    const child = spawn(process.execPath, [CLI, '--db', source, 'migrate', '--to', url, '--no-progress', '--json'], { stdio: 'pipe' });
    const done = exited(child);
    try {
      // Long enough for several batches of messages and parts to be sent had they not waited.
      let waiting = 0;
      for (let i = 0; i < 100 && waiting === 0; i++) {
        await new Promise((r) => setTimeout(r, 100));
        waiting = Number((await serverQuery<{ n: string }>(url, "SELECT COUNT(*) AS n FROM pg_locks WHERE NOT granted AND relation = 'sk_session'::regclass"))[0]?.n ?? 0);
      }
      expect(waiting).toBeGreaterThan(0);
      await new Promise((r) => setTimeout(r, 2000));
      expect(await orphans()).toBe(0);
    } finally {
      child.kill('SIGKILL');
      await done;
      await locker.query('ROLLBACK');
      await locker.end();
    }
    expect(await orphans()).toBe(0);
    const again = parseJson<{ verified: boolean; copied: number; skipped: number; sessions: number }>(runCli(['--db', source, 'migrate', '--to', url, '--json']));
    expect(again.verified).toBe(true);
    expect(again.copied + again.skipped).toBe(fixture.sessions);
    const after = await serverCounts(url);
    expect(after).toEqual({
      sessions: before.sessions + fixture.sessions,
      complete: before.complete + fixture.sessions,
      messages: before.messages + fixture.messages,
      parts: before.parts + fixture.parts,
    });
  });

  it('the server going away mid-migration is one clear line, and the SQLite file is untouched', async () => {
    const url = await fresh();
    const before = fileHash(source);
    const p = await proxy(5432, 3 * MB, 'up');
    const target = new URL(url);
    target.port = String(p.port);
    target.password = 's3cret-pw';
    const child = spawn(process.execPath, [CLI, '--db', source, 'migrate', '--to', target.toString(), '--no-progress'], { stdio: 'pipe' });
    const run = await exited(child);
    await p.killed;
    expect(run.status).toBe(1);
    const lines = run.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^session-keeper: postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/sk_t_\w+: (migrate|verify|cannot connect): /);
    expect(run.stderr).not.toContain('s3cret-pw');
    expect(fileHash(source)).toBe(before);
    expect(counts(source)).toEqual({ sessions: fixture.sessions, messages: fixture.messages, parts: fixture.parts });
  });

  it('the server going away mid-read (a large attachment) is one clear line', async () => {
    const url = await fresh();
    const ids = [fixture.hugeSessionId as string];
    parseJson(runCli(['--db', source, 'migrate', '--to', url, '--session', ...ids, '--json']));
    const p = await proxy(5432, 2 * MB, 'down');
    const target = new URL(url);
    target.port = String(p.port);
    const child = spawn(process.execPath, [CLI, '--db', target.toString(), 'attachment', fixture.hugePartId as string, '--out', join(dir, 'x.pdf')], {
      stdio: 'pipe',
    });
    const run = await exited(child);
    expect(run.status).toBe(1);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toMatch(/^session-keeper: postgres:\/\/.*: (read attachment|attachment): /);
    // And a store that is gone entirely.
    const gone = runCli(['--db', target.toString(), 'list']);
    expect(gone.status).toBe(1);
    expect(gone.stderr).toMatch(/^session-keeper: postgres:\/\/.*: cannot connect: .*ECONNREFUSED/);
  });
});

describe('offload retention', () => {
  it('moves evicted sessions to the server, verified, before deleting them locally; restore --from brings them back byte for byte', async () => {
    const url = await fresh();
    const db = join(dir, 'offload.db');
    const original = join(dir, 'offload-original.db');
    copyFileSync(source, db);
    copyFileSync(source, original);
    const config = join(dir, 'offload.json');
    writeFileSync(config, JSON.stringify({ session: { maxSessions: 30, archive: false, offload: url } }));
    const applied = parseJson<{ evicted: string[]; offload: string }>(runCli(['--db', db, '--config', config, '--json', 'retention', '--apply', '--yes']));
    expect(applied.evicted.length).toBeGreaterThan(0);
    expect(applied.offload).toBe(new URL(url).toString().replace(/\/$/, ''));

    const store = await openReader(url);
    const local = new Database(db, { readonly: true });
    const sqlite = await openReader(original);
    try {
      for (const id of applied.evicted) {
        expect(local.prepare('SELECT 1 FROM session WHERE id = ?').get(id)).toBeUndefined();
        const [row] = await serverQuery<{ complete: number; digest: string }>(url, `SELECT complete, digest FROM sk_session WHERE id = '${id}'`);
        expect(Number(row?.complete)).toBe(1);
        expect(row?.digest).toMatch(/^[0-9a-f]{64}$/);
        expect(await store.showSession(id, { limit: 1000 })).toEqual(await sqlite.showSession(id, { limit: 1000 }));
      }
    } finally {
      local.close();
      await sqlite.close();
      await store.close();
    }
    const restored = parseJson<{ restored: number }>(runCli(['--db', db, '--json', 'restore', '--from', url, ...applied.evicted]));
    expect(restored.restored).toBeGreaterThanOrEqual(applied.evicted.length);
    expect(rowsDigest(db)).toBe(rowsDigest(original));
  });

  it('an unreachable offload target deletes nothing', () => {
    const db = join(dir, 'offload-fail.db');
    copyFileSync(source, db);
    const before = rowsDigest(db);
    const config = join(dir, 'offload-fail.json');
    writeFileSync(config, JSON.stringify({ session: { maxSessions: 5, archive: false, offload: 'postgres://postgres:pw@127.0.0.1:1/none' } }));
    const run = runCli(['--db', db, '--config', config, 'retention', '--apply', '--yes']);
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/cannot connect/);
    expect(run.stderr).not.toContain(':pw@');
    expect(rowsDigest(db)).toBe(before);
  });
});

describe('memory ceiling', () => {
  it('migrates a database holding a ~100 MB attachment with --max-old-space-size=64', async () => {
    const url = await fresh();
    const big = join(dir, 'big.db');
    const summary = generateFixture({ path: big, targetBytes: 120 * MB, hugeAttachmentBytes: 100 * MB, seed: 5, rootSessions: 10 });
    const run = runCli(['--db', big, 'migrate', '--to', url, '--json'], { nodeArgs: ['--max-old-space-size=64'] });
    expect(run.stderr).not.toMatch(/heap out of memory/);
    expect(run.signal).toBeNull();
    expect(run.status).toBe(0);
    expect((JSON.parse(run.stdout) as { verified: boolean }).verified).toBe(true);
    const store = await openReader(url);
    const sqlite = await openReader(big);
    try {
      const a = await sqlite.extractAttachment(summary.hugePartId as string, join(dir, 'c1'));
      const b = await store.extractAttachment(summary.hugePartId as string, join(dir, 'c2'));
      expect(b.sha256).toBe(a.sha256);
      expect(b.bytes).toBe(100 * MB);
    } finally {
      await sqlite.close();
      await store.close();
    }
  }, 300_000);
});

describe('mysql: limits of the server', () => {
  it("a row over the server's max_allowed_packet is one line saying what to raise; the SQLite file is untouched", async () => {
    const url = await fresh('mysql');
    const [{ limit }] = await serverQuery<{ limit: number }>(url, 'SELECT @@max_allowed_packet AS `limit`');
    const path = join(dir, 'big-text.db');
    const db = emptyOpenCodeDb(path);
    insertSession(db, 'ses_bigtext000001', 1000, 2000);
    insertMessage(db, 'msg_bigtext1', 'ses_bigtext000001', 1000);
    // A tool's output of text, no attachment to cut out: the body itself is over the limit.
    insertRawPart(db, 'prt_bigtext1', 'msg_bigtext1', 'ses_bigtext000001', 1000, JSON.stringify({ type: 'tool', state: { output: 'a line of output\n'.repeat(Math.ceil(Number(limit) / 16) + 1024) } }));
    db.close();
    const before = fileHash(path);
    const run = runCli(['--db', path, 'migrate', '--to', url, '--no-progress']);
    expect(run.status).toBe(1);
    const lines = run.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^session-keeper: mysql:\/\/root@127\.0\.0\.1:\d+\/sk_t_\w+: \w+: .*raise max_allowed_packet on the server .* and run the command again/);
    expect(fileHash(path)).toBe(before);
    const complete = await serverQuery<{ n: number }>(url, 'SELECT COUNT(*) AS n FROM sk_session WHERE complete = 1');
    expect(Number(complete[0]?.n)).toBe(0);
  });
});
