/**
 * Reading one stored value (`part.data`, `message.data`, `session_message.data`, `event.data`, ...)
 * in chunks (1 MiB by default), never whole: not in JS, and not inside SQLite either.
 *
 * Decision. better-sqlite3 has no incremental BLOB API: its maintainer called blob streaming
 * "feasible, but a significant/large feature" and closed it (WiseLibs/better-sqlite3#241,
 * wontfix: a connection refuses writes while a read is active, so a stream would need a
 * connection of its own); #600 asks again and is still open. Every value it returns is first
 * materialized by SQLite, then copied into a Buffer: two whole copies, the ~800 MB RSS seen for
 * a 300 MB PDF.
 * `substr()` re-reads the whole value on every call. `node:sqlite` (Node 22.5+, not our Node 20)
 * has no blob API either (nodejs/node#65445, open; it names a loadable extension as the way out).
 * Bindings that do stream (Python's `sqlite3.Blob`, Deno's `SQLBlob`, Microsoft.Data.Sqlite's
 * `SqliteBlob`, ncruces/go-sqlite3's `openblob()` callback) all wrap `sqlite3_blob_open`, and the
 * Go one scopes the handle to one SQL call, so it cannot outlive it. We do the same inside the
 * connection we already have: our small extension (native/value_chunks.c, built at install like
 * limit_length) adds `sk_chunks(table, column, rowid, chunk_bytes [, start [, stop]])`, an
 * eponymous table-valued function whose cursor owns ONE `sqlite3_blob` handle and yields one row
 * per chunk. Rejected: a per-chunk scalar like SQLite's own `readblob()` (ext/misc/blobio.c), which
 * opens a handle per call and walks the overflow-page chain from the start each time (quadratic,
 * like substr); a separate N-API addon with its own connection (a second SQLite build, no shared
 * read transaction, a native toolchain per platform for Electron); forking better-sqlite3.
 * The handle lives from the statement's first step to its reset, holding that statement's read
 * snapshot, so every chunk comes from one consistent version of the row. Without a compiler (or
 * with SESSION_KEEPER_NO_CHUNK_EXTENSION=1) the fallback reads the value whole as a BLOB, as
 * before, and hands it out in the same chunks; `chunkedReadPath` says which is in use.
 *
 * Rules for callers: no writes on the same connection while iterating (better-sqlite3 refuses
 * them anyway); break out of the loop (or let it end) to close the handle; a chunk is a fresh
 * Buffer each time, released when dropped.
 */
import type Database from 'better-sqlite3';
import { createHash, type Hash } from 'node:crypto';
import { existsSync, ftruncateSync, writeSync } from 'node:fs';
import {
  decodeAttachmentFromChunks,
  findAttachmentsInChunks,
  type AttachmentSink,
  type DecodedAttachment,
} from '../../core/attachment-stream.js';
import { SkError } from '../../core/errors.js';
import type { AttachmentSpan } from '../../core/part-scan.js';
import { nativeLibrary } from '../package-files.js';
import { mapSqliteError } from './errors.js';

/**
 * Chunk size when the caller gives none. Each chunk is a new Buffer, freed only when the garbage
 * collector runs; smaller chunks mean more small allocations per MB, hence more frequent young
 * collections and fewer spent chunks waiting. Measured (300 MB PDF, 64 MB heap): 1 MiB peaks at
 * ~80 MB RSS, 4 MiB at ~140 MB, 16 MiB at ~170 MB, at the same or lower speed.
 */
export const DEFAULT_CHUNK_BYTES = 1024 * 1024;
/** The extension's own upper bound for one chunk. */
export const MAX_CHUNK_BYTES = 256 * 1024 * 1024;
/** The `sk_chunks_version()` this module speaks to (native/value_chunks.c SK_CHUNKS_VERSION). */
const EXTENSION_VERSION = 5;

/** How values are read on a connection: through sk_chunks, or whole (the fallback). */
export type ChunkedReadPath = 'chunked' | 'whole';

/**
 * SQL for SQLite's json_valid verdict on `value`. Where the extension is loaded its sk_json_valid
 * answers first: it says only "yes" (strict JSON in strict UTF-8, never more than json_valid
 * accepts) in about three quarters of json_valid's time on OpenCode's parts, and json_valid judges
 * what it leaves.
 */
