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

/** A session's rows of one table, in rowid order, in items of bounded size; large TEXT values in chunks. */
function* tableRows(conn: SqliteConnection, table: SessionTable, sessionId: string, counts: TableCounts): Generator<SessionItem> {
  const chunked = conn.valueReads === 'chunked' && isRowidTable(conn, table.table);
  const { select, columns } = typedColumns(conn, table.table, chunked);
  const rows = statement(conn.db, `SELECT ${select} FROM "${table.table}" WHERE "${table.key}" = ? ORDER BY rowid`).iterate(sessionId) as IterableIterator<Record<string, unknown>>;
  let batch: Row[] = [];
  let bytes = 0;
  let count = 0;
  for (const raw of rows) {
    const row: Row = {};
    for (const c of columns) {
      const value = raw[c];
      const large = raw[c + LARGE_FLAG];
      if (typeof large === 'number') {
        const rowid = raw[`rowid${LARGE_FLAG}`] as number;
        row[c] = new ChunkedValue(large, () => valueChunks(conn.db, table.table, c, rowid));
      } else if (Buffer.isBuffer(value)) {
        row[c] = raw[c + BLOB_FLAG] === 1 ? new BlobValue(value) : value;
        bytes += value.length;
      } else row[c] = value as Row[string];
    }
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

/** sk_chunks reads rowid tables with plain column names only. */
function isRowidTable(conn: SqliteConnection, table: string): boolean {
  const info = conn.db.prepare("SELECT type, wr FROM pragma_table_list WHERE schema = 'main' AND name = ?").get(table) as { type: string; wr: number } | undefined;
  const names = conn.db.prepare('SELECT name FROM pragma_table_info(?)').pluck().all(table) as string[];
  return info?.type === 'table' && info.wr === 0 && names.every((name) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(name));
}

function* sessionItems(conn: SqliteConnection, sessionId: string): Generator<SessionItem> {
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
  for (const table of schema.sessionTables.tables) if (table.role === 'rows') yield* tableRows(conn, table, sessionId, counts);
  yield { kind: 'end', sessionId, counts };
}

/** The given sessions' items, one session after another. */
export function* exportSessions(conn: SqliteConnection, ids: readonly string[]): Generator<SessionItem> {
  for (const id of ids) {
    conn.db.exec('BEGIN');
    try {
      yield* sessionItems(conn, id);
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
