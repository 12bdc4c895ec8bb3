/** Shared test plumbing: temporary folders, the built CLI, small hand-made OpenCode databases. */
import Database from 'better-sqlite3';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';
import { OPENCODE_SCHEMA_DDL } from '../../src/store/sqlite/schema.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The CLI as installed: the bundle package.json's `bin` names (scripts/bundle-cli.mjs). */
export const CLI = join(ROOT, 'dist', 'bin', 'session-keeper.js');

/** The length-limit extension `npm run build` makes (absent without a C compiler). */
export const LENGTH_EXTENSION = join(ROOT, 'native', 'build', `limit_length.${process.platform === 'darwin' ? 'dylib' : process.platform === 'win32' ? 'dll' : 'so'}`);

/** Loads the length-limit extension into `db`; false when it is missing or does not raise the limit. */
export function loadLengthExtension(db: Database.Database): boolean {
  try {
    db.loadExtension(LENGTH_EXTENSION);
    db.prepare('SELECT length(zeroblob(?))').pluck().get(600_000_000);
    return true;
  } catch {
    return false;
  }
}

/** A temporary folder removed after the file's tests. */
export function tempDir(prefix = 'sk-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface CliRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI as a user would, with a private cache folder. */
export function runCli(args: string[], options: { env?: Record<string, string>; nodeArgs?: string[]; cacheDir?: string } = {}): CliRun {
  const result: SpawnSyncReturns<string> = spawnSync(
    process.execPath,
    [...(options.nodeArgs ?? []), CLI, ...(options.cacheDir ? ['--cache-dir', options.cacheDir] : []), ...args],
    { encoding: 'utf8', env: { ...process.env, ...options.env }, maxBuffer: 256 * 1024 * 1024 },
  );
  return { status: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
}

export function parseJson<T = unknown>(run: CliRun): T {
  if (run.status !== 0) throw new Error(`CLI failed (${run.status}): ${run.stderr}`);
  return JSON.parse(run.stdout) as T;
}

/** An empty database in OpenCode's schema with one project, for hand-built cases. */
export function emptyOpenCodeDb(path: string): Database.Database {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec(OPENCODE_SCHEMA_DDL);
  db.prepare("INSERT INTO project (id, worktree, time_created, time_updated) VALUES ('global', '/', 1, 1)").run();
  return db;
}

export function insertSession(db: Database.Database, id: string, created: number, updated: number, parent: string | null = null): void {
  db.prepare(
    `INSERT INTO session (id, project_id, parent_id, slug, directory, title, version, time_created, time_updated)
     VALUES (?, 'global', ?, 'slug', '/work', ?, '1.1.0', ?, ?)`,
  ).run(id, parent, `title of ${id}`, created, updated);
}

export function insertMessage(db: Database.Database, id: string, sessionId: string, created: number, data: object = { role: 'user', time: { created } }): void {
  db.prepare('INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?, ?, ?, ?, ?)').run(
    id, sessionId, created, created, JSON.stringify(data),
  );
}

/** Inserts a part whose data is given as raw JSON text, so tests can write hostile shapes. */
export function insertRawPart(db: Database.Database, id: string, messageId: string, sessionId: string, created: number, rawJson: string): void {
  db.prepare('INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?, ?, ?, ?, ?, ?)').run(
    id, messageId, sessionId, created, created, rawJson,
  );
}

/**
 * A database holding one session `ses_wide` whose one message `msg_wide` has `parts` tool parts
 * of 50 KB output each, built inside SQLite.
 */
export function wideMessageDb(path: string, parts: number): void {
  const db = emptyOpenCodeDb(path);
  insertSession(db, 'ses_wide', 1, 2);
  insertMessage(db, 'msg_wide', 'ses_wide', 1, { role: 'assistant', time: { created: 1 } });
  db.prepare(
    `WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < ?)
     INSERT INTO part (id, message_id, session_id, time_created, time_updated, data)
     SELECT printf('prt_%06d', n), 'msg_wide', 'ses_wide', n, n, '{"type":"tool","tool":"bash","state":{"status":"completed","output":"' || hex(randomblob(25000)) || '"}}' FROM c`,
  ).run(parts);
  db.close();
}
