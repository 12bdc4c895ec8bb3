/**
 * Reading message and part rows: sizes first (octet_length reads no payload), data inline only
 * while a result stays small, the rest fetched one value at a time as a BLOB (a Buffer, off the
 * V8 heap). Shared by the page source, the session export and the copy to a server.
 */
import type Database from 'better-sqlite3';
import { SkError } from '../../core/errors.js';
import type { SqliteConnection } from './connection.js';
import { jsonValidSql, type ChunkedReadPath } from './value-chunks.js';

export interface PayloadRow {
  /** The row's rowid: what sk_chunks and our part index know it by. */
  rowid: number;
  id: string;
  timeCreated: number;
  timeUpdated: number;
  bytes: number;
  /** The row's JSON as a Buffer, or null when it was too big to come inline. */
  data: Buffer | null;
  /** SQLite's json_valid of inline data, where the query asked for it. */
  valid?: 0 | 1 | null;
}

export interface PartRow extends PayloadRow {
  messageId: string;
  /** SQLite's json_valid of inline data (its C parser is several times faster than JSON.parse). */
  valid: 0 | 1 | null;
}

const statements = new WeakMap<Database.Database, Map<string, Database.Statement>>();

/** Prepares each SQL text once per connection. */
export function statement(db: Database.Database, sql: string): Database.Statement {
  let cache = statements.get(db);
  if (!cache) {
    cache = new Map();
    statements.set(db, cache);
  }
  let stmt = cache.get(sql);
  if (!stmt) {
    stmt = db.prepare(sql);
    cache.set(sql, stmt);
  }
  return stmt;
}

/** Columns of a message page: sizes, and data only up to `inlineBytes` (with its json_valid when `checkJson`). */
const messageColumns = (inlineBytes: number, checkJson: boolean, reads: ChunkedReadPath): string =>
  `rowid, id, time_created AS timeCreated, time_updated AS timeUpdated, octet_length(data) AS bytes,
   CASE WHEN octet_length(data) <= ${Math.floor(inlineBytes)} THEN CAST(data AS BLOB) END AS data` +
  (checkJson ? `, CASE WHEN octet_length(data) <= ${Math.floor(inlineBytes)} THEN ${jsonValidSql(reads, 'data')} END AS valid` : '');

/** Up to `limit` messages of a session after (time_created, id), in that order. */
export function messagesAfter(
  conn: SqliteConnection,
  sessionId: string,
  after: readonly [number, string] | null,
  limit: number,
  inlineBytes: number,
  checkJson = false,
): PayloadRow[] {
  const columns = messageColumns(inlineBytes, checkJson, conn.valueReads);
  if (!after) {
    return statement(conn.db, `SELECT ${columns} FROM message WHERE session_id = ? ORDER BY time_created, id LIMIT ?`).all(sessionId, limit) as PayloadRow[];
  }
  const [created, id] = after;
  return statement(
    conn.db,
    `SELECT ${columns} FROM message WHERE session_id = ? AND (time_created > ? OR (time_created = ? AND id > ?))
     ORDER BY time_created, id LIMIT ?`,
  ).all(sessionId, created, created, id, limit) as PayloadRow[];
}

/**
 * Parts of `messageIds`, grouped by message in the given order, each group by (time_created, id).
 * Once `inlineTotal` bytes have come inline, later rows keep only their sizes (their data is
 * fetched alone when needed), so a batch never holds more than that.
 * Sorting happens here, not in SQL: an ORDER BY would make SQLite sort whole rows, data included.
 *
 * With `packed` (and the extension), the rows come as one Buffer from sk_pack_parts and their data
 * as views into it: one Buffer per page instead of one per part, each of which cost more than its
 * bytes. A view keeps the whole page's Buffer alive, so only a consumer that writes the parts out
 * as they come asks for it (an archive writer), never one that may keep some (a page cache).
 */
