/**
 * Retention end to end on generated OpenCode databases: plans that change nothing, exact
 * archive/restore round trips, damaged archives and full disks that delete nothing, the file
 * ending under maxSizeMB, warnings once per threshold, and a concurrent writer that loses nothing.
 */
import Database from 'better-sqlite3';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseSessionConfig } from '../../src/core/config.js';
import { MB } from '../../src/core/thresholds.js';
import { generateFixture } from '../fixtures/generate.js';
import { archiveThenDelete, enforceAtStartup } from '../../dist/main/retention.js';
import { CLI, parseJson, runCli, tempDir } from '../helpers/env.js';

const dir = tempDir('sk-retention-');
const base = join(dir, 'base', 'opencode.db');
let copies = 0;

beforeAll(() => {
  mkdirSync(join(dir, 'base'), { recursive: true });
  generateFixture({ path: base, targetBytes: 16 * MB, seed: 21 });
});

/** A fresh copy of the base database (with its session_diff files) in its own folder. */
function freshDb(): { db: string; home: string; env: Record<string, string> } {
  const home = join(dir, `run-${copies++}`);
  mkdirSync(join(home, 'storage', 'session_diff'), { recursive: true });
  const db = join(home, 'opencode.db');
  copyFileSync(base, db);
  const diffs = join(dir, 'base', 'storage', 'session_diff');
  for (const name of readdirSync(diffs)) copyFileSync(join(diffs, name), join(home, 'storage', 'session_diff', name));
  const env = { XDG_DATA_HOME: join(home, 'data'), XDG_CONFIG_HOME: join(home, 'config'), XDG_CACHE_HOME: join(home, 'cache') };
  return { db, home, env };
}

/** Every session-data row, as one digest per table: equal digests mean byte-equal rows. */
function snapshot(db: string, where = ''): Record<string, string> {
  const conn = new Database(db, { readonly: true });
  const out: Record<string, string> = {};
  const tables: [string, string][] = [
    ['session', `SELECT * FROM session ${where ? `WHERE id IN (${where})` : ''} ORDER BY id`],
    ['message', `SELECT id, session_id, time_created, time_updated, data, typeof(data) FROM message ${where ? `WHERE session_id IN (${where})` : ''} ORDER BY id`],
    ['part', `SELECT id, message_id, session_id, time_created, time_updated, data, typeof(data) FROM part ${where ? `WHERE session_id IN (${where})` : ''} ORDER BY id`],
    ['todo', `SELECT * FROM todo ${where ? `WHERE session_id IN (${where})` : ''} ORDER BY session_id, position`],
    ['session_share', `SELECT * FROM session_share ${where ? `WHERE session_id IN (${where})` : ''} ORDER BY session_id`],
    // The event log goes and comes back with its sessions too.
    ['event_sequence', `SELECT * FROM event_sequence ${where ? `WHERE aggregate_id IN (${where})` : ''} ORDER BY aggregate_id`],
    ['event', `SELECT id, aggregate_id, seq, type, data, typeof(data) FROM event ${where ? `WHERE aggregate_id IN (${where})` : ''} ORDER BY id`],
  ];
  for (const [name, sql] of tables) {
    const hash = createHash('sha256');
    for (const row of conn.prepare(sql).raw().iterate() as IterableIterator<unknown[]>) hash.update(JSON.stringify(row));
    out[name] = hash.digest('hex');
  }
  conn.close();
  return out;
}

const count = (db: string, sql: string): number => {
  const conn = new Database(db, { readonly: true });
  try {
    return conn.prepare(sql).pluck().get() as number;
  } finally {
    conn.close();
  }
};

const integrity = (db: string): string => {
  const conn = new Database(db, { readonly: true });
  try {
    return conn.pragma('integrity_check', { simple: true }) as string;
  } finally {
    conn.close();
  }
};

