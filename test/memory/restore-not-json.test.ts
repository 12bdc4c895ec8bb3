/**
 * Restoring a session whose large values are text that is not JSON (archived as JSON strings,
 * every quote, backslash and control character escaped): a 300 MB part and a 64 MB event, as
 * whole processes under a 300 MB cap on their memory (RLIMIT_DATA, see
 * test/helpers/memory-limit.ts) and a 64 MB V8 heap. Each value is unescaped chunk by chunk into
 * a spill file and written into SQLite from there; the rows come back byte for byte (by the
 * sqlite3 CLI's own reading) and stay TEXT, and the spill files are gone with the run.
 */
import Database from 'better-sqlite3';
import { execSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { OPENCODE_SCHEMA_DDL } from '../../src/store/sqlite/schema.js';
import { CLI, emptyOpenCodeDb, tempDir } from '../helpers/env.js';
import { memoryEnforcement, runUnderMemoryLimit, type MemoryLimitedRun } from '../helpers/memory-limit.js';

const MB = 1024 * 1024;
const RSS_LIMIT = 300 * MB;
const HEAP_MB = 64;
/** 32 bytes with what a JSON string must escape (quote, backslash, newline, a control byte) and 2- and 3-byte UTF-8. */
const BLOCK = 'say "hi" \\ back\nslash\u0001 é € ok';
const PART_BYTES = 300 * MB;
const EVENT_BYTES = 64 * MB;
const dir = tempDir('sk-restore-not-json-');
const env = { ...process.env, XDG_CACHE_HOME: join(dir, 'xdg-cache'), XDG_DATA_HOME: join(dir, 'data'), XDG_CONFIG_HOME: join(dir, 'config'), TMPDIR: dir };
const source = join(dir, 'source', 'opencode.db');
const archive = join(dir, 'not-json.json');

/** sha256 and type of a row's data as the sqlite3 CLI reads it. */
function sqliteValue(db: string, table: string, id: string): { sha256: string; type: string; bytes: number } {
  const sql = (query: string): string => execSync(`sqlite3 ${JSON.stringify(db)} "${query}"`, { encoding: 'utf8' });
  const sha256 = execSync(`sqlite3 ${JSON.stringify(db)} "SELECT data FROM ${table} WHERE id = '${id}'" | sha256sum`, { encoding: 'utf8' }).split(' ')[0] as string;
  const [type, bytes] = sql(`SELECT typeof(data), length(CAST(data AS BLOB)) FROM ${table} WHERE id = '${id}'`).trim().split('|');
  return { sha256, type: type as string, bytes: Number(bytes) };
}

function cli(db: string, args: string[]): MemoryLimitedRun {
  return runUnderMemoryLimit(process.execPath, [CLI, '--db', db, '--cache-dir', join(dir, 'cache'), '--json', ...args], { rssBytes: RSS_LIMIT, heapMB: HEAP_MB, env });
}

function withinLimit(db: string, args: string[]): MemoryLimitedRun {
  const run = cli(db, args);
  const peak = run.peakRssBytes === null ? '?' : Math.round(run.peakRssBytes / MB);
  expect(run.withinLimit, `status ${run.status}, signal ${run.signal}, peak ${peak} MB: ${run.stderr.trim().split('\n').slice(-3).join(' | ')}`).toBe(true);
  console.log(`${args[0]}: ${peak} MB peak RSS`);
  return run;
}

beforeAll(() => {
  mkdirSync(join(dir, 'source'), { recursive: true });
  const db = new Database(source);
  db.pragma('journal_mode = WAL');
  db.exec(OPENCODE_SCHEMA_DDL);
  db.prepare("INSERT INTO project (id, worktree, time_created, time_updated) VALUES ('global', '/', 1, 1)").run();
  db.prepare("INSERT INTO session (id, project_id, slug, directory, title, version, time_created, time_updated) VALUES ('ses_text', 'global', 's', '/work', 'not JSON', '1.18.33', 1, 3)").run();
  db.prepare("INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES ('msg_text', 'ses_text', 2, 2, '{\"role\":\"user\",\"time\":{\"created\":2}}')").run();
  // SQLite assembles each value (a run of BLOCK) itself: no JS string of it in this process either.
  const repeated = (bytes: number): [number, string] => [bytes / Buffer.byteLength(BLOCK), BLOCK];
  db.prepare("INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES ('prt_text', 'msg_text', 'ses_text', 3, 3, replace(hex(zeroblob(?)), '00', ?))").run(...repeated(PART_BYTES));
  db.prepare("INSERT INTO event_sequence (aggregate_id, seq) VALUES ('ses_text', 1)").run();
  db.prepare("INSERT INTO event (id, aggregate_id, seq, type, data) VALUES ('evt_text', 'ses_text', 1, 'session.note', replace(hex(zeroblob(?)), '00', ?))").run(...repeated(EVENT_BYTES));
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
}, 300_000);

describe.runIf(process.platform === 'linux')('restoring 300 MB of text that is not JSON, under 300 MB and a 64 MB heap', () => {
  it('can cap a whole process here', () => {
    expect(memoryEnforcement().enforcement, memoryEnforcement().detail).toBe('rlimit-data');
  });

  it('archive: both values kept as JSON strings', () => {
    withinLimit(source, ['archive', '--output', archive]);
    // Escaping makes the archive larger than the values: they are strings in it, not raw.
    expect(statSync(archive).size).toBeGreaterThan(PART_BYTES + EVENT_BYTES);
  }, 300_000);

  it('restore: each row back byte for byte, still TEXT, the spill files gone', () => {
    mkdirSync(join(dir, 'restored'), { recursive: true });
    const target = join(dir, 'restored', 'opencode.db');
    emptyOpenCodeDb(target).close();
    withinLimit(target, ['restore', archive]);
    expect(sqliteValue(target, 'part', 'prt_text')).toEqual({ ...sqliteValue(source, 'part', 'prt_text'), type: 'text', bytes: PART_BYTES });
    expect(sqliteValue(target, 'event', 'evt_text')).toEqual({ ...sqliteValue(source, 'event', 'evt_text'), type: 'text', bytes: EVENT_BYTES });
    expect(execSync(`sqlite3 ${JSON.stringify(target)} "PRAGMA integrity_check"`, { encoding: 'utf8' }).trim()).toBe('ok');
    expect(readdirSync(dir).filter((name) => name.startsWith('session-keeper-restore-'))).toEqual([]);
    rmSync(target, { force: true });
  }, 300_000);
});