export function jsonValidSql(reads: ChunkedReadPath, value: string): string {
  return reads === 'chunked' ? `coalesce(sk_json_valid(${value}), json_valid(${value}))` : `json_valid(${value})`;
}

/** A row by rowid, or by the text `id` primary key OpenCode's tables have (looked up in the same statement). */
export type RowKey = number | bigint | { id: string };

export interface ValueChunksOptions {
  /** Bytes per chunk (the last may be shorter); default 1 MiB. */
  chunkBytes?: number;
  /** Byte range of the value to read: from `start` (default 0) to `stop` (default the end). */
  start?: number;
  stop?: number;
}

/** Where build-native.mjs puts the library. */
export const VALUE_CHUNKS_LIBRARY = nativeLibrary('value_chunks');

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
const available = new WeakMap<Database.Database, boolean>();

function probe(db: Database.Database): boolean {
  try {
    return db.prepare('SELECT sk_chunks_version()').pluck().get() === EXTENSION_VERSION;
  } catch {
    return false; // no such function: not loaded
  }
}

/**
 * Loads the sk_chunks extension onto `db` when it is built (once per connection). Returns whether
 * chunked reads are then available; false, never an error, when the library is missing, fails to
 * load, is of another version, or SESSION_KEEPER_NO_CHUNK_EXTENSION=1 asks for the fallback.
 */
export function loadValueChunks(db: Database.Database, library: string = VALUE_CHUNKS_LIBRARY): boolean {
  if (chunkedReadsAvailable(db)) return true;
  if (process.env['SESSION_KEEPER_NO_CHUNK_EXTENSION'] === '1' || !existsSync(library)) return false;
  try {
    db.loadExtension(library); // entry point sqlite3_valuechunks_init, derived from the file name
  } catch {
    return false;
  }
  const ok = probe(db);
  available.set(db, ok);
  return ok;
}

/** Whether `db` reads values in chunks (sk_chunks loaded) rather than whole. */
export function chunkedReadsAvailable(db: Database.Database): boolean {
  let ok = available.get(db);
  if (ok === undefined) {
    ok = probe(db);
    available.set(db, ok);
  }
  return ok;
}

const fileText = new WeakMap<Database.Database, boolean>();

/** Whether `db` has sk_file_text (the extension's write side: a TEXT value read from a file by SQLite). */
export function fileTextAvailable(db: Database.Database): boolean {
  let ok = fileText.get(db);
  if (ok === undefined) {
    ok = false;
    try {
      ok = chunkedReadsAvailable(db) && db.prepare('SELECT sk_file_text(?, 0, 0)') !== undefined; // preparing checks the function exists
    } catch {
      // no such function (a build without it)
    }
    fileText.set(db, ok);
  }
  return ok;
}

/** For `stats`: which read path this connection uses. */
export function chunkedReadPath(db: Database.Database): ChunkedReadPath {
  return chunkedReadsAvailable(db) ? 'chunked' : 'whole';
}

/**
 * How a large value waiting in a spill file goes into a table: 'lazy' writes a TEXT value of
 * zeros SQLite never allocates and fills it from the file through one blob handle (sk_text_zeros
 * + sk_blob_write_file, memory of a chunk); 'file' has SQLite read the file into the value
 * (sk_file_text, the value twice in SQLite's memory); 'whole' binds the value as a Buffer.
 */
export type LargeValueWrite = 'lazy' | 'file' | 'whole';
const largeWrites = new WeakMap<Database.Database, Map<string, LargeValueWrite>>();

/** The write path for large values of `table` on `db` (probed once per connection and table). */
export function largeValueWrites(db: Database.Database, table: string): LargeValueWrite {
  let known = largeWrites.get(db);
  if (!known) largeWrites.set(db, (known = new Map()));
  let path = known.get(table);
  if (path === undefined) {
    path = !fileTextAvailable(db) ? 'whole' : lazyTextAvailable(db, table) ? 'lazy' : 'file';
    known.set(table, path);
  }
  return path;
}