describe('retention', () => {
  it('--dry-run lists roots with their children and changes nothing', () => {
    const { db, env } = freshDb();
    const before = createHash('sha256').update(readFileSync(db)).digest('hex');
    const plan = parseJson<{ evict: { id: string; children: string[]; bytes: number }[]; freesBytes: number }>(
      runCli(['--db', db, '--json', 'retention', '--max-sessions', '5', '--dry-run'], { env }),
    );
    const roots = count(db, 'SELECT count(*) FROM session WHERE parent_id IS NULL');
    expect(plan.evict.length).toBe(roots - 5);
    const conn = new Database(db, { readonly: true });
    for (const e of plan.evict) {
      expect(conn.prepare('SELECT parent_id FROM session WHERE id = ?').pluck().get(e.id)).toBeNull();
      expect(e.children.sort()).toEqual((conn.prepare('SELECT id FROM session WHERE parent_id = ?').pluck().all(e.id) as string[]).sort());
    }
    conn.close();
    expect(plan.freesBytes).toBe(plan.evict.reduce((sum, e) => sum + e.bytes, 0));
    expect(createHash('sha256').update(readFileSync(db)).digest('hex')).toBe(before);
  });

  it('--apply evicts oldest by time_created, archives first (0600, verified), and the file ends under maxSizeMB', () => {
    const { db, env } = freshDb();
    const sizeBefore = statSync(db).size;
    const limitMB = Math.floor(sizeBefore / MB / 2);
    const run = runCli(['--db', db, '--json', 'retention', '--max-size-mb', String(limitMB), '--apply', '--yes'], { env });
    const result = parseJson<{ evicted: string[]; archive: string; bytesBefore: number; bytesAfter: number }>(run);
    expect(run.stderr).toMatch(/^Warning: session-keeper evicted \d+ OpenCode sessions \(to fit \d+ MB\); archived to /m);
    expect(result.evicted.length).toBeGreaterThan(0);
    expect(result.bytesAfter).toBeLessThanOrEqual(limitMB * MB);
    expect(statSync(db).size).toBe(result.bytesAfter);
    expect(statSync(result.archive).mode & 0o777).toBe(0o600);
    expect(result.archive.startsWith(join(env.XDG_DATA_HOME as string, 'opencode', 'archive'))).toBe(true);
    // The evicted are the oldest roots by time_created (none of the kept roots is older).
    const conn = new Database(db, { readonly: true });
    const oldestKept = conn.prepare('SELECT min(time_created) FROM session WHERE parent_id IS NULL AND time_archived IS NULL').pluck().get() as number;
    conn.close();
    const original = new Database(base, { readonly: true });
    for (const id of result.evicted) {
      const row = original.prepare('SELECT time_created, time_archived FROM session WHERE id = ?').get(id) as { time_created: number; time_archived: number | null };
      if (row.time_archived === null) expect(row.time_created).toBeLessThanOrEqual(oldestKept);
    }
    original.close();
    expect(integrity(db)).toBe('ok');
    expect(count(db, 'SELECT count(*) FROM part WHERE session_id NOT IN (SELECT id FROM session)')).toBe(0);
    expect(count(db, 'SELECT count(*) FROM event WHERE aggregate_id NOT IN (SELECT id FROM session)')).toBe(0);
    expect(count(db, 'SELECT count(*) FROM event_sequence WHERE aggregate_id NOT IN (SELECT id FROM session)')).toBe(0);
  });

  it('archive, delete and restore give back byte-identical rows, diff files included', () => {
    const { db, home, env } = freshDb();
    const conn = new Database(db, { readonly: true });
    const roots = conn.prepare('SELECT id FROM session WHERE parent_id IS NULL ORDER BY time_created LIMIT 6').pluck().all() as string[];
    const withChildren = conn.prepare(`SELECT id FROM session WHERE id IN (${roots.map(() => '?').join(',')}) OR parent_id IN (${roots.map(() => '?').join(',')})`).pluck().all(...roots, ...roots) as string[];
    conn.close();
    const list = withChildren.map((id) => `'${id}'`).join(',');
    const before = snapshot(db, list);
    const whole = snapshot(db);
    const diffs = withChildren.map((id) => join(home, 'storage', 'session_diff', `${id}.json`)).filter((p) => existsSync(p));
    expect(diffs.length).toBeGreaterThan(0);
    const diffContent = diffs.map((p) => JSON.parse(readFileSync(p, 'utf8')) as unknown);

    const archive = join(home, 'picked.json.gz');
    const archived = parseJson<{ archive: string; sessions: number }>(runCli(['--db', db, '--json', 'archive', '--output', archive, '--session', ...roots], { env }));
    expect(archived.sessions).toBe(withChildren.length);
    expect(statSync(archive).mode & 0o777).toBe(0o600);

    const deleted = parseJson<{ evicted: string[] }>(runCli(['--db', db, '--json', 'delete', ...roots, '--no-archive', '--yes'], { env }));
    expect(deleted.evicted.sort()).toEqual([...roots].sort());
    expect(count(db, `SELECT count(*) FROM session WHERE id IN (${list})`)).toBe(0);
    for (const p of diffs) expect(existsSync(p)).toBe(false);

    const restored = parseJson<{ restored: number; skipped: number }>(runCli(['--db', db, '--json', 'restore', archive], { env }));
    expect(restored).toMatchObject({ restored: withChildren.length, skipped: 0 });
    expect(snapshot(db, list)).toEqual(before);
    expect(snapshot(db)).toEqual(whole);
    diffs.forEach((p, i) => expect(JSON.parse(readFileSync(p, 'utf8'))).toEqual(diffContent[i]));
    // Idempotent: a second restore skips everything.
    expect(parseJson(runCli(['--db', db, '--json', 'restore', archive], { env }))).toMatchObject({ restored: 0, skipped: withChildren.length });
    expect(integrity(db)).toBe('ok');
  });

  it('one archived session is an `opencode export` object: {info, messages: [{info, parts}]}', () => {
    const { db, home, env } = freshDb();
    const id = count(db, "SELECT id FROM session WHERE parent_id IS NULL AND id IN (SELECT session_id FROM message) LIMIT 1") as unknown as string;
    const archive = join(home, 'one.json');
    parseJson(runCli(['--db', db, '--json', 'archive', '--output', archive, '--session', id], { env }));
    const [session] = JSON.parse(readFileSync(archive, 'utf8')) as { info: Record<string, unknown>; messages: { info: Record<string, unknown>; parts: Record<string, unknown>[] }[] }[];
    expect(session?.info).toMatchObject({ id, projectID: expect.any(String), title: expect.any(String), time: { created: expect.any(Number), updated: expect.any(Number) } });
    const message = session?.messages[0];
    expect(message?.info).toMatchObject({ id: expect.stringMatching(/^msg_/), sessionID: id, role: expect.stringMatching(/^(user|assistant)$/) });
    expect(message?.parts[0]).toMatchObject({ id: expect.stringMatching(/^prt_/), sessionID: id, messageID: message?.info['id'], type: expect.any(String) });
  });

  it('a damaged archive is caught before anything is deleted', async () => {
    const { db, home } = freshDb();
    const before = snapshot(db);
    const roots = (() => {
      const conn = new Database(db, { readonly: true });
      const r = conn.prepare('SELECT id FROM session WHERE parent_id IS NULL LIMIT 5').pluck().all() as string[];
      conn.close();
      return r;
    })();
    for (const damage of ['flip', 'truncate'] as const) {
      await expect(
        archiveThenDelete(
          {
            db,
            cacheDir: join(home, 'cache'),
            archive: true,
            archiveDir: join(home, 'archive'),
            // Uncompressed, so the flipped byte reaches the digest check rather than gzip's CRC.
            archivePath: join(home, 'archive', `${damage}.json`),
            afterArchive: (path: string) => {
              const size = statSync(path).size;
              if (damage === 'truncate') truncateSync(path, Math.floor(size * 0.7));
              else {
                const bytes = readFileSync(path);
                // Flip one byte inside a base64 payload, keeping the JSON well-formed.
                const at = bytes.indexOf('base64,') + 40;
                bytes[at] = bytes[at] === 0x41 ? 0x42 : 0x41;
                writeFileSync(path, bytes);
              }
            },
          },
          roots,
        ),
      ).rejects.toThrow(damage === 'flip' ? /failed verification: session \S+ differs/ : /ends early/);
      expect(snapshot(db)).toEqual(before);
    }
  });

  it('a full disk during archiving: one clear line, no partial archive, nothing deleted', () => {
    const { db, home, env } = freshDb();
    const before = snapshot(db);
    const archiveDir = join(env.XDG_DATA_HOME as string, 'opencode', 'archive');
    // 1 MB file-size limit: the archive cannot be completed.
    const run = spawnSync('bash', ['-c', `ulimit -f 1024; exec "$0" "$@"`, process.execPath, CLI, '--db', db, 'retention', '--max-sessions', '2', '--apply', '--yes'], {
      encoding: 'utf8',
      env: { ...process.env, ...env },
    });
    expect(run.status).toBe(1);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toMatch(/^session-keeper: disk full while writing the archive .*; the partial archive was removed and nothing was deleted/);
    expect(existsSync(archiveDir) ? readdirSync(archiveDir) : []).toEqual([]);
    expect(snapshot(db)).toEqual(before);
    expect(home).toBeTruthy();
  });

  it('a malformed config is one line naming the key, and nothing runs', () => {
    const { db, home, env } = freshDb();
    const config = join(home, 'opencode.jsonc');
    writeFileSync(config, '{\n  // mine\n  "theme": "dark",\n  "session": { "maxSizeMB": "big" }\n}\n');
    const run = runCli(['--db', db, '--config', config, 'retention', '--apply', '--yes'], { env });
    expect(run.status).toBe(1);
    expect(run.stderr.trim()).toMatch(/^session-keeper: config .*opencode\.jsonc: session\.maxSizeMB: /);
    writeFileSync(config, '{ "session": { "maxSessions": 3, } // trailing comma and comment\n}');
    const plan = parseJson<{ evict: unknown[] }>(runCli(['--db', db, '--config', config, '--json', 'retention'], { env }));
    expect(plan.evict.length).toBe(count(db, 'SELECT count(*) FROM session WHERE parent_id IS NULL') - 3);
  });

  it('vacuum --incremental converts the file; later deletes shrink it in steps', () => {
    const { db, env } = freshDb();
    expect(parseJson<{ mode: string }>(runCli(['--db', db, '--json', 'vacuum', '--incremental'], { env })).mode).toBe('vacuum');
    expect(count(db, 'PRAGMA auto_vacuum')).toBe(2);
    const size = statSync(db).size;
    const result = parseJson<{ reclaim: string; bytesAfter: number }>(runCli(['--db', db, '--json', 'retention', '--max-sessions', '3', '--apply', '--no-archive', '--yes'], { env }));
    expect(result.reclaim).toBe('incremental');
    expect(result.bytesAfter).toBeLessThan(size);
    expect(count(db, 'PRAGMA freelist_count')).toBe(0);
    expect(integrity(db)).toBe('ok');
  });
});

