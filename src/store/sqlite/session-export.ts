/**
 * Sessions out of OpenCode's file as a stream of items (archive, offload, migrate): every row the
 * session owns (session-tables.ts), so that an archive holds exactly what a delete removes. Each
 * session is read inside one read transaction, so it is consistent however long the consumer
 * takes; rows come in keyset pages, their data as BLOBs, large values one at a time.
 */
import { SkError } from '../../core/errors.js';
import { BlobValue, ChunkedValue, type Payload, type PartRecord, type Row, type SessionItem, type TableCounts } from '../session-items.js';
import type { SqliteConnection } from './connection.js';
import { readDiffFile } from './diff-files.js';
import { messagesAfter, partsOfMessages, payloadOf, statement, type PayloadRow } from './rows.js';
import type { TrimmedRows } from '../../core/trim.js';
import { valueChunks } from './value-chunks.js';
import type { SessionTable } from './session-tables.js';

const PAGE_ROWS = 200;
const INLINE_FETCH_BYTES = 256 * 1024;
const INLINE_TOTAL_BYTES = 8 * 1024 * 1024;
/** A `rows` item carries at most this many rows or bytes. */
const ROWS_PER_ITEM = 500;
const BYTES_PER_ITEM = 8 * 1024 * 1024;
/** A value at least this big is handed on in chunks when the connection reads in chunks. */
export const CHUNKED_VALUE_BYTES = 8 * 1024 * 1024;

/**
 * A row's data: inline when it came so, in chunks through sk_chunks when it is large (read in
 * the session's read transaction, so every pass sees the same bytes), else fetched whole.
 */
function exportedPayload(conn: SqliteConnection, table: 'message' | 'part', row: PayloadRow): Payload {
  if (row.data || row.bytes < CHUNKED_VALUE_BYTES || conn.valueReads !== 'chunked') return payloadOf(conn, table, row, 'archive');
  return new ChunkedValue(row.bytes, () => valueChunks(conn.db, table, 'data', row.rowid));
}

/** Marks the column of a select that says whether a value is a BLOB. */
const BLOB_FLAG = ':session-keeper-blob';

/** Marks the column of a select that holds a large TEXT value's length (the value itself left out). */
const LARGE_FLAG = ':session-keeper-large';

/**
 * Every column of `table`, TEXT read as BLOB (its exact bytes, a Buffer off the V8 heap) and a
 * flag telling real BLOBs apart, so a restore puts back each value with its own type. With
 * `chunked`, a TEXT `data` value of CHUNKED_VALUE_BYTES or more is left out and its length given instead.
 */
function typedColumns(conn: SqliteConnection, table: string, chunked: boolean): { select: string; columns: string[] } {
  const columns = conn.db.prepare('SELECT name FROM pragma_table_info(?) ORDER BY cid').pluck().all(table) as string[];
  const quoted = (c: string): string => `"${c.replaceAll('"', '""')}"`;
  const large = (c: string): string => `typeof(${quoted(c)}) = 'text' AND octet_length(${quoted(c)}) >= ${CHUNKED_VALUE_BYTES}`;
  // Only payload columns (OpenCode names them `data`) can be large: the check costs on every row.
  const select = columns
    .map((c) =>
      chunked && c === 'data'
        ? `CASE WHEN ${large(c)} THEN NULL WHEN typeof(${quoted(c)}) = 'text' THEN CAST(${quoted(c)} AS BLOB) ELSE ${quoted(c)} END AS ${quoted(c)}, ` +
          `typeof(${quoted(c)}) = 'blob' AS ${quoted(c + BLOB_FLAG)}, CASE WHEN ${large(c)} THEN octet_length(${quoted(c)}) END AS ${quoted(c + LARGE_FLAG)}`
        : `CASE typeof(${quoted(c)}) WHEN 'text' THEN CAST(${quoted(c)} AS BLOB) ELSE ${quoted(c)} END AS ${quoted(c)}, typeof(${quoted(c)}) = 'blob' AS ${quoted(c + BLOB_FLAG)}`,
    )
    .join(', ');
  return { select: chunked ? `rowid AS ${quoted(`rowid${LARGE_FLAG}`)}, ${select}` : select, columns };
}

/** Rowids (and value sizes) of a table's rows per session, for a table without an index on its session key. */
type RowKeys = Map<string, { rowid: number; bytes: number }[]>;

