/**
 * `trim` end to end on generated OpenCode 1.18 databases in both layouts (message/part and
 * session_message/session_input): each mode's dry run changes nothing and names exactly the rows
 * independent SQL finds; apply archives first (0600, verified), trims only those rows, keeps the
 * attachments' originals in the cache; `restore` of the archive puts every byte back.
 */
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { MB } from '../../src/core/bytes.js';
import { COMPACTED_OUTPUT, PLACEHOLDER_PREFIX, type TrimOutcome, type TrimPlan } from '../../src/core/trim.js';
import { generateFixture } from '../fixtures/generate.js';
import { CLI, parseJson, runCli, tempDir } from '../helpers/env.js';

const dir = tempDir('sk-trim-');
const base = join(dir, 'base', 'opencode.db');
const NOW = Date.UTC(2026, 10, 1);
const DAY = 86_400_000;
let copies = 0;

beforeAll(() => {
  mkdirSync(join(dir, 'base'), { recursive: true });
  generateFixture({ path: base, targetBytes: 8 * MB, seed: 5, schema: '1.18', newerLayoutShare: 0.4, now: NOW, diffFiles: false });
  // OpenCode marks old tool outputs compacted (state.time.compacted) when it prunes: every other completed tool part here.
  const conn = new Database(base);
  conn.exec(`UPDATE part SET data = json_set(data, '$.state.time.compacted', time_updated)
             WHERE data ->> '$.type' = 'tool' AND data ->> '$.state.status' = 'completed' AND rowid % 2 = 0`);
  conn.close();
});

function fresh(): { db: string; env: Record<string, string>; cache: string; archiveDir: string } {
  const home = join(dir, `run-${copies++}`);
  mkdirSync(home, { recursive: true });
  const db = join(home, 'opencode.db');
  copyFileSync(base, db);
  const env = { XDG_DATA_HOME: join(home, 'data'), XDG_CONFIG_HOME: join(home, 'config'), XDG_CACHE_HOME: join(home, 'cache') };
  return { db, env, cache: join(home, 'cache', 'session-keeper', 'attachments'), archiveDir: join(home, 'data', 'opencode', 'archive') };
}

const TABLES: Record<string, string> = {
  session: 'SELECT * FROM session ORDER BY id',
  message: 'SELECT id, session_id, time_created, time_updated, data, typeof(data) FROM message ORDER BY id',
  part: 'SELECT id, message_id, session_id, time_created, time_updated, data, typeof(data) FROM part ORDER BY id',
  session_message: 'SELECT *, typeof(data) FROM session_message ORDER BY id',
  session_input: 'SELECT *, typeof(prompt) FROM session_input ORDER BY id',
  session_context_epoch: 'SELECT * FROM session_context_epoch ORDER BY session_id',
  event: 'SELECT id, aggregate_id, seq, type, data, typeof(data) FROM event ORDER BY id',
  event_sequence: 'SELECT * FROM event_sequence ORDER BY aggregate_id',
  todo: 'SELECT * FROM todo ORDER BY session_id, position',
};

/** One digest per table of every row's bytes: equal digests mean byte-equal tables. */
function snapshot(db: string): Record<string, string> {
  const conn = new Database(db, { readonly: true });
  const out: Record<string, string> = {};
  for (const [name, sql] of Object.entries(TABLES)) {
    const hash = createHash('sha256');
    for (const row of conn.prepare(sql).raw().iterate() as IterableIterator<unknown[]>) hash.update(JSON.stringify(row));
    out[name] = hash.digest('hex');
  }
  conn.close();
  return out;
}

function query<T>(db: string, sql: string, ...args: unknown[]): T[] {
  const conn = new Database(db, { readonly: true });
  try {
    return conn.prepare(sql).all(...args) as T[];
  } finally {
    conn.close();
  }
}

const count = (db: string, sql: string, ...args: unknown[]): number => Object.values(query<Record<string, number>>(db, sql, ...args)[0] ?? {})[0] ?? 0;