describe('size warnings', () => {
  it('warn once per threshold until the size drops below it again', async () => {
    const { db, home } = freshDb();
    const lines: string[] = [];
    const statePath = join(home, 'state.json');
    const config = parseSessionConfig({ warnAtMB: [1, 5, 10_000] }, 'test');
    const first = await enforceAtStartup({ db, config, cacheDir: join(home, 'cache'), statePath, log: (l: string) => lines.push(l) });
    expect(first.newWarnings.map((w) => w.thresholdMB)).toEqual([5, 1]);
    expect(lines).toEqual([expect.stringMatching(/^Warning: OpenCode database is \d+ MB\. Consider archiving or enabling auto-retention\.$/)]);
    const second = await enforceAtStartup({ db, config, cacheDir: join(home, 'cache'), statePath, log: (l: string) => lines.push(l) });
    expect(second.newWarnings).toEqual([]);
    expect(lines).toHaveLength(1);
    // Shrink below 5 MB, then grow back: 5 MB warns again.
    await enforceAtStartup({ db, config: parseSessionConfig({ warnAtMB: [1, 5], maxSizeMB: 4, archive: false }, 'test'), cacheDir: join(home, 'cache'), statePath, log: () => undefined });
    expect(statSync(db).size).toBeLessThan(5 * MB);
    const third = await enforceAtStartup({ db, config, cacheDir: join(home, 'cache'), statePath, log: () => undefined });
    expect(third.newWarnings).toEqual([]);
    copyFileSync(base, db);
    const fourth = await enforceAtStartup({ db, config, cacheDir: join(home, 'cache'), statePath, log: () => undefined });
    expect(fourth.newWarnings.map((w) => w.thresholdMB)).toEqual([5]);
  });

  it('with a policy and nothing to do, startup evicts nothing and stays cheap', async () => {
    const { db, home } = freshDb();
    const config = parseSessionConfig({ maxSessions: 100_000, maxAgeDays: 10_000, maxSizeMB: 10_000 }, 'test');
    const report = await enforceAtStartup({ db, config, cacheDir: join(home, 'cache'), statePath: join(home, 's.json'), log: () => undefined });
    expect(report.retention).toBeNull();
  });
});