/** Zeros then filled in place: only in a UTF-8 file, and never under a trigger (it would see the zeros). */
function lazyTextAvailable(db: Database.Database, table: string): boolean {
  try {
    if (db.pragma('encoding', { simple: true }) !== 'UTF-8') return false;
    if (db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?").get(table) !== undefined) return false;
    // sk_text_zeros refuses (an error) wherever SQLite is not the build it knows.
    return db.prepare('SELECT typeof(sk_text_zeros(4))').pluck().get() === 'text';
  } catch {
    return false;
  }
}

const WRITE_RANK: Record<LargeValueWrite, number> = { whole: 0, file: 1, lazy: 2 };

/** For `stats`: the write path restores and imports take for large messages and parts (the plainer of the two when they differ). */
export function largeValueWritePath(db: Database.Database): LargeValueWrite {
  const part = largeValueWrites(db, 'part');
  const message = largeValueWrites(db, 'message');
  return WRITE_RANK[part] <= WRITE_RANK[message] ? part : message;
}

function describeRow(table: string, row: RowKey): string {
  return typeof row === 'object' ? `${table} ${row.id}` : `${table} row ${row}`;
}

function checkArguments(table: string, column: string, options: ValueChunksOptions): Required<Pick<ValueChunksOptions, 'chunkBytes'>> {
  if (!IDENTIFIER.test(table) || !IDENTIFIER.test(column)) {
    throw new SkError('usage', `not a table and column name: ${JSON.stringify(`${table}.${column}`).slice(0, 120)}`);
  }
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 1 || chunkBytes > MAX_CHUNK_BYTES) {
    throw new SkError('usage', `chunk size must be an integer from 1 to ${MAX_CHUNK_BYTES}: ${chunkBytes}`);
  }
  for (const [name, value] of [['start', options.start], ['stop', options.stop]] as const) {
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) {
      throw new SkError('usage', `${name} must be a non-negative integer: ${value}`);
    }
  }
  return { chunkBytes };
}

/** SQLite's errors while reading one value, as one-line SkErrors naming the row. */
function readError(error: unknown, db: Database.Database, table: string, column: string, row: RowKey): SkError {
  if (error instanceof SkError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown }).code;
  if (/no such row/.test(message)) return new SkError('not-found', `no ${describeRow(table, row)} in ${db.name}`);
  if (/cannot open value of type (\w+)/.test(message)) {
    return new SkError('internal', `${table}.${column} of ${describeRow(table, row)} is ${/type (\w+)/.exec(message)?.[1] ?? 'not text'}, not text or a blob`);
  }
  if (code === 'SQLITE_ABORT') {
    return new SkError('locked', `${describeRow(table, row)} changed while it was being read; read it again`);
  }
  return mapSqliteError(error, db.name);
}

/**
 * The value `table.column` of one row, as Buffers of at most `chunkBytes` (raw bytes: a TEXT
 * value's UTF-8, exactly what CAST(x AS BLOB) gives). Chunked through sk_chunks when the
 * extension is loaded on `db`, else read whole and cut (today's behaviour, memory of one value).
 * Arguments are checked at once; the value is read as the iterator is consumed.
 */
export function valueChunks(
  db: Database.Database,
  table: string,
  column: string,
  row: RowKey,
  options: ValueChunksOptions = {},
): IterableIterator<Buffer> {
  const { chunkBytes } = checkArguments(table, column, options);
  return chunkedReadsAvailable(db) && isRowidTable(db, table)
    ? chunkedRows(db, table, column, row, chunkBytes, options)
    : wholeValue(db, table, column, row, chunkBytes, options);
}

/**
 * sqlite3_blob_open reads rowid tables only. OpenCode's are (text primary keys, no WITHOUT
 * ROWID); anything else (a WITHOUT ROWID table, a view) takes the whole-value path rather than
 * failing. Asked each time (microseconds), so a changed schema is never missed.
 */
function isRowidTable(db: Database.Database, table: string): boolean {
  const info = db.prepare("SELECT type, wr FROM pragma_table_list WHERE schema = 'main' AND name = ?").get(table) as
    | { type: string; wr: number }
    | undefined;
  return info?.type === 'table' && info.wr === 0;
}

function* chunkedRows(
  db: Database.Database,
  table: string,
  column: string,
  row: RowKey,
  chunkBytes: number,
  options: ValueChunksOptions,
): Generator<Buffer, void, undefined> {
  // By id, the rowid comes from a subquery of the same statement: one snapshot for lookup and read.
  const rowid = typeof row === 'object' ? `(SELECT rowid FROM "${table}" WHERE id = ?)` : '?';
  const statement = db.prepare(`SELECT data FROM sk_chunks(?, ?, ${rowid}, ?, ?, ?)`).pluck();
  const rows = statement.iterate(table, column, typeof row === 'object' ? row.id : row, chunkBytes, options.start ?? null, options.stop ?? null);
  try {
    for (const chunk of rows as IterableIterator<unknown>) {
      if (!Buffer.isBuffer(chunk)) throw new SkError('internal', `sk_chunks returned ${typeof chunk} for ${describeRow(table, row)}`);
      yield chunk;
    }
  } catch (error) {
    throw readError(error, db, table, column, row);
  }
}

