/**
 * Opening OpenCode's database: refuse what is not ours with one clear line, set OpenCode's
 * pragmas, load our extensions when they are built (the value-length limit raised, values read in
 * chunks), and detect the schema.
 */
import Database from 'better-sqlite3';
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { SkError } from '../../core/errors.js';
import { V8_STRING_LIMIT } from '../../core/page-rules.js';
import { nativeLibrary } from '../package-files.js';
import { mapSqliteError } from './errors.js';
import { OPENCODE_SCHEMA_DDL, V1_TABLES } from './schema.js';
import { sessionTables, type SessionTables } from './session-tables.js';
import { loadValueChunks, type ChunkedReadPath } from './value-chunks.js';

export { mapSqliteError };

export type Connection = Database.Database;

export { V8_STRING_LIMIT };
/** SQLite's compile-time SQLITE_MAX_LENGTH: no connection can read past it. */
export const SQLITE_MAX_LENGTH = 1_000_000_000;

export interface OpenOptions {
  readonly?: boolean;
  /** Create the file (with OpenCode's schema applied by the caller) when it is missing. */
  create?: boolean;
  busyTimeoutMs?: number;
  /** SQLite's page cache in KiB (default 64 MB); a reader that streams every row once needs little. */
  cacheKb?: number;
  /**
   * Map up to this many bytes of the file (SQLite's mmap_size): a short read of scattered rows
   * (a page of sessions and their sizes) takes page faults, not one read call per page; its pages
   * then count in RSS, so only bounded reads ask.
   */
  mapBytes?: number;
}

/**
 * Which of OpenCode's storage layouts a file holds: `1.x` (message/part), `1.18` (message/part and,
 * for sessions made through the newer API, session_message/session_input/session_context_epoch),
 * `2.x` (new sessions in session_v2, every conversation in session_message).
 */
export type StorageLayout = '1.x' | '1.18' | '2.x';

export interface SchemaInfo {
  /** '1.x' when OpenCode's session/message/part tables are present. */
  version: '1.x';
  layout: StorageLayout;
  tables: Set<string>;
  sessionColumns: Set<string>;
  /** OpenCode 2.x tables found beside the 1.x ones (not read). */
  unsupportedTables: string[];
  /** The tables holding rows of a session, from the file's own foreign keys. */
  sessionTables: SessionTables;
}

/** One open connection to OpenCode's file, with what was learnt opening it. */
export interface SqliteConnection {
  db: Connection;
  path: string;
  schema: SchemaInfo;
  /** Largest value this connection can read. */
  readableLimit: number;
  /** How large values are read: in chunks through sk_chunks, or whole (no extension built, or turned off). */
  valueReads: ChunkedReadPath;
}

const extensionPath = nativeLibrary('limit_length');

const DEFAULT_BUSY_TIMEOUT_MS = 5000;

/** Checks the 100-byte header: magic, page size, and that the file holds every page it claims. */
function checkHeader(path: string): void {
  let size: number;
  try {
    const stat = statSync(path);
    if (stat.isDirectory()) throw new SkError('usage', `${path} is a directory, not a database file`);
    size = stat.size;
  } catch (error) {
    if (error instanceof SkError) throw error;
    throw new SkError('not-found', `no database at ${path} (set --db or OPENCODE_DB)`);
  }
  if (size === 0) throw new SkError('not-sqlite', `${path} is empty (0 bytes), not an OpenCode database`);
  const header = Buffer.alloc(100);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, header, 0, 100, 0);
  } finally {
    closeSync(fd);
  }
  if (size < 100 || header.toString('latin1', 0, 16) !== 'SQLite format 3\u0000') {
    throw new SkError('not-sqlite', `${path} is not a SQLite database`);
  }
  const rawPageSize = header.readUInt16BE(16);
  const pageSize = rawPageSize === 1 ? 65536 : rawPageSize;
  const pageCount = header.readUInt32BE(28);
  const countIsValid = header.readUInt32BE(24) === header.readUInt32BE(92) && pageCount > 0;
  if (countIsValid && size < pageSize * pageCount) {
    throw new SkError('truncated', `${path} is truncated: its header says ${pageSize * pageCount} bytes, the file has ${size}`);
  }
}