describe('a concurrent writer (OpenCode) during retention and vacuum', () => {
  it('loses nothing and sees no error beyond waiting', async () => {
    const { db, env } = freshDb();
    // The writer adds messages to a session of its own, as OpenCode would while the user works.
    const writer = spawn(process.execPath, [
      '-e',
      `const D = require(${JSON.stringify(require.resolve('better-sqlite3'))});
       const db = new D(${JSON.stringify(db)}); db.pragma('journal_mode = WAL'); db.pragma('busy_timeout = 5000'); db.pragma('foreign_keys = ON');
       const now = Date.now();
       db.prepare("INSERT INTO session (id, project_id, slug, directory, title, version, time_created, time_updated) SELECT 'ses_live', id, 'live', '/', 'live', '1', ?, ? FROM project LIMIT 1").run(now, now);
       const ins = db.prepare("INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?, 'ses_live', ?, ?, ?)");
       let n = 0, errors = 0; const stop = Date.now() + 4000;
       (function tick() {
         if (Date.now() > stop) { process.stdout.write(JSON.stringify({ n, errors })); db.close(); return; }
         try { ins.run('msg_live_' + String(n).padStart(6, '0'), Date.now(), Date.now(), JSON.stringify({ role: 'user', text: 'x'.repeat(2000) })); n++; }
         catch (e) { errors++; process.stderr.write(String(e) + '\\n'); }
         setTimeout(tick, 2);
       })();`,
    ]);
    let out = '';
    let err = '';
    writer.stdout.on('data', (d) => (out += String(d)));
    writer.stderr.on('data', (d) => (err += String(d)));
    await new Promise((r) => setTimeout(r, 300));
    const run = runCli(['--db', db, '--json', 'retention', '--max-sessions', '3', '--apply', '--yes'], { env });
    expect(run.status).toBe(0);
    await new Promise((r) => writer.once('exit', r));
    const { n, errors } = JSON.parse(out) as { n: number; errors: number };
    expect(err).toBe('');
    expect(errors).toBe(0);
    expect(n).toBeGreaterThan(10);
    expect(count(db, "SELECT count(*) FROM message WHERE session_id = 'ses_live'")).toBe(n);
    expect(integrity(db)).toBe('ok');
  }, 60_000);
});