/**
 * A session's rows of one table, in rowid order, in items of bounded size; large TEXT values in
 * chunks. With `keys` (a table no index leads with its session key) the rows are fetched by rowid
 * in pages bounded in rows and bytes, instead of a scan of the whole table per session.
 */
function* tableRows(conn: SqliteConnection, table: SessionTable, sessionId: string, counts: TableCounts, keys?: RowKeys): Generator<SessionItem> {
  const chunked = conn.valueReads === 'chunked' && isRowidTable(conn, table.table);
  const { select, columns } = typedColumns(conn, table.table, chunked);
  const rows = keys ? rowsByRowid(conn, table.table, select, keys.get(sessionId) ?? [], chunked) : (statement(conn.db, `SELECT ${select} FROM "${table.table}" WHERE "${table.key}" = ? ORDER BY rowid`).iterate(sessionId) as IterableIterator<Record<string, unknown>>);
  let batch: Row[] = [];
  let bytes = 0;
  let count = 0;
  for (const raw of rows) {
    const { row, bytes: rowBytes } = rowOf(conn, table.table, columns, raw);
    bytes += rowBytes;
    batch.push(row);
    count++;
    if (batch.length >= ROWS_PER_ITEM || bytes >= BYTES_PER_ITEM) {
      yield { kind: 'rows', table: table.table, rows: batch };
      batch = [];
      bytes = 0;
    }
  }
  if (batch.length > 0) yield { kind: 'rows', table: table.table, rows: batch };
  counts[table.table] = count;
}

/** Rows by rowid, in rowid order, a page at a time (at most ROWS_PER_ITEM rows and about BYTES_PER_ITEM of values that come inline). */
function* rowsByRowid(conn: SqliteConnection, table: string, select: string, keys: readonly { rowid: number; bytes: number }[], chunked: boolean): Generator<Record<string, unknown>> {
  const query = statement(conn.db, `SELECT ${select} FROM "${table}" WHERE rowid IN (SELECT value FROM json_each(?)) ORDER BY rowid`);
  let page: number[] = [];
  let bytes = 0;
  const fetch = function* (): Generator<Record<string, unknown>> {
    if (page.length === 0) return;
    const ids = page;
    page = [];
    bytes = 0;
    yield* query.all(JSON.stringify(ids)) as Record<string, unknown>[];
  };
  for (const key of keys) {
    // A value handed on in chunks is not fetched with its page.
    const inline = chunked && key.bytes >= CHUNKED_VALUE_BYTES ? 0 : key.bytes;
    if (page.length > 0 && (page.length >= ROWS_PER_ITEM || bytes + inline > BYTES_PER_ITEM)) yield* fetch();
    page.push(key.rowid);
    bytes += inline;
  }
  yield* fetch();
}

/** For each table of session rows that no index leads with its key: the rowids of `ids`' rows, from one scan. */
function unindexedKeys(conn: SqliteConnection, ids: readonly string[]): Map<string, RowKeys> {
  const out = new Map<string, RowKeys>();
  for (const table of conn.schema.sessionTables.tables) {
    if (table.role !== 'rows' || table.indexed) continue;
    const keys: RowKeys = new Map(ids.map((id) => [id, []]));
    const sizes = conn.db.prepare('SELECT name FROM pragma_table_info(?)').pluck().all(table.table).includes('data') ? 'coalesce(octet_length("data"), 0)' : '0';
    const found = statement(conn.db, `SELECT "${table.key}" AS k, rowid AS r, ${sizes} AS n FROM "${table.table}" WHERE "${table.key}" IN (SELECT value FROM json_each(?)) ORDER BY rowid`)
      .raw()
      .all(JSON.stringify(ids)) as [string, number, number][];
    for (const [k, r, n] of found) keys.get(k)?.push({ rowid: r, bytes: n });
    out.set(table.table, keys);
  }
  return out;
}

/** One row as typedColumns selected it: large TEXT values as chunks read later, BLOBs marked; `bytes` counts what it holds. */
function rowOf(conn: SqliteConnection, table: string, columns: readonly string[], raw: Record<string, unknown>): { row: Row; bytes: number } {
  const row: Row = {};
  let bytes = 0;
  for (const c of columns) {
    const value = raw[c];
    const large = raw[c + LARGE_FLAG];
    if (typeof large === 'number') {
      const rowid = raw[`rowid${LARGE_FLAG}`] as number;
      row[c] = new ChunkedValue(large, () => valueChunks(conn.db, table, c, rowid));
    } else if (Buffer.isBuffer(value)) {
      row[c] = raw[c + BLOB_FLAG] === 1 ? new BlobValue(value) : value;
      bytes += value.length;
    } else row[c] = value as Row[string];
  }
  return { row, bytes };
}

