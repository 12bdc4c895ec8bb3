/**
 * The mirror (sync) against real PostgreSQL and MariaDB: a first pass copies every session (every
 * table, every event) and verifies it; a second pass sends nothing; a change is sent once, and only
 * its changed rows; the local file is never written; a server without our schema gets it, one with
 * a newer schema is refused with the version named; two database files mirror into one server
 * without overwriting each other, and a real conflict is reported, not guessed.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { restoreFrom } from '../../src/main/migration.js';
import { migrateTo } from '../../src/main/migration.js';
import { runSync, type SyncOptions } from '../../src/main/sync.js';
import { openMirrorSource, openMirrorTarget } from '../../src/store/open-store.js';
import { Mirror } from '../../src/store/transfer/mirror.js';
import type { SessionResult } from '../../src/store/transfer/mirror.js';
import { generateFixture } from '../fixtures/generate.js';
import { CLI } from '../helpers/env.js';
import { BACKENDS, serverQuery } from './servers.js';
import { sessionsAsText, syncFixture } from './sync-helpers.js';

const MB = 1024 * 1024;
const { dir, copyOfSeed, fresh: freshDatabase } = syncFixture('sk-sync-', { targetBytes: 3 * MB, seed: 14, rootSessions: 12, schema: '1.18', newerLayoutShare: 0.3 });

const fileHash = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

function sync(db: string, to: string, extra: Partial<SyncOptions> = {}): Promise<Awaited<ReturnType<typeof runSync>> & { results: SessionResult[] }> {
  const results: SessionResult[] = [];
  return runSync({ db, to, once: true, stateDir: join(dir, 'state'), onSession: (r) => results.push(r), ...extra }).then((s) => ({ ...s, results }));
}

describe.each(BACKENDS)('sync into $backend', ({ backend, skip }) => {
  if (skip) {
    it.skip('SQL Server: set MSSQL_URL to run (no SQL Server on this machine)', () => undefined);
    return;
  }
  let url: string;
  beforeAll(async () => {
    const d = await freshDatabase(backend);
    url = d.url;
  });

  it('creates the schema, mirrors every session whole, then sends nothing; the local file is untouched', async () => {
    const db = copyOfSeed();
    const before = fileHash(db);
    const first = await sync(db, url);
    const local = await sessionsAsText(db);
    expect(first.written).toBe(local.size);
    expect(first.status.pending).toBe(0);
    expect(first.status.mirrored).toBe(local.size);
    // Every table and every event of every session, byte for byte.
    expect(await sessionsAsText(url)).toEqual(local);
    const events = new Database(db, { readonly: true }).prepare('SELECT count(*) FROM event').pluck().get() as number;
    expect(events).toBeGreaterThan(0);
    const [stored] = await serverQuery<{ n: number | string }>(url, "SELECT count(*) AS n FROM sk_row WHERE table_name = 'event'");
    expect(Number(stored?.n)).toBe(events);

    const second = await sync(db, url);
    expect(second.written).toBe(0);
    expect(second.results).toEqual([]);
    expect(fileHash(db)).toBe(before);
  });

  it('sends a changed session once, and only the rows that changed', async () => {
    const db = copyOfSeed();
    await sync(db, url);
    const file = new Database(db);
    const part = file.prepare('SELECT id, session_id FROM part ORDER BY time_created DESC LIMIT 1').get() as { id: string; session_id: string };
    file.prepare("UPDATE part SET data = json_set(data, '$.text', 'changed by the test'), time_updated = time_updated + 1 WHERE id = ?").run(part.id);
    const title = file.prepare('SELECT id FROM session WHERE id <> ? ORDER BY id LIMIT 1').pluck().get(part.session_id) as string;
    file.prepare("UPDATE session SET title = 'renamed' WHERE id = ?").run(title);
    file.close();
    const after = await sync(db, url);
    expect(after.results.map((r) => [r.id, r.verdict]).sort()).toEqual([[part.session_id, 'written'], [title, 'written']].sort());
    const changed = after.results.find((r) => r.id === part.session_id);
    expect(changed?.rows).toBe(1);
    expect(after.results.find((r) => r.id === title)?.rows).toBe(0);
    expect(await sessionsAsText(url, [part.session_id, title])).toEqual(await sessionsAsText(db, [part.session_id, title]));
    expect((await sync(db, url)).written).toBe(0);
  });

  it('two database files into one server: both histories complete, neither overwritten; a real conflict is reported', async () => {
    const target = await freshDatabase(backend);
    // Machine A has the seed; machine B a different database.
    const a = copyOfSeed();
    const b = join(dir, `other-${backend}.db`);
    generateFixture({ path: b, targetBytes: 2 * MB, seed: 15, rootSessions: 8, schema: '1.18' });
    const ra = await sync(a, target.url);
    const rb = await sync(b, target.url);
    expect(ra.sourceId).not.toBe(rb.sourceId);
    const la = await sessionsAsText(a);
    const lb = await sessionsAsText(b);
    const server = await sessionsAsText(target.url);
    expect(server.size).toBe(la.size + lb.size);
    for (const [id, text] of [...la, ...lb]) expect(server.get(id)).toBe(text);

    // B restores one of A's sessions (the server's copy), both continue it: A first, then B.
    const shared = [...la.keys()][0] as string;
    const src = new Database(a, { readonly: true });
    const sessionRow = src.prepare('SELECT * FROM session WHERE id = ?').get(shared) as Record<string, unknown>;
    src.close();
    const fileB = new Database(b);
    const cols = Object.keys(sessionRow);
    fileB.prepare(`INSERT OR IGNORE INTO project (id, worktree, time_created, time_updated, sandboxes) VALUES (?, '/', 0, 0, '[]')`).run(sessionRow['project_id']);
    fileB.prepare(`INSERT INTO session (${cols.join(',')}) VALUES (${cols.map(() => '?').join(',')})`).run(...cols.map((c) => sessionRow[c]));
    fileB.close();
    // B's copy (the session row alone) is older than A's? No: same time_updated, different rows -> B has no base and is not newer.
    const fileA = new Database(a);
    fileA.prepare('UPDATE session SET title = ?, time_updated = time_updated + 10 WHERE id = ?').run('continued on A', shared);
    fileA.close();
    const again = await sync(a, target.url);
    expect(again.results).toEqual([expect.objectContaining({ id: shared, verdict: 'written' })]);
    const onB = await sync(b, target.url);
    // B's copy is older than what A mirrored: the server's newer copy is kept.
    expect(onB.results).toEqual([expect.objectContaining({ id: shared, verdict: 'server-newer' })]);
    const fileB2 = new Database(b);
    fileB2.prepare('UPDATE session SET title = ?, time_updated = time_updated + 20 WHERE id = ?').run('continued on B', shared);
    fileB2.close();
    const conflict = await sync(b, target.url);
    expect(conflict.results).toEqual([expect.objectContaining({ id: shared, verdict: 'conflict' })]);
    expect(conflict.conflicts[0]?.reason).toMatch(/another version/);
    // Nothing was overwritten: the server still holds A's version.
    const [row] = await serverQuery<{ title: string }>(target.url, `SELECT title FROM sk_session WHERE id = '${shared}'`);
    expect(row?.title).toBe('continued on A');
    // Reported once, not retried while neither side changes.
    expect((await sync(b, target.url)).results.filter((r) => r.id === shared).length).toBeLessThanOrEqual(1);
  });

  it('a first sync takes the pipelined path and ends where migrate does, verified; the next change goes one session at a time', async () => {
    const mirrored = await freshDatabase(backend);
    const migrated = await freshDatabase(backend);
    const db = copyOfSeed();
    const first = await sync(db, mirrored.url);
    expect(first.written).toBe(first.status.sessions);
    await migrateTo({ db, to: migrated.url });
    // The same sessions, byte for byte, as migrate leaves them; each verified and owned by this source.
    expect(await sessionsAsText(mirrored.url)).toEqual(await sessionsAsText(migrated.url));
    const counts = 'SELECT id, messages, parts, bytes, complete FROM sk_session ORDER BY id';
    expect(await serverQuery(mirrored.url, counts)).toEqual(await serverQuery(migrated.url, counts));
    const [owned] = await serverQuery<{ n: number | string }>(mirrored.url, 'SELECT count(*) AS n FROM sk_session t JOIN sk_sync_session s ON s.session_id = t.id AND s.digest = t.digest JOIN sk_sync_base b ON b.session_id = t.id AND b.digest = t.digest WHERE t.complete = 1');
    expect(Number(owned?.n)).toBe(first.written);
    // The digest stored is the mirror's own: a per-session write over it finds the held copy it expects.
    const file = new Database(db);
    const id = file.prepare('SELECT session_id FROM part ORDER BY time_created DESC LIMIT 1').pluck().get() as string;
    file.prepare("UPDATE part SET data = json_set(data, '$.text', 'after the first sync'), time_updated = time_updated + 1 WHERE id = (SELECT id FROM part WHERE session_id = ? ORDER BY id LIMIT 1)").run(id);
    file.close();
    const next = await sync(db, mirrored.url);
    expect(next.results).toEqual([expect.objectContaining({ id, verdict: 'written', rows: 1 })]);
    expect((await sessionsAsText(mirrored.url, [id])).get(id)).toBe((await sessionsAsText(db, [id])).get(id));
  });

  it('a session deleted here between the scan and its read is reported gone; the first sync goes on with the rest', async () => {
    const target = await freshDatabase(backend);
    const db = copyOfSeed();
    const source = openMirrorSource(db);
    const server = await openMirrorTarget(target.url);
    try {
      const mirror = await Mirror.start(source, server, 'src_00000000000000aa', 'test');
      const pending = await mirror.scan();
      const { fresh, held } = await mirror.split(pending);
      expect(held).toEqual([]);
      // A leaf session (no children) in the middle of the stream, deleted by OpenCode after the scan.
      const file = new Database(db);
      const leaf = fresh.find((id, i) => i > 2 && file.prepare('SELECT count(*) FROM session WHERE parent_id = ?').pluck().get(id) === 0) as string;
      file.pragma('foreign_keys = ON');
      file.prepare('DELETE FROM session WHERE id = ?').run(leaf);
      file.close();
      const results: SessionResult[] = [];
      const left = await mirror.mirrorNew(fresh, (r) => results.push(r));
      expect(left).toEqual([]);
      expect(results.filter((r) => r.verdict === 'gone').map((r) => r.id)).toEqual([leaf]);
      expect(results.filter((r) => r.verdict === 'written').length).toBe(fresh.length - 1);
      expect(mirror.status().mirrored).toBe(fresh.length - 1);
    } finally {
      await server.close();
      await source.close();
    }
    const local = await sessionsAsText(db);
    expect(await sessionsAsText(target.url)).toEqual(local);
  });

  it('restore --from records the base: the restored session continued here is written, not a conflict', async () => {
    const target = await freshDatabase(backend);
    const a = copyOfSeed();
    await sync(a, target.url);
    // Machine B, its own file, brings one of A's sessions back from the server and continues it.
    const b = join(dir, `restorer-${backend}.db`);
    generateFixture({ path: b, targetBytes: 1 * MB, seed: 16, rootSessions: 3, schema: '1.18' });
    await sync(b, target.url);
    const shared = (await sessionsAsText(a)).keys().next().value as string;
    const restored = await restoreFrom({ db: b, from: target.url, roots: [shared], stateDir: join(dir, 'state') });
    expect(restored.copiedIds).toContain(shared);
    // Nothing changed yet: the restored copy counts as mirrored.
    const quiet = await sync(b, target.url);
    expect(quiet.results).toEqual([]);
    const fileB = new Database(b);
    fileB.prepare("UPDATE session SET title = 'continued after the restore', time_updated = time_updated + 10 WHERE id = ?").run(shared);
    fileB.close();
    const after = await sync(b, target.url);
    expect(after.conflicts).toEqual([]);
    expect(after.results).toEqual([expect.objectContaining({ id: shared, verdict: 'written' })]);
    const [row] = await serverQuery<{ title: string }>(target.url, `SELECT title FROM sk_session WHERE id = '${shared}'`);
    expect(row?.title).toBe('continued after the restore');
  });

  it('a pass that ends with a conflict exits non-zero, says how many in one line, and the status counts the same', async () => {
    const target = await freshDatabase(backend);
    const a = copyOfSeed();
    await sync(a, target.url);
    // Another file with the same sessions (its own source) changed one: both sides moved since they agreed.
    const c = copyOfSeed();
    const fileC = new Database(c);
    const id = fileC.prepare('SELECT id FROM session ORDER BY id LIMIT 1').pluck().get() as string;
    fileC.prepare("UPDATE session SET title = 'changed elsewhere', time_updated = time_updated + 5 WHERE id = ?").run(id);
    fileC.close();
    const inProcess = await sync(c, target.url);
    expect(inProcess.conflicts.map((x) => x.id)).toEqual([id]);
    expect(inProcess.status.conflicts).toBe(inProcess.conflicts.length);
    const run = spawnSync(process.execPath, [CLI, '--db', c, 'sync', '--to', target.url, '--once'], { encoding: 'utf8', env: { ...process.env, XDG_CACHE_HOME: join(dir, `cache-${backend}`) } });
    expect(run.status).not.toBe(0);
    const lines = run.stderr.split('\n').filter((l) => /in conflict on/.test(l));
    expect(lines).toEqual([expect.stringMatching(/^session-keeper: 1 session in conflict on .*neither was changed$/)]);
    expect(run.stdout).toMatch(/1 in conflict/);
    // A clean pass exits 0.
    const clean = spawnSync(process.execPath, [CLI, '--db', a, 'sync', '--to', target.url, '--once'], { encoding: 'utf8', env: { ...process.env, XDG_CACHE_HOME: join(dir, `cache-${backend}`) } });
    expect(clean.status).toBe(0);
  });

  it('refuses a server whose schema is newer, naming its version, and changes nothing', async () => {
    const target = await freshDatabase(backend);
    const db = copyOfSeed();
    await sync(db, target.url);
    await serverQuery(target.url, "INSERT INTO sk_migrations (version, name, applied_at) VALUES (99, 'from the future', 0)");
    const [before] = await serverQuery<{ n: number | string }>(target.url, 'SELECT count(*) AS n FROM sk_sync_base');
    await expect(sync(db, target.url)).rejects.toThrow(/schema version 99.*newer session-keeper/);
    const [after] = await serverQuery<{ n: number | string }>(target.url, 'SELECT count(*) AS n FROM sk_sync_base');
    expect(Number(after?.n)).toBe(Number(before?.n));
  });
});

describe('sync refuses what no retry can fix', () => {
  it('a connection string without a database fails at once, even when running until stopped, with the password masked', async () => {
    const db = copyOfSeed();
    const started = Date.now();
    await expect(runSync({ db, to: 'postgres://user:hunter2-secret@127.0.0.1:5432', stateDir: join(dir, 'state') })).rejects.toThrow(/no database name/);
    await expect(runSync({ db, to: 'postgres://user:hunter2-secret@127.0.0.1:5432', stateDir: join(dir, 'state') })).rejects.not.toThrow(/hunter2/);
    expect(Date.now() - started).toBeLessThan(5000);
  });
});