describe('the attachment cache after deletes', () => {
  it('drops the cached files of deleted sessions, keeps the others', () => {
    const { db, home, env } = freshDb();
    const cacheDir = join(home, 'attachments');
    const conn = new Database(db, { readonly: true });
    // Two sessions with file parts: one to delete, one to keep.
    const [doomed, kept] = conn
      .prepare("SELECT DISTINCT p.session_id FROM part p JOIN session s ON s.id = p.session_id WHERE s.parent_id IS NULL AND p.data LIKE '%\"url\":\"data:%' LIMIT 2")
      .pluck()
      .all() as string[];
    const partOf = (session: string): string =>
      conn.prepare("SELECT id FROM part WHERE session_id = ? AND data LIKE '{\"type\":\"file\"%' LIMIT 1").pluck().get(session) as string;
    const doomedPart = partOf(doomed as string);
    const keptPart = partOf(kept as string);
    conn.close();
    const extract = (ref: string) => parseJson<{ path: string }>(runCli(['--db', db, '--json', 'attachment', ref], { env, cacheDir }));
    const doomedFile = extract(doomedPart).path;
    const keptFile = extract(keptPart).path;
    expect(existsSync(doomedFile) && existsSync(keptFile)).toBe(true);
    parseJson(runCli(['--db', db, '--json', 'delete', doomed as string, '--no-archive', '--yes'], { env, cacheDir }));
    expect(existsSync(doomedFile)).toBe(false);
    expect(existsSync(keptFile)).toBe(true);
  });
});