/** sk_chunks reads rowid tables with plain column names only. */
function isRowidTable(conn: SqliteConnection, table: string): boolean {
  const info = conn.db.prepare("SELECT type, wr FROM pragma_table_list WHERE schema = 'main' AND name = ?").get(table) as { type: string; wr: number } | undefined;
  const names = conn.db.prepare('SELECT name FROM pragma_table_info(?)').pluck().all(table) as string[];
  return info?.type === 'table' && info.wr === 0 && names.every((name) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(name));
}

function* sessionItems(conn: SqliteConnection, sessionId: string, keys?: Map<string, RowKeys>): Generator<SessionItem> {
  const { db, schema } = conn;
  const session = statement(db, 'SELECT * FROM session WHERE id = ?').get(sessionId) as Row | undefined;
  if (!session) throw new SkError('not-found', `no session ${sessionId} in ${conn.path}`);
  const has = (table: string): boolean => schema.tables.has(table);
  const project = (statement(db, 'SELECT * FROM project WHERE id = ?').get(session['project_id']) as Row | undefined) ?? null;
  const todos = has('todo') ? (statement(db, 'SELECT * FROM todo WHERE session_id = ? ORDER BY position').all(sessionId) as Row[]) : [];
  const share = has('session_share') ? ((statement(db, 'SELECT * FROM session_share WHERE session_id = ?').get(sessionId) as Row | undefined) ?? null) : null;
  let messages = 0;
  let partCount = 0;
  const counts: TableCounts = {};
  if (has('todo')) counts['todo'] = todos.length;
  if (has('session_share')) counts['session_share'] = share ? 1 : 0;
  yield { kind: 'session', header: { session, project, todos, share, diff: readDiffFile(conn.path, sessionId) } };

  let after: [number, string] | null = null;
  for (;;) {
    const page = messagesAfter(conn, sessionId, after, PAGE_ROWS, INLINE_FETCH_BYTES);
    // One query for the parts of the whole page of messages; inline data stops after 8 MB.
    const partsByMessage = partsOfMessages(conn, page.map((m) => m.id), INLINE_FETCH_BYTES, INLINE_TOTAL_BYTES);
    for (const message of page) {
      const parts = partsByMessage.get(message.id) ?? [];
      messages++;
      yield {
        kind: 'message',
        message: { id: message.id, sessionId, timeCreated: message.timeCreated, timeUpdated: message.timeUpdated, data: exportedPayload(conn, 'message', message) },
        partTimes: parts.map((p) => [p.timeCreated, p.timeUpdated]),
      };
      for (const part of parts) {
        const data = exportedPayload(conn, 'part', part);
        const record: PartRecord = { id: part.id, sessionId, messageId: message.id, timeCreated: part.timeCreated, timeUpdated: part.timeUpdated, data };
        if (part.valid !== null) record.jsonValid = part.valid === 1;
        partCount++;
        yield { kind: 'part', part: record };
      }
    }
    const last = page[page.length - 1];
    if (page.length < PAGE_ROWS || !last) break;
    after = [last.timeCreated, last.id];
  }
  counts['message'] = messages;
  counts['part'] = partCount;
  for (const table of schema.sessionTables.tables) if (table.role === 'rows') yield* tableRows(conn, table, sessionId, counts, keys?.get(table.table));
  yield { kind: 'end', sessionId, counts };
}

/** Sessions read in one transaction when a table of theirs has no index on its session key (one scan finds all their rows). */
const SCAN_BATCH_SESSIONS = 32;

/**
 * The given sessions' items, one session after another, each session inside a read transaction.
 * Where a table of session rows has no index on its session key (the event log before OpenCode
 * 1.18), sessions go in batches sharing one transaction, so that table is scanned once per batch
 * (the rowids of the batch's rows) rather than once per session.
 */
export function* exportSessions(conn: SqliteConnection, ids: readonly string[]): Generator<SessionItem> {
  const scans = ids.length > 1 && conn.schema.sessionTables.tables.some((t) => t.role === 'rows' && !t.indexed);
  const size = scans ? SCAN_BATCH_SESSIONS : 1;
  for (let at = 0; at < ids.length; at += size) {
    const batch = ids.slice(at, at + size);
    conn.db.exec('BEGIN');
    try {
      const keys = scans ? unindexedKeys(conn, batch) : undefined;
      for (const id of batch) yield* sessionItems(conn, id, keys);
    } finally {
      if (conn.db.inTransaction) conn.db.exec('COMMIT');
    }
  }
}

