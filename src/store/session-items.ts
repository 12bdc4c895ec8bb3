/**
 * The rows of whole sessions as one store hands them to another: archive files, restore, migrate
 * and offload all move sessions as this stream. Payloads are Buffers (off the V8 heap), each row
 * as stored, so whatever reads them back gets the same bytes.
 */

import { ChunkedValue } from '../core/table-row.js';
import type { Row } from '../core/table-row.js';
import type { TrimmedRows } from '../core/trim.js';

export { BlobValue, ChunkedValue, type Row, type RowValue } from '../core/table-row.js';

export interface SessionHeader {
  /** The `session` row, every column as stored. */
  session: Row;
  /** The `project` row it belongs to (restored when the target lacks it). */
  project: Row | null;
  todos: Row[];
  share: Row | null;
  /** `storage/session_diff/<id>.json` beside the database, as written, when there is one. */
  diff: Buffer | null;
  /** Set in the archive of a trim: the rows that were trimmed, which a restore puts back into the session present. */
  trimmed?: TrimmedRows;
}

/** A row's JSON bytes: whole, or in chunks when it is large. */
export type Payload = Buffer | ChunkedValue;

export const payloadBytes = (value: Payload): number => (Buffer.isBuffer(value) ? value.length : value.bytes);

/** The whole value, for consumers that have no chunked path (its memory is the value's size). */
export function wholePayload(value: Buffer | { readonly bytes: number; chunks(): Iterable<Buffer> }): Buffer {
  if (Buffer.isBuffer(value)) return value;
  const whole = Buffer.allocUnsafe(value.bytes);
  let at = 0;
  for (const chunk of value.chunks()) {
    if (at + chunk.length > whole.length) throw new RangeError(`a chunked value longer than its ${value.bytes} bytes`);
    at += chunk.copy(whole, at);
  }
  if (at !== whole.length) throw new RangeError(`a chunked value of ${at} bytes, ${value.bytes} announced`);
  return whole;
}

export interface MessageRecord {
  id: string;
  sessionId: string;
  timeCreated: number;
  timeUpdated: number;
  /** `message.data`, the row's own JSON bytes. */
  data: Payload;
  /** Whether `data` is well-formed JSON, when the store already knows (spares the reader a parse). */
  jsonValid?: boolean;
}

export interface PartRecord {
  id: string;
  sessionId: string;
  messageId: string;
  timeCreated: number;
  timeUpdated: number;
  /** `part.data`, the row's own JSON bytes (in chunks when large). */
  data: Payload;
  /** Whether `data` is well-formed JSON, when the store already knows (spares the reader a parse). */
  jsonValid?: boolean;
}

/** Rows of each table a session owns, by table name, as one side counted them. */
export type TableCounts = Record<string, number>;

/**
 * One session is `session`, then each `message` followed by its `part`s, then the `rows` of the
 * other tables it owns (the event log, OpenCode 1.18's session_message, ...), table by table in
 * restore order, then `end` with the rows sent per table. A message announces its parts' times
 * first, because an archive writes them before the parts themselves.
 */
export type SessionItem =
  | { kind: 'session'; header: SessionHeader }
  | { kind: 'message'; message: MessageRecord; partTimes: [number, number][] }
  | { kind: 'part'; part: PartRecord }
  | {
      kind: 'rows';
      table: string;
      rows: Row[];
      /** Per row (same order), the TEXT columns SQLite's json_valid checked, with its verdict: an encoder need not scan them again. */
      jsonValid?: (ReadonlyMap<string, boolean> | undefined)[];
    }
  /**
   * Rows of a table, each as encodeTableRow's bytes joined (ExportOptions.encodedRows only): a
   * string where the store built them (always well-formed UTF-8, so encoding it gives those bytes).
   */
  | { kind: 'encodedRows'; table: string; rows: (Buffer | string)[] }
  | { kind: 'end'; sessionId: string; counts: TableCounts };

/** SQLite produces items synchronously, servers asynchronously; consumers take either. */
export type SessionItems = Iterable<SessionItem> | AsyncIterable<SessionItem>;

export function isSyncIterable<T>(items: Iterable<T> | AsyncIterable<T>): items is Iterable<T> {
  return typeof (items as Iterable<T>)[Symbol.iterator] === 'function';
}

export const rowId = (row: Row): string => {
  const id = row['id'];
  if (typeof id !== 'string' || id === '') throw new TypeError('a session row without an id');
  return id;
};
