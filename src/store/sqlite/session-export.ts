/**
 * Sessions out of OpenCode's file as a stream of items (archive, offload, migrate): every row the
 * session owns (session-tables.ts), so that an archive holds exactly what a delete removes. Each
 * session is read inside one read transaction, so it is consistent however long the consumer
 * takes; rows come in keyset pages, their data as BLOBs, large values one at a time.
 */
import { SkError } from '../../core/errors.js';
import { BlobValue, type PartRecord, type Row, type SessionItem, type TableCounts } from '../session-items.js';
import type { SqliteConnection } from './connection.js';
import { readDiffFile } from './diff-files.js';
import { messagesAfter, partsOfMessages, payloadOf, statement, type PayloadRow } from './rows.js';
import type { TrimmedRows } from '../../core/trim.js';
import type { SessionTable } from './session-tables.js';

const PAGE_ROWS = 200;
const INLINE_FETCH_BYTES = 256 * 1024;
const INLINE_TOTAL_BYTES = 8 * 1024 * 1024;
/** A `rows` item carries at most this many rows or bytes. */
const ROWS_PER_ITEM = 500;
const BYTES_PER_ITEM = 8 * 1024 * 1024;
/** Marks the column of a select that says whether a value is a BLOB. */
const BLOB_FLAG = ':session-keeper-blob';

/**
 * Every column of `table`, TEXT read as BLOB (its exact bytes, a Buffer off the V8 heap) and a
 * flag telling real BLOBs apart, so a restore puts back each value with its own type.
 */
function typedColumns(conn: SqliteConnection, table: string): { select: string; columns: string[] } {
  const columns = conn.db.prepare('SELECT name FROM pragma_table_info(?) ORDER BY cid').pluck().all(table) as string[];
  const quoted = (c: string): string => `"${c.replaceAll('"', '""')}"`;
  const select = columns
    .map((c) => `CASE typeof(${quoted(c)}) WHEN 'text' THEN CAST(${quoted(c)} AS BLOB) ELSE ${quoted(c)} END AS ${quoted(c)}, typeof(${quoted(c)}) = 'blob' AS ${quoted(c + BLOB_FLAG)}`)
    .join(', ');
  return { select, columns };
}

/** A session's rows of one table, in rowid order, in items of bounded size. */
function* tableRows(conn: SqliteConnection, table: SessionTable, sessionId: string, counts: TableCounts): Generator<SessionItem> {
  const { select, columns } = typedColumns(conn, table.table);
  const rows = statement(conn.db, `SELECT ${select} FROM "${table.table}" WHERE "${table.key}" = ? ORDER BY rowid`).iterate(sessionId) as IterableIterator<Record<string, unknown>>;
  let batch: Row[] = [];
  let bytes = 0;
  let count = 0;
  for (const raw of rows) {
    const row: Row = {};
    for (const c of columns) {
      const value = raw[c];
      if (Buffer.isBuffer(value)) {
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
        message: { id: message.id, sessionId, timeCreated: message.timeCreated, timeUpdated: message.timeUpdated, data: payloadOf(conn, 'message', message, 'archive') },
        partTimes: parts.map((p) => [p.timeCreated, p.timeUpdated]),
      };
      for (const part of parts) {
        const data = payloadOf(conn, 'part', part, 'archive');
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
            message: { id: message.id, sessionId, timeCreated: message.timeCreated, timeUpdated: message.timeUpdated, data: payloadOf(conn, 'message', message, 'archive') },
            partTimes: mine.map((p) => [p.timeCreated, p.timeUpdated]),
          };
          for (const part of mine) {
            yield { kind: 'part', part: { id: part.id, sessionId, messageId: message.id, timeCreated: part.timeCreated, timeUpdated: part.timeUpdated, data: payloadOf(conn, 'part', part, 'archive') } };
          }
        }
        counts['message'] = messages.length;
        counts['part'] = messages.reduce((n, m) => n + parts.filter((p) => p.messageId === m.id).length, 0);
      }
      for (const table of ['session_message', 'session_input'] as const) {
        const ids = rows[table] ?? [];
        if (ids.length === 0 || !conn.schema.tables.has(table)) continue;
        const { select, columns } = typedColumns(conn, table);
        const found: Row[] = [];
        for (const raw of statement(db, `SELECT ${select} FROM "${table}" WHERE id IN (SELECT value FROM json_each(?)) ORDER BY rowid`).iterate(JSON.stringify(ids)) as IterableIterator<Record<string, unknown>>) {
          const row: Row = {};
          for (const c of columns) {
            const value = raw[c];
            row[c] = Buffer.isBuffer(value) && raw[c + BLOB_FLAG] === 1 ? new BlobValue(value) : (value as Row[string]);
          }
          found.push(row);
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