function* wholeValue(
  db: Database.Database,
  table: string,
  column: string,
  row: RowKey,
  chunkBytes: number,
  options: ValueChunksOptions,
): Generator<Buffer, void, undefined> {
  const where = typeof row === 'object' ? 'id = ?' : 'rowid = ?';
  let found: { type: string; data: unknown } | undefined;
  try {
    found = db
      .prepare(`SELECT typeof("${column}") AS type, CAST("${column}" AS BLOB) AS data FROM "${table}" WHERE ${where}`)
      .get(typeof row === 'object' ? row.id : row) as { type: string; data: unknown } | undefined;
  } catch (error) {
    throw readError(error, db, table, column, row);
  }
  if (!found) throw new SkError('not-found', `no ${describeRow(table, row)} in ${db.name}`);
  if (found.type !== 'text' && found.type !== 'blob') {
    throw new SkError('internal', `${table}.${column} of ${describeRow(table, row)} is ${found.type}, not text or a blob`);
  }
  // CAST of an empty string gives an empty Buffer or null depending on the build: both are no bytes.
  const value = Buffer.isBuffer(found.data) ? found.data : Buffer.alloc(0);
  const stop = Math.min(options.stop ?? value.length, value.length);
  for (let at = Math.min(options.start ?? 0, stop); at < stop; at += chunkBytes) {
    yield value.subarray(at, Math.min(stop, at + chunkBytes));
  }
}

/** sha256 and length of a stored value, read in chunks (for verifying copies and comparing event snapshots). */
export function valueSha256(
  db: Database.Database,
  table: string,
  column: string,
  row: RowKey,
  options: ValueChunksOptions = {},
): { sha256: string; bytes: number } {
  const hash = createHash('sha256');
  let bytes = 0;
  for (const chunk of valueChunks(db, table, column, row, options)) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

/** The data URLs of a stored value, found chunk by chunk (same spans as findAttachments on the whole value). */
export function findStoredAttachments(
  db: Database.Database,
  table: string,
  column: string,
  row: RowKey,
  partId: string,
  options: Pick<ValueChunksOptions, 'chunkBytes'> = {},
): AttachmentSpan[] {
  return findAttachmentsInChunks(valueChunks(db, table, column, row, options), partId);
}

/**
 * Decodes attachment `index` of a stored value into `sink`, reading the value in chunks and
 * stopping once the attachment is done. Errors are SkErrors: 'not-found' (no row, too few
 * attachments), 'bad-attachment'/'too-big' (a payload the attachment cache would refuse),
 * 'bad-part' (malformed JSON before it), 'locked' (the row changed while being read).
 */
export function decodeStoredAttachment(
  db: Database.Database,
  table: string,
  column: string,
  row: RowKey,
  request: { partId: string; index: number; sink: AttachmentSink },
  options: Pick<ValueChunksOptions, 'chunkBytes'> = {},
): DecodedAttachment {
  return decodeAttachmentFromChunks(valueChunks(db, table, column, row, options), request.partId, {
    index: request.index,
    sink: request.sink,
    label: `part ${request.partId} attachment ${request.index}`,
  });
}

/** An AttachmentSink writing to an open file descriptor from `position`, hashing what it keeps. */
export interface FdSink extends AttachmentSink {
  /** Bytes kept so far. */
  readonly bytes: number;
  /** sha256 of the bytes kept (call once, at the end). */
  sha256(): string;
}

export function fdSink(fd: number, position = 0): FdSink {
  let hash: Hash = createHash('sha256');
  let at = position;
  return {
    get bytes(): number {
      return at - position;
    },
    write(bytes: Buffer): void {
      hash.update(bytes);
      let written = 0;
      while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written, at + written);
      at += bytes.length;
    },
    discard(): void {
      ftruncateSync(fd, position);
      at = position;
      hash = createHash('sha256');
    },
    sha256(): string {
      return hash.digest('hex');
    },
  };
}