function probeReadableLimit(db: Connection): number {
  for (const candidate of [SQLITE_MAX_LENGTH, V8_STRING_LIMIT]) {
    try {
      db.prepare('SELECT length(zeroblob(?))').pluck().get(candidate);
      return candidate;
    } catch {
      // limit below the candidate
    }
  }
  return V8_STRING_LIMIT;
}

export function detectSchema(db: Connection, path: string): SchemaInfo {
  const tables = new Set(
    db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all() as string[],
  );
  const missing = V1_TABLES.filter((t) => !tables.has(t));
  if (missing.length > 0) {
    if (tables.has('session_v2')) {
      throw new SkError(
        'unsupported-schema',
        `${path} is an OpenCode 2.x database (session_v2/session_message); session-keeper reads OpenCode 1.x (session/message/part) only`,
      );
    }
    throw new SkError('foreign-schema', `${path} is not an OpenCode database (no ${missing.join('/')} table)`);
  }
  const sessionColumns = new Set(
    (db.prepare("SELECT name FROM pragma_table_info('session')").pluck().all() as string[]),
  );
  for (const column of ['id', 'parent_id', 'title', 'time_created', 'time_updated']) {
    if (!sessionColumns.has(column)) {
      throw new SkError('foreign-schema', `${path} has a session table without ${column}: not an OpenCode 1.x database`);
    }
  }
  return {
    version: '1.x',
    layout: tables.has('session_v2') ? '2.x' : tables.has('session_message') ? '1.18' : '1.x',
    tables,
    sessionColumns,
    unsupportedTables: ['session_v2'].filter((t) => tables.has(t)),
    sessionTables: sessionTables(db, tables),
  };
}

/** Opens OpenCode's database with its own pragmas; every failure is a one-line SkError. */
export function openConnection(path: string, options: OpenOptions = {}): SqliteConnection {
  const readonly = options.readonly ?? true;
  if (!options.create || existsSync(path)) checkHeader(path);
  let db: Connection | undefined;
  try {
    db = new Database(path, {
      readonly,
      fileMustExist: !options.create,
      timeout: options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS,
    });
    // SESSION_KEEPER_NO_LENGTH_EXTENSION=1 runs as a stock build would (for tests and diagnosis).
    if (existsSync(extensionPath) && process.env['SESSION_KEEPER_NO_LENGTH_EXTENSION'] !== '1') {
      try {
        db.loadExtension(extensionPath); // entry point sqlite3_limitlength_init, derived from the file name
      } catch {
        // without it, values over V8's string limit are listed by size but unreadable
      }
    }
    // Without it (no compiler at install, SESSION_KEEPER_NO_CHUNK_EXTENSION=1) values are read whole.
    const valueReads: ChunkedReadPath = loadValueChunks(db) ? 'chunked' : 'whole';
    if (!readonly) {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
    }
    db.pragma(`cache_size = -${Math.max(500, Math.round(options.cacheKb ?? 64_000))}`);
    if (options.mapBytes) db.pragma(`mmap_size = ${Math.max(0, Math.round(options.mapBytes))}`);
    // Cascades run only on connections that ask for them; better-sqlite3 defaults to on, say it anyway.
    db.pragma('foreign_keys = ON');
    if (options.create && !readonly) {
      const empty = db.prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table'").pluck().get() === 0;
      if (empty) db.exec(OPENCODE_SCHEMA_DDL);
    }
    const schema = detectSchema(db, path);
    return { db, path, schema, readableLimit: probeReadableLimit(db), valueReads };
  } catch (error) {
    db?.close();
    throw mapSqliteError(error, path);
  }
}

/** The file and its WAL, as the disk holds them. */
export function fileBytes(path: string): number {
  const size = (p: string): number => {
    try {
      return statSync(p).size;
    } catch {
      return 0;
    }
  };
  return size(path) + size(`${path}-wal`);
}