export function partsOfMessages(
  conn: SqliteConnection,
  messageIds: readonly string[],
  inlineBytes: number,
  inlineTotal: number,
  checkJson = true,
  packed = false,
): Map<string, PartRow[]> {
  const grouped = new Map<string, PartRow[]>(messageIds.map((id) => [id, []]));
  const params = { ids: JSON.stringify(messageIds), inlineBytes, inlineTotal };
  const columns = `p.rowid, p.id, p.message_id, p.time_created, p.time_updated,
            octet_length(p.data), CASE WHEN octet_length(p.data) <= @inlineBytes THEN CAST(p.data AS BLOB) END,
            ${checkJson ? `CASE WHEN octet_length(p.data) <= @inlineBytes THEN ${jsonValidSql(conn.valueReads, 'p.data')} END` : 'NULL'}`;
  const where = 'FROM part AS p WHERE p.message_id IN (SELECT value FROM json_each(@ids))';
  const unpacked = packed && conn.valueReads === 'chunked' ? unpackParts(statement(conn.db, `SELECT sk_pack_parts(@inlineTotal, ${columns}) ${where}`).pluck().get(params)) : null;
  const rows = unpacked ?? steppedParts(statement(conn.db, `SELECT ${columns} ${where}`), params);
  for (const row of rows) grouped.get(row.messageId)?.push(row);
  for (const parts of grouped.values()) {
    parts.sort((a, b) => a.timeCreated - b.timeCreated || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }
  return grouped;
}

/**
 * partsOfMessages' rows stepped one at a time. Rows as arrays (raw): objects made here cost less
 * than the driver's, one per part of every export. Once `inlineTotal` bytes have come inline,
 * later rows keep only their sizes (sk_pack_parts keeps the same budget).
 */
function* steppedParts(select: Database.Statement, params: { ids: string; inlineBytes: number; inlineTotal: number }): Generator<PartRow> {
  let inline = 0;
  for (const [rowid, id, messageId, timeCreated, timeUpdated, bytes, data, valid] of select.raw(true).iterate(params) as IterableIterator<PartColumns>) {
    const row: PartRow = { rowid, id, messageId, timeCreated, timeUpdated, bytes, data, valid };
    if (row.data) {
      if (inline + row.data.length > params.inlineTotal) {
        row.data = null;
        row.valid = null;
      } else inline += row.data.length;
    }
    yield row;
  }
}

/**
 * The rows of sk_pack_parts' result (native/value_chunks.c), in SQLite's order: per row its rowid,
 * times and size as little-endian int64, its id, message id and data each as an int32 length and
 * the bytes (data -1: none inline), then the verdict as a byte (2: none). Null where the extension
 * refused a row it does not vouch for (the caller steps the rows instead).
 */
function unpackParts(packed: unknown): PartRow[] | null {
  if (!Buffer.isBuffer(packed)) return null;
  const rows: PartRow[] = [];
  let at = 0;
  const text = (): string => {
    const n = packed.readInt32LE(at);
    at += 4;
    const value = packed.toString('utf8', at, at + n);
    at += n;
    return value;
  };
  // The extension packs only integers within 2^53: two 32-bit halves make the number exactly.
  const int53 = (offset: number): number => packed.readUInt32LE(offset) + packed.readInt32LE(offset + 4) * 0x1_0000_0000;
  while (at < packed.length) {
    const rowid = int53(at);
    const timeCreated = int53(at + 8);
    const timeUpdated = int53(at + 16);
    const bytes = int53(at + 24);
    at += 32;
    const id = text();
    const messageId = text();
    const n = packed.readInt32LE(at);
    at += 4;
    const data = n < 0 ? null : packed.subarray(at, at + n);
    if (n > 0) at += n;
    const verdict = packed[at++];
    rows.push({ rowid, id, messageId, timeCreated, timeUpdated, bytes, data, valid: verdict === 0 || verdict === 1 ? verdict : null });
  }
  if (at !== packed.length) throw new SkError('internal', 'sk_pack_parts: a packed page ends inside a row');
  return rows;
}

/** A part row as partsOfMessages selects it, column by column. */
type PartColumns = [rowid: number, id: string, messageId: string, timeCreated: number, timeUpdated: number, bytes: number, data: Buffer | null, valid: 0 | 1 | null];

/** Refuses, with one line, a value larger than this connection can read (whole or in chunks). `table` may be `table:column`. */
export function checkReadable(conn: SqliteConnection, table: string, row: Pick<PayloadRow, 'id' | 'bytes'>, what = 'read'): void {
  if (row.bytes > conn.readableLimit) {
    const [name] = table.split(':') as [string];
    throw new SkError('too-big', `${name} ${row.id} is ${row.bytes} bytes, over the ${conn.readableLimit}-byte limit this build can ${what}`);
  }
}

/** A payload row's data: inline when it came so, else fetched alone (or refused past the limit). `table:column` names another column than `data`. */
export function payloadOf(conn: SqliteConnection, table: string, row: Pick<PayloadRow, 'id' | 'bytes' | 'data'>, what = 'read'): Buffer {
  if (row.data) return row.data;
  const [name, column = 'data'] = table.split(':') as [string, string?];
  checkReadable(conn, table, row, what);
  const data = statement(conn.db, `SELECT CAST("${column}" AS BLOB) FROM "${name}" WHERE id = ?`).pluck().get(row.id);
  if (!Buffer.isBuffer(data)) throw new SkError('not-found', `${table} ${row.id} disappeared while reading`);
  return data;
}

/** Every session id of the trees rooted at `rootIds` (roots first, then children), deduplicated. */
export function sessionTrees(conn: SqliteConnection, rootIds: readonly string[]): string[] {
  const stmt = statement(
    conn.db,
    `WITH RECURSIVE tree(id, depth) AS (SELECT id, 0 FROM session WHERE id = ?
       UNION SELECT s.id, tree.depth + 1 FROM session s JOIN tree ON s.parent_id = tree.id)
     SELECT id FROM tree ORDER BY depth, id`,
  );
  const seen = new Set<string>();
  for (const root of rootIds) for (const id of stmt.pluck().all(root) as string[]) seen.add(id);
  return [...seen];
}

/** `time_updated` of each of `ids` that exists. */
export function sessionVersions(conn: SqliteConnection, ids: readonly string[]): Map<string, number> {
  const rows = statement(conn.db, 'SELECT id, time_updated AS updated FROM session WHERE id IN (SELECT value FROM json_each(?))').all(
    JSON.stringify(ids),
  ) as { id: string; updated: number }[];
  return new Map(rows.map((r) => [r.id, r.updated]));
}

/** SQL summing the TEXT and BLOB bytes of a row of `table` (what it holds beyond its numbers). */
export function payloadSum(conn: SqliteConnection, table: string): string {
  const columns = conn.db.prepare('SELECT name FROM pragma_table_info(?)').pluck().all(table) as string[];
  const terms = columns.map((c) => `CASE WHEN typeof("${c}") IN ('text', 'blob') THEN octet_length("${c}") ELSE 0 END`);
  return terms.length > 0 ? terms.join(' + ') : '0';
}