/** Applies one trim through the CLI, checks the archive, restores it and compares every byte. */
function applyAndRestore(args: string[], check: (db: string, outcome: TrimOutcome) => void): TrimOutcome {
  const { db, env } = fresh();
  const before = snapshot(db);
  const plan = parseJson<TrimPlan>(runCli(['--db', db, '--json', 'trim', ...args], { env }));
  expect(snapshot(db)).toEqual(before);
  expect(plan.targets.length).toBeGreaterThan(0);
  const refused = runCli(['--db', db, 'trim', ...args, '--apply'], { env });
  expect(refused.status).toBe(2);
  expect(refused.stderr).toMatch(/--yes/);
  expect(snapshot(db)).toEqual(before);
  const outcome = parseJson<TrimOutcome>(runCli(['--db', db, '--json', 'trim', ...args, '--apply', '--yes'], { env }));
  expect(outcome.archive).not.toBeNull();
  const archive = outcome.archive as string;
  expect(statSync(archive).mode & 0o777).toBe(0o600);
  expect(Object.values(outcome.rows).reduce((n, r) => n + r, 0)).toBe(new Set(plan.targets.map((t) => `${t.table}:${t.id}`)).size);
  expect(outcome.changed).toBe(0);
  check(db, outcome);
  expect(snapshot(db)).not.toEqual(before);
  const restored = parseJson<{ restored: number; skipped: number; putBack: { id: string; rows: number }[] }>(runCli(['--db', db, '--json', 'restore', archive], { env }));
  expect(restored.restored).toBe(0);
  expect(restored.putBack.map((s) => s.id).sort()).toEqual([...plan.sessions].sort());
  expect(snapshot(db)).toEqual(before);
  // A second restore finds every row as archived: it puts nothing different back.
  parseJson(runCli(['--db', db, '--json', 'restore', archive], { env }));
  expect(snapshot(db)).toEqual(before);
  return outcome;
}

describe('trim --reasoning', () => {
  it('plans exactly the reasoning parts and the newer layout messages holding reasoning items', () => {
    const { db, env } = fresh();
    const plan = parseJson<TrimPlan>(runCli(['--db', db, '--json', 'trim', '--reasoning'], { env }));
    const parts = query<{ id: string }>(db, "SELECT id FROM part WHERE json_extract(data, '$.type') = 'reasoning'").map((r) => r.id);
    const messages = query<{ id: string }>(db, "SELECT DISTINCT m.id FROM session_message m, json_each(m.data, '$.content') c WHERE json_extract(c.value, '$.type') = 'reasoning'").map((r) => r.id);
    expect(parts.length).toBeGreaterThan(0);
    expect(messages.length).toBeGreaterThan(0);
    expect(plan.targets.filter((t) => t.table === 'part').map((t) => t.id).sort()).toEqual(parts.sort());
    expect(plan.targets.filter((t) => t.table === 'session_message').map((t) => t.id).sort()).toEqual(messages.sort());
  });

  it('removes them, archived first; restore puts every byte back', () => {
    const { db } = fresh();
    const otherParts = query<{ id: string; data: string }>(db, "SELECT id, data FROM part WHERE json_extract(data, '$.type') <> 'reasoning' ORDER BY id");
    applyAndRestore(['--reasoning'], (trimmed) => {
      expect(count(trimmed, "SELECT count(*) FROM part WHERE json_extract(data, '$.type') = 'reasoning'")).toBe(0);
      expect(count(trimmed, "SELECT count(*) FROM session_message m, json_each(m.data, '$.content') c WHERE json_extract(c.value, '$.type') = 'reasoning'")).toBe(0);
      // Everything else is as it was: other parts byte for byte, other content items in order.
      expect(query(trimmed, "SELECT id, data FROM part ORDER BY id")).toEqual(otherParts);
      expect(count(trimmed, "SELECT count(*) FROM session_message WHERE json_valid(data) = 0")).toBe(0);
    });
  });
});

describe('trim --compacted-outputs', () => {
  it('empties exactly the outputs and attachments OpenCode marked compacted; restore puts them back', () => {
    const { db } = fresh();
    const marked = query<{ id: string }>(db, "SELECT id FROM part WHERE json_extract(data, '$.state.time.compacted') IS NOT NULL AND (json_extract(data, '$.state.output') <> '' OR json_array_length(data, '$.state.attachments') > 0)").map((r) => r.id);
    const unmarked = query<{ id: string; data: string }>(db, "SELECT id, data FROM part WHERE json_extract(data, '$.state.time.compacted') IS NULL ORDER BY id");
    expect(marked.length).toBeGreaterThan(0);
    const outcome = applyAndRestore(['--compacted-outputs'], (trimmed) => {
      const rows = query<{ id: string; output: string; attachments: number | null; input: string | null }>(trimmed, `SELECT id, json_extract(data, '$.state.output') AS output, json_array_length(data, '$.state.attachments') AS attachments, json_extract(data, '$.state.input') AS input FROM part WHERE id IN (SELECT value FROM json_each(?))`, JSON.stringify(marked));
      expect(rows).toHaveLength(marked.length);
      for (const r of rows) {
        expect(r.output).toBe(COMPACTED_OUTPUT);
        expect(r.attachments).toBeNull();
        expect(r.input).not.toBeNull();
      }
      expect(query(trimmed, "SELECT id, data FROM part WHERE json_extract(data, '$.state.time.compacted') IS NULL ORDER BY id")).toEqual(unmarked);
    });
    expect(outcome.rows['part']).toBe(marked.length);
  });
});

