/**
 * Reading the parts of a batch of messages in one query, with their data inline only while the
 * batch's inline total stays small; the rest are fetched one at a time by the caller. Shared by
 * the reader and the archive writer.
 */
import type Database from 'better-sqlite3';
import { SkError } from '../../core/errors.js';
import type { OpenDatabase } from './open.js';

export interface PayloadRow {
  id: string;
  timeCreated: number;
  timeUpdated: number;
  bytes: number;
  /** The row's JSON as a Buffer, or null when it was too big to come inline. */
  data: Buffer | null;
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

/**
 * Parts of `messageIds`, grouped by message in the given order, each group by (time_created, id).
 * Rows are stepped one at a time; once `inlineTotal` bytes have come inline, later rows keep only
 * their sizes (their data is fetched alone when needed), so a batch never holds more than that.
 * Sorting happens here, not in SQL: an ORDER BY would make SQLite sort whole rows, data included.
 */
export function partsOfMessages(
  open: OpenDatabase,
  messageIds: readonly string[],
  inlineBytes: number,
  inlineTotal: number,
): Map<string, PartRow[]> {
  const grouped = new Map<string, PartRow[]>(messageIds.map((id) => [id, []]));
  const rows = statement(
    open.db,
    `SELECT p.id, p.message_id AS messageId, p.time_created AS timeCreated, p.time_updated AS timeUpdated,
            octet_length(p.data) AS bytes, CASE WHEN octet_length(p.data) <= @inlineBytes THEN CAST(p.data AS BLOB) END AS data,
            CASE WHEN octet_length(p.data) <= @inlineBytes THEN json_valid(p.data) END AS valid
     FROM part AS p WHERE p.message_id IN (SELECT value FROM json_each(@ids))`,
  ).iterate({ ids: JSON.stringify(messageIds), inlineBytes }) as IterableIterator<PartRow>;
  let inline = 0;
  for (const row of rows) {
    if (row.data) {
      if (inline + row.data.length > inlineTotal) {
        row.data = null;
        row.valid = null;
      }
      else inline += row.data.length;
    }
    grouped.get(row.messageId)?.push(row);
  }
  for (const parts of grouped.values()) {
    parts.sort((a, b) => a.timeCreated - b.timeCreated || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }
  return grouped;
}

/** A payload row's data: inline when it came so, else fetched alone (or refused past the limit). */
export function payloadOf(open: OpenDatabase, table: 'part' | 'message', row: PayloadRow, what = 'read'): Buffer {
  if (row.data) return row.data;
  if (row.bytes > open.readableLimit) {
    throw new SkError('too-big', `${table} ${row.id} is ${row.bytes} bytes, over the ${open.readableLimit}-byte limit this build can ${what}`);
  }
  const data = statement(open.db, `SELECT CAST(data AS BLOB) FROM "${table}" WHERE id = ?`).pluck().get(row.id);
  if (!Buffer.isBuffer(data)) throw new SkError('not-found', `${table} ${row.id} disappeared while reading`);
  return data;
}