/** Rows each of `ids` owns per table now: what a delete of them would remove. */
export function ownedRowCounts(conn: SqliteConnection, sessionId: string): TableCounts {
  const counts: TableCounts = {};
  for (const table of conn.schema.sessionTables.tables) {
    counts[table.table] = statement(conn.db, `SELECT count(*) FROM "${table.table}" WHERE "${table.key}" = ?`).pluck().get(sessionId) as number;
  }
  return counts;
}

/**
 * A trim's archive: per session its header (naming the rows about to be trimmed) and only those
 * rows, with the messages their parts belong to. Nothing else is read, so archiving what a trim
 * removes costs about what it removes.
 */
export function* exportTrimmedRows(conn: SqliteConnection, trimmed: ReadonlyMap<string, TrimmedRows>): Generator<SessionItem> {
  const { db } = conn;
  const byTime = <T extends { timeCreated: number; id: string }>(a: T, b: T): number => a.timeCreated - b.timeCreated || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  for (const [sessionId, rows] of trimmed) {
    db.exec('BEGIN');
    try {
      const session = statement(db, 'SELECT * FROM session WHERE id = ?').get(sessionId) as Row | undefined;
      // Deleted since the plan: its rows went with it, and the trim finds none of them.
      if (!session) continue;
      const project = (statement(db, 'SELECT * FROM project WHERE id = ?').get(session['project_id']) as Row | undefined) ?? null;
      yield { kind: 'session', header: { session, project, todos: [], share: null, diff: null, trimmed: rows } };
      const counts: TableCounts = {};
      const partIds = rows.part ?? [];
      if (partIds.length > 0) {
        const parts = (
          db
            .prepare(
              `SELECT rowid, id, message_id AS messageId, time_created AS timeCreated, time_updated AS timeUpdated, octet_length(data) AS bytes, NULL AS data
               FROM part WHERE id IN (SELECT value FROM json_each(?))`,
            )
            .all(JSON.stringify(partIds)) as (PayloadRow & { messageId: string })[]
        ).sort(byTime);
        const messages = (
          db
            .prepare(`SELECT rowid, id, time_created AS timeCreated, time_updated AS timeUpdated, octet_length(data) AS bytes, NULL AS data FROM message WHERE id IN (SELECT value FROM json_each(?))`)
            .all(JSON.stringify([...new Set(parts.map((p) => p.messageId))])) as PayloadRow[]
        ).sort(byTime);
        for (const message of messages) {
          const mine = parts.filter((p) => p.messageId === message.id);
          yield {
            kind: 'message',
            message: { id: message.id, sessionId, timeCreated: message.timeCreated, timeUpdated: message.timeUpdated, data: exportedPayload(conn, 'message', message) },
            partTimes: mine.map((p) => [p.timeCreated, p.timeUpdated]),
          };
          for (const part of mine) {
            yield { kind: 'part', part: { id: part.id, sessionId, messageId: message.id, timeCreated: part.timeCreated, timeUpdated: part.timeUpdated, data: exportedPayload(conn, 'part', part) } };
          }
        }
        counts['message'] = messages.length;
        counts['part'] = messages.reduce((n, m) => n + parts.filter((p) => p.messageId === m.id).length, 0);
      }
      for (const table of ['session_message', 'session_input'] as const) {
        const ids = rows[table] ?? [];
        if (ids.length === 0 || !conn.schema.tables.has(table)) continue;
        const { select, columns } = typedColumns(conn, table, conn.valueReads === 'chunked' && isRowidTable(conn, table));
        const found: Row[] = [];
        for (const raw of statement(db, `SELECT ${select} FROM "${table}" WHERE id IN (SELECT value FROM json_each(?)) ORDER BY rowid`).iterate(JSON.stringify(ids)) as IterableIterator<Record<string, unknown>>) {
          found.push(rowOf(conn, table, columns, raw).row);
        }
        if (found.length > 0) yield { kind: 'rows', table, rows: found };
        counts[table] = found.length;
      }
      yield { kind: 'end', sessionId, counts };
    } finally {
      if (db.inTransaction) db.exec('COMMIT');
    }
  }
}