describe('a session with very many events', () => {
  it('is deleted whole (300,000 event rows)', () => {
    const { db, env } = freshDb();
    const conn = new Database(db);
    const id = conn.prepare('SELECT id FROM session WHERE parent_id IS NULL LIMIT 1').pluck().get() as string;
    conn.prepare('INSERT OR IGNORE INTO event_sequence (aggregate_id, seq) VALUES (?, 0)').run(id);
    conn.prepare(
      `WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 300000)
       INSERT INTO event (id, aggregate_id, seq, type, data) SELECT 'evt_bulk_' || n, ?, 100000 + n, 'message.updated.1', '{}' FROM c`,
    ).run(id);
    conn.close();
    const result = parseJson<{ evicted: string[] }>(runCli(['--db', db, '--json', 'delete', id, '--no-archive', '--yes'], { env }));
    expect(result.evicted).toEqual([id]);
    expect(count(db, `SELECT count(*) FROM event WHERE aggregate_id = '${id}'`)).toBe(0);
    expect(count(db, `SELECT count(*) FROM event_sequence WHERE aggregate_id = '${id}'`)).toBe(0);
  });
});

describe('startup with an age limit', () => {
  it('evicts once, then stays idle, and acts again after a restore brings old sessions back', async () => {
    const { db, home, env } = freshDb();
    const statePath = join(env.XDG_DATA_HOME as string, 'session-keeper', 'state.json');
    const config = parseSessionConfig({ maxAgeDays: 60, archiveDir: join(home, 'archive'), warnAtMB: [10_000] }, 'test');
    const run = () => enforceAtStartup({ db, config, cacheDir: join(home, 'cache'), statePath, log: () => undefined });
    const first = await run();
    expect(first.retention?.evicted.length).toBeGreaterThan(0);
    const archive = first.retention?.archive as string;
    expect((await run()).retention).toBeNull();
    const restored = parseJson<{ restored: number }>(runCli(['--db', db, '--json', 'restore', archive], { env }));
    expect(restored.restored).toBeGreaterThan(0);
    const third = await run();
    expect(third.retention?.evicted.length).toBe(first.retention?.evicted.length);
  });
});