describe('trim --attachments --older-than-days N', () => {
  it('replaces only older data: URLs by the placeholder, keeps the originals in the cache; restore puts them back', () => {
    const { db, env, cache } = fresh();
    const cutoff = NOW - 30 * DAY;
    const days = Math.ceil((Date.now() - cutoff) / DAY);
    const urls = (file: string, older: boolean, minBytes = 1024): { id: string; url: string }[] =>
      query<{ id: string; url: string }>(
        file,
        `SELECT r.id, j.value AS url FROM (SELECT id, data, time_created FROM part UNION ALL SELECT id, data, time_created FROM session_message UNION ALL SELECT id, prompt, time_created FROM session_input) r, json_tree(r.data) j
         WHERE j.key IN ('url', 'uri') AND j.type = 'text' AND substr(j.value, 1, 5) = 'data:' AND length(j.value) >= ? AND (r.time_created < ?) = ?`,
        minBytes,
        Date.now() - days * DAY,
        older ? 1 : 0,
      );
    const old = urls(db, true);
    const recent = urls(db, false);
    expect(old.length).toBeGreaterThan(0);
    expect(recent.length).toBeGreaterThan(0);
    const plan = parseJson<TrimPlan>(runCli(['--db', db, '--json', 'trim', '--attachments', '--older-than-days', String(days)], { env }));
    expect(plan.targets.reduce((n, t) => n + (t.urls?.length ?? 0), 0)).toBe(old.length);
    const before = snapshot(db);
    const outcome = parseJson<TrimOutcome>(runCli(['--db', db, '--json', 'trim', '--attachments', '--older-than-days', String(days), '--apply', '--yes'], { env }));
    expect(urls(db, true)).toEqual([]);
    const placeholders = urls(db, true, 0).filter((u) => u.url.startsWith(PLACEHOLDER_PREFIX));
    expect(placeholders.length).toBe(old.length);
    expect(urls(db, false)).toEqual(recent);
    // The placeholder says where the original went, in a text file OpenCode can show.
    const placeholder = (placeholders[0] as { url: string }).url;
    expect(Buffer.from(placeholder.slice(placeholder.indexOf(',') + 1), 'base64').toString('utf8')).toContain(String(outcome.archive).split('/').pop());
    const mimes = query<{ mime: string }>(db, "SELECT json_extract(data, '$.mime') AS mime FROM part WHERE json_extract(data, '$.url') LIKE 'data:text/plain;base64,%'");
    expect(mimes.length).toBeGreaterThan(0);
    for (const m of mimes) expect(m.mime).toBe('text/plain');
    // Each original is in the attachment cache, decoded: its sha256 equals the archived URL's payload.
    const cached = new Set<string>();
    const walk = (d: string): void => {
      for (const name of existsSync(d) ? readdirSync(d, { withFileTypes: true }) : []) {
        const p = join(d, name.name);
        if (name.isDirectory()) walk(p);
        else cached.add(createHash('sha256').update(readFileSync(p)).digest('hex'));
      }
    };
    walk(cache);
    // (A prompt in session_input carries the files of its message, cached under the message's id.)
    for (const { url } of old) {
      const decoded = Buffer.from(url.slice(url.indexOf(',') + 1), 'base64');
      expect(cached.has(createHash('sha256').update(decoded).digest('hex'))).toBe(true);
    }
    runCli(['--db', db, '--json', 'restore', String(outcome.archive)], { env });
    expect(snapshot(db)).toEqual(before);
  });
});

describe('the archive of a trim', () => {
  it('holds only the trimmed rows, and never makes a session that is gone', () => {
    const { db, env } = fresh();
    const outcome = parseJson<TrimOutcome>(runCli(['--db', db, '--json', 'trim', '--reasoning', '--apply', '--yes'], { env }));
    const archive = outcome.archive as string;
    const reasoningBytes = count(base, "SELECT sum(length(CAST(data AS BLOB))) FROM part WHERE json_extract(data, '$.type') = 'reasoning'");
    // gzip'd, and about what was trimmed (plus each session's header and its messages), far less than the file.
    expect(statSync(archive).size).toBeLessThan(statSync(base).size / 4);
    expect(statSync(archive).size).toBeGreaterThan(reasoningBytes / 20);
    const gone = outcome.sessions[0] as string;
    parseJson(runCli(['--db', db, '--json', 'delete', gone, '--no-archive', '--yes'], { env }));
    const restored = parseJson<{ restored: number; absent: string[] }>(runCli(['--db', db, '--json', 'restore', archive], { env }));
    expect(restored.restored).toBe(0);
    expect(restored.absent).toEqual([gone]);
    expect(count(db, 'SELECT count(*) FROM session WHERE id = ?', gone)).toBe(0);
  });
});

describe('trim killed with SIGKILL', () => {
  /** Runs `trim --reasoning --apply --yes`, killed after `delay` ms (null: never); whether it was killed. */
  function trimKilledAfter(db: string, env: Record<string, string>, delay: number | null): Promise<{ ms: number; killed: boolean }> {
    return new Promise((resolve, reject) => {
      const started = Date.now();
      const child = spawn(process.execPath, [CLI, '--db', db, '--json', 'trim', '--reasoning', '--compacted-outputs', '--attachments', '--apply', '--yes'], { env: { ...process.env, ...env }, stdio: 'ignore' });
      const timer = delay === null ? undefined : setTimeout(() => child.kill('SIGKILL'), delay);
      child.on('error', reject);
      child.on('exit', (_code, signal) => {
        clearTimeout(timer);
        resolve({ ms: Date.now() - started, killed: signal === 'SIGKILL' });
      });
    });
  }

  it('loses nothing: whatever was trimmed when the kill came, its archive puts back every byte', async () => {
    const probe = fresh();
    const full = await trimKilledAfter(probe.db, probe.env, null);
    expect(full.killed).toBe(false);
    let killed = 0;
    for (const share of [0.15, 0.3, 0.45, 0.6, 0.7, 0.8, 0.9, 0.95]) {
      const { db, env, archiveDir } = fresh();
      const before = snapshot(db);
      const run = await trimKilledAfter(db, env, Math.round(full.ms * share));
      if (run.killed) killed++;
      expect(count(db, 'SELECT count(*) FROM pragma_quick_check WHERE quick_check <> \'ok\''), `quick_check after a kill at ${share}`).toBe(0);
      const archives = existsSync(archiveDir) ? readdirSync(archiveDir).filter((n) => n.endsWith('.json.gz')) : [];
      if (archives.length === 0) {
        // Killed before the archive took its name: nothing was trimmed.
        expect(snapshot(db), `kill at ${share}`).toEqual(before);
        continue;
      }
      expect(archives).toHaveLength(1);
      parseJson(runCli(['--db', db, '--json', 'restore', join(archiveDir, archives[0] as string)], { env }));
      expect(snapshot(db), `restored after a kill at ${share}`).toEqual(before);
    }
    expect(killed).toBeGreaterThanOrEqual(5);
  }, 120_000);
});

describe('guards', () => {
  it('refuses an OpenCode 2.x file in one line, changing nothing', () => {
    const { db, env } = fresh();
    const conn = new Database(db);
    conn.exec('CREATE TABLE session_v2 (id text PRIMARY KEY, project_id text, time_created integer, time_updated integer)');
    conn.close();
    const before = snapshot(db);
    const run = runCli(['--db', db, 'trim', '--reasoning', '--apply', '--yes'], { env });
    expect(run.status).toBe(1);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toMatch(/2\.x/);
    expect(snapshot(db)).toEqual(before);
  });

  it('trim without a mode, or with a bad selector, is one usage line', () => {
    const { db, env } = fresh();
    for (const args of [['trim'], ['trim', '--reasoning', '--keep-latest', 'x']]) {
      const run = runCli(['--db', db, ...args], { env });
      expect(run.status).toBe(2);
      expect(run.stderr.trim().split('\n')).toHaveLength(1);
    }
  });

  it('selectors narrow what is trimmed: --keep-latest spares the newest sessions', () => {
    const { db, env } = fresh();
    const all = parseJson<TrimPlan>(runCli(['--db', db, '--json', 'trim', '--reasoning'], { env }));
    const some = parseJson<TrimPlan>(runCli(['--db', db, '--json', 'trim', '--reasoning', '--keep-latest', '3'], { env }));
    expect(some.targets.length).toBeLessThan(all.targets.length);
    for (const id of some.sessions) expect(all.sessions).toContain(id);
  });
});
