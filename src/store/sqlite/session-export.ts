/**
 * Sessions out of OpenCode's file as a stream of items (archive, offload, migrate): every row the
 * session owns (session-tables.ts), so that an archive holds exactly what a delete removes. Each
 * session is read inside one read transaction, so it is consistent however long the consumer
 * takes; rows come in keyset pages, their data as BLOBs, large values one at a time.
 */
import { SkError } from '../../core/errors.js';
import { encodeTableRow } from '../../core/table-row.js';
import type { ExportOptions } from '../reader.js';
import { BlobValue, ChunkedValue, type MessageRecord, type Payload, type PartRecord, type Row, type SessionItem, type TableCounts } from '../session-items.js';
import type { SqliteConnection } from './connection.js';
import { readDiffFile } from './diff-files.js';
import { messagesAfter, partsOfMessages, payloadOf, statement, type PayloadRow } from './rows.js';
import type { TrimmedRows } from '../../core/trim.js';
import { jsonValidSql, valueChunks } from './value-chunks.js';
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

/**
 * exportedPayload for a session's own message or part, with SQLite's verdict on a value fetched
 * alone when it is JSON: `true` only where json_valid says so (then JSON.parse and our scanner
 * say so too), else left to the consumer's own check as before. Its C parser spares the JS parse
 * of every value over the inline limit (the large tool outputs and attachments).
 */
function exportedPayloadChecked(conn: SqliteConnection, table: 'message' | 'part', row: PayloadRow, checkJson: boolean): { data: Payload; valid: boolean | undefined } {
  if (!checkJson || row.data || row.bytes > conn.readableLimit || (row.bytes >= CHUNKED_VALUE_BYTES && conn.valueReads === 'chunked')) return { data: exportedPayload(conn, table, row), valid: undefined };
  const fetched = statement(conn.db, `SELECT CAST(data AS BLOB) AS data, ${jsonValidSql(conn.valueReads, 'data')} AS valid FROM "${table}" WHERE id = ?`).get(row.id) as { data: unknown; valid: number } | undefined;
  if (!fetched || !Buffer.isBuffer(fetched.data)) throw new SkError('not-found', `${table} ${row.id} disappeared while reading`);
  return { data: fetched.data, valid: fetched.valid === 1 ? true : undefined };
}

/** The page cache (KiB) while an export reads. */
const EXPORT_CACHE_KB = 8_000;

/** Marks the column of a select that holds a TEXT value's length in the row's TEXT bytes (NULL for other types and large values). */
const TEXT_LENGTH = ':session-keeper-length';

/** The column of a select holding the row's TEXT values' bytes one after another. */
const TEXT_BYTES = ':session-keeper-text';

/** Marks the column of a select that holds a large TEXT value's length (the value itself left out). */
const LARGE_FLAG = ':session-keeper-large';

/** Marks the column of a select that holds SQLite's json_valid of a TEXT value (NULL for other types and large values). */
const JSON_FLAG = ':session-keeper-json';

/**
 * Every column of `table` with its own type: TEXT values as their exact bytes, all of a row's in
 * one BLOB (one Buffer off the V8 heap per row, not one per value: each cost more than its bytes)
 * cut by their lengths, other values as themselves, so a restore puts back each value with its own
 * type. With `chunked`, a TEXT `data` value of CHUNKED_VALUE_BYTES or more is left out and its length given instead.
 */
function typedColumnsNow(conn: SqliteConnection, table: string, chunked: boolean, checkJson: boolean): { select: string; columns: string[] } {
  const columns = conn.db.prepare('SELECT name FROM pragma_table_info(?) ORDER BY cid').pluck().all(table) as string[];
  const quoted = (c: string): string => `"${c.replaceAll('"', '""')}"`;
  // Only payload columns (OpenCode names them `data`) can be large: the check costs on every row.
  const mayBeLarge = (c: string): boolean => chunked && c === 'data';
  const inlineText = (c: string): string => `typeof(${quoted(c)}) = 'text'${mayBeLarge(c) ? ` AND octet_length(${quoted(c)}) < ${CHUNKED_VALUE_BYTES}` : ''}`;
  const select = columns.map((c) => {
    const q = quoted(c);
    // SQLite's C parser checks JSON text several times faster than a scan in JavaScript.
    const parts = [
      `CASE WHEN typeof(${q}) <> 'text' THEN ${q} END AS ${q}`,
      `CASE WHEN ${inlineText(c)} THEN octet_length(${q}) END AS ${quoted(c + TEXT_LENGTH)}`,
    ];
    if (checkJson) parts.push(`CASE WHEN ${inlineText(c)} THEN ${jsonValidSql(conn.valueReads, q)} END AS ${quoted(c + JSON_FLAG)}`);
    if (mayBeLarge(c)) parts.push(`CASE WHEN typeof(${q}) = 'text' AND octet_length(${q}) >= ${CHUNKED_VALUE_BYTES} THEN octet_length(${q}) END AS ${quoted(c + LARGE_FLAG)}`);
    return parts.join(', ');
  });
  const text = `CAST(${columns.map((c) => `coalesce(CASE WHEN ${inlineText(c)} THEN ${quoted(c)} END, '')`).join(' || ')} AS BLOB) AS ${quoted(TEXT_BYTES)}`;
  return { select: `${chunked ? `rowid AS ${quoted(`rowid${LARGE_FLAG}`)}, ` : ''}${select.join(', ')}, ${text}`, columns };
}

/** The temp table (never in OpenCode's file) of rowids per session of tables scanned once per export. */
const SCANNED_ROWIDS = 'sk_export_rowids';

/**
 * Where the exported sessions' rows lie in tables with no index on their session key (the event
 * log before OpenCode 1.18): one scan per table for all of the export's sessions, kept as rowids
 * in the temp schema, so archiving N sessions reads the log once rather than N times. The map is
 * of one snapshot: when another connection has committed since (PRAGMA data_version, read inside
 * the session's read transaction), it is built again before it is used.
 */
class ScannedRowids {
  private version: number | null = null;
  private readonly scanned = new Set<string>();

  constructor(
    private readonly conn: SqliteConnection,
    private readonly ids: readonly string[],
  ) {}

  /** `sessionId`'s rows of `table` as of the open read transaction, in rowid order, by the map's rowids. */
  rowsOf(table: SessionTable, select: string, sessionId: string): IterableIterator<Record<string, unknown>> {
    const { db } = this.conn;
    const version = statement(db, 'PRAGMA data_version').pluck().get() as number;
    if (version !== this.version) {
      db.exec(`CREATE TEMP TABLE IF NOT EXISTS ${SCANNED_ROWIDS} (tbl TEXT NOT NULL, key TEXT NOT NULL, rid INTEGER NOT NULL, PRIMARY KEY (tbl, key, rid)) WITHOUT ROWID`);
      db.exec(`DELETE FROM temp.${SCANNED_ROWIDS}`);
      this.scanned.clear();
      this.version = version;
    }
    if (!this.scanned.has(table.table)) {
      statement(db, `INSERT INTO temp.${SCANNED_ROWIDS} SELECT ?, "${table.key}", rowid FROM main."${table.table}" WHERE "${table.key}" IN (SELECT value FROM json_each(?))`).run(
        table.table,
        JSON.stringify(this.ids),
      );
      this.scanned.add(table.table);
    }
    // The key is compared again: a rowid the map names is only ever this session's row.
    return statement(
      db,
      `SELECT ${select} FROM main."${table.table}" WHERE rowid IN (SELECT rid FROM temp.${SCANNED_ROWIDS} WHERE tbl = ? AND key = ?) AND "${table.key}" = ? ORDER BY rowid`,
    ).iterate(table.table, sessionId, sessionId) as IterableIterator<Record<string, unknown>>;
  }

  close(): void {
    if (this.version === null) return;
    try {
      this.conn.db.exec(`DROP TABLE IF EXISTS temp.${SCANNED_ROWIDS}`);
    } catch {
      // A statement still reading it (an export abandoned mid-session): it goes with the connection.
    }
  }
}

/** The columns of sk_row_json's select: the row's rowid, and its JSON or NULL where the extension leaves the row to rowOf. */
const ENCODED_ROWID = 'rowid:session-keeper';
const ENCODED_JSON = 'json:session-keeper';

/**
 * sk_row_json's select for `table` (native/value_chunks.c), or null where rows are encoded in JS
 * only: no extension, not UTF-8 (the text's bytes would differ from CAST AS BLOB's), or a column
 * name a JS object would reorder (an array index) or treat apart (`__proto__`).
 */
function encodedSelectNow(conn: SqliteConnection, columns: readonly string[]): string | null {
  if (conn.valueReads !== 'chunked' || columns.length === 0) return null;
  if (conn.db.pragma('encoding', { simple: true }) !== 'UTF-8') return null;
  if (columns.some((c) => /^(0|[1-9][0-9]*)$/.test(c) || c === '__proto__')) return null;
  const sqlText = (text: string): string => `'${text.replaceAll("'", "''")}'`;
  const pairs = columns.map((c, i) => `${sqlText(`${i === 0 ? '{' : ','}${JSON.stringify(c)}:`)}, "${c.replaceAll('"', '""')}"`);
  return `rowid AS "${ENCODED_ROWID}", sk_row_json(${pairs.join(', ')}) AS "${ENCODED_JSON}"`;
}

function encodedSelect(conn: SqliteConnection, table: string, columns: readonly string[]): string | null {
  return remembered(conn, `encoded ${table}`, () => encodedSelectNow(conn, columns));
}

/**
 * tableRows for an archive: each row's encoding built by sk_row_json where it can, else by rowOf
 * and encodeTableRow from the row read again by rowid (in the same read transaction); a row with a
 * value read in chunks goes out alone as `rows`, in its place.
 */
function* encodedTableRows(conn: SqliteConnection, table: SessionTable, typed: { select: string; columns: string[] }, rows: IterableIterator<Record<string, unknown>>): Generator<SessionItem, number> {
  let batch: (Buffer | string)[] = [];
  let bytes = 0;
  let count = 0;
  for (const raw of rows) {
    // A small row comes as a string, a large one as a Buffer; NULL where the extension left it to us.
    let encoded = raw[ENCODED_JSON];
    if (typeof encoded !== 'string' && !Buffer.isBuffer(encoded)) {
      const again = statement(conn.db, `SELECT ${typed.select} FROM "${table.table}" WHERE rowid = ?`).get(raw[ENCODED_ROWID]) as Record<string, unknown> | undefined;
      if (!again) throw new SkError('internal', `${table.table}: a row vanished inside its read transaction`);
      const { row, valid } = rowOf(conn, table.table, typed.columns, again);
      if (Object.values(row).some((value) => value instanceof ChunkedValue)) {
        if (batch.length > 0) yield { kind: 'encodedRows', table: table.table, rows: batch };
        batch = [];
        bytes = 0;
        yield { kind: 'rows', table: table.table, rows: [row], jsonValid: [valid] };
        count++;
        continue;
      }
      encoded = Buffer.concat(encodeTableRow(row, valid));
    }
    const json = encoded as Buffer | string;
    batch.push(json);
    // A string may take two bytes a unit on the heap.
    bytes += typeof json === 'string' ? json.length * 2 : json.length;
    count++;
    if (batch.length >= ROWS_PER_ITEM || bytes >= BYTES_PER_ITEM) {
      yield { kind: 'encodedRows', table: table.table, rows: batch };
      batch = [];
      bytes = 0;
    }
  }
  if (batch.length > 0) yield { kind: 'encodedRows', table: table.table, rows: batch };
  return count;
}

/** A session's rows of one table, in rowid order, in items of bounded size; large TEXT values in chunks. */
function* tableRows(conn: SqliteConnection, table: SessionTable, sessionId: string, counts: TableCounts, scannedRowids: ScannedRowids, checkJson: boolean, encodeRows: boolean): Generator<SessionItem> {
  const rowidTable = isRowidTable(conn, table.table);
  const chunked = conn.valueReads === 'chunked' && rowidTable;
  const typed = typedColumns(conn, table.table, chunked, checkJson);
  const { columns } = typed;
  const encoded = encodeRows && checkJson && chunked ? encodedSelect(conn, table.table, columns) : null;
  const select = encoded ?? typed.select;
  const rows = table.indexed || !rowidTable
    ? (statement(conn.db, `SELECT ${select} FROM "${table.table}" WHERE "${table.key}" = ? ORDER BY rowid`).iterate(sessionId) as IterableIterator<Record<string, unknown>>)
    : scannedRowids.rowsOf(table, select, sessionId);
  if (encoded !== null) {
    counts[table.table] = yield* encodedTableRows(conn, table, typed, rows);
    return;
  }
  let batch: Row[] = [];
  let jsonValid: (ReadonlyMap<string, boolean> | undefined)[] = [];
  let bytes = 0;
  let count = 0;
  for (const raw of rows) {
    const { row, bytes: rowBytes, valid } = rowOf(conn, table.table, columns, raw);
    bytes += rowBytes;
    batch.push(row);
    jsonValid.push(valid);
    count++;
    if (batch.length >= ROWS_PER_ITEM || bytes >= BYTES_PER_ITEM) {
      yield { kind: 'rows', table: table.table, rows: batch, jsonValid };
      batch = [];
      jsonValid = [];
      bytes = 0;
    }
  }
  if (batch.length > 0) yield { kind: 'rows', table: table.table, rows: batch, jsonValid };
  counts[table.table] = count;
}

/**
 * One row as typedColumns selected it: large TEXT values as chunks read later, BLOBs marked; `bytes`
 * counts what it holds, `valid` has SQLite's json_valid of TEXT that looks like an object or array.
 */
function rowOf(conn: SqliteConnection, table: string, columns: readonly string[], raw: Record<string, unknown>): { row: Row; bytes: number; valid: Map<string, boolean> | undefined } {
  const row: Row = {};
  let bytes = 0;
  let valid: Map<string, boolean> | undefined;
  const text = raw[TEXT_BYTES];
  let at = 0;
  for (const c of columns) {
    const value = raw[c];
    const length = raw[c + TEXT_LENGTH];
    const large = raw[c + LARGE_FLAG];
    if (typeof length === 'number') {
      if (length > 0 && (!Buffer.isBuffer(text) || at + length > text.length)) throw new SkError('internal', `${table}: a row's TEXT bytes are shorter than its values`);
      const bytesOf = length > 0 && Buffer.isBuffer(text) ? text.subarray(at, at + length) : Buffer.alloc(0);
      at += length;
      row[c] = bytesOf;
      bytes += length;
      const checked = raw[c + JSON_FLAG];
      if (typeof checked === 'number' && (bytesOf[0] === 0x7b || bytesOf[0] === 0x5b)) (valid ??= new Map()).set(c, checked === 1);
    } else if (typeof large === 'number') {
      const rowid = raw[`rowid${LARGE_FLAG}`] as number;
      row[c] = new ChunkedValue(large, () => valueChunks(conn.db, table, c, rowid));
    } else if (Buffer.isBuffer(value)) {
      // TEXT comes in the row's TEXT bytes: a Buffer here is a BLOB.
      row[c] = new BlobValue(value);
      bytes += value.length;
    } else row[c] = value as Row[string];
  }
  return { row, bytes, valid };
}

/**
 * What typedColumns and isRowidTable found per table, for one schema version: an export asks for
 * every session, and reading the table's columns each time cost more than reading its rows.
 */
const shapes = new WeakMap<SqliteConnection, { version: number; found: Map<string, unknown> }>();

function remembered<T>(conn: SqliteConnection, key: string, find: () => T): T {
  // Read in the caller's transaction: a migration by OpenCode between two sessions is seen.
  const version = statement(conn.db, 'PRAGMA schema_version').pluck().get() as number;
  let known = shapes.get(conn);
  if (!known || known.version !== version) shapes.set(conn, (known = { version, found: new Map() }));
  if (!known.found.has(key)) known.found.set(key, find());
  return known.found.get(key) as T;
}

function typedColumns(conn: SqliteConnection, table: string, chunked: boolean, checkJson: boolean): { select: string; columns: string[] } {
  return remembered(conn, `columns ${String(chunked)} ${String(checkJson)} ${table}`, () => typedColumnsNow(conn, table, chunked, checkJson));
}

function isRowidTable(conn: SqliteConnection, table: string): boolean {
  return remembered(conn, `rowid ${table}`, () => isRowidTableNow(conn, table));
}

/** sk_chunks reads rowid tables with plain column names only. */
function isRowidTableNow(conn: SqliteConnection, table: string): boolean {
  const info = conn.db.prepare("SELECT type, wr FROM pragma_table_list WHERE schema = 'main' AND name = ?").get(table) as { type: string; wr: number } | undefined;
  const names = conn.db.prepare('SELECT name FROM pragma_table_info(?)').pluck().all(table) as string[];
  return info?.type === 'table' && info.wr === 0 && names.every((name) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(name));
}

function* sessionItems(conn: SqliteConnection, sessionId: string, scannedRowids: ScannedRowids, checkJson: boolean, encodeRows: boolean, packedParts: boolean): Generator<SessionItem> {
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
    const page = messagesAfter(conn, sessionId, after, PAGE_ROWS, INLINE_FETCH_BYTES, checkJson);
    // One query for the parts of the whole page of messages; inline data stops after 8 MB.
    const partsByMessage = partsOfMessages(conn, page.map((m) => m.id), INLINE_FETCH_BYTES, INLINE_TOTAL_BYTES, checkJson, packedParts);
    for (const message of page) {
      const parts = partsByMessage.get(message.id) ?? [];
      messages++;
      const payload = exportedPayloadChecked(conn, 'message', message, checkJson);
      const record: MessageRecord = { id: message.id, sessionId, timeCreated: message.timeCreated, timeUpdated: message.timeUpdated, data: payload.data };
      if (typeof message.valid === 'number') record.jsonValid = message.valid === 1;
      else if (payload.valid !== undefined) record.jsonValid = payload.valid;
      yield { kind: 'message', message: record, partTimes: parts.map((p) => [p.timeCreated, p.timeUpdated]) };
      for (const part of parts) {
        const payload = exportedPayloadChecked(conn, 'part', part, checkJson);
        const record: PartRecord = { id: part.id, sessionId, messageId: message.id, timeCreated: part.timeCreated, timeUpdated: part.timeUpdated, data: payload.data };
        if (part.valid !== null) record.jsonValid = part.valid === 1;
        else if (payload.valid !== undefined) record.jsonValid = payload.valid;
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
  for (const table of schema.sessionTables.tables) if (table.role === 'rows') yield* tableRows(conn, table, sessionId, counts, scannedRowids, checkJson, encodeRows);
  yield { kind: 'end', sessionId, counts };
}

/** The given sessions' items, one session after another. */
export function* exportSessions(conn: SqliteConnection, ids: readonly string[], options: ExportOptions = {}): Generator<SessionItem> {
  const checkJson = options.jsonValidity ?? true;
  const encodeRows = options.encodedRows ?? false;
  const packedParts = options.packedParts ?? false;
  const scannedRowids = new ScannedRowids(conn, ids);
  // Every row is read once: a page cache of the default 64 MB would only fill with pages read before.
  const cacheSize = conn.db.pragma('cache_size', { simple: true }) as number;
  if (cacheSize < -EXPORT_CACHE_KB || cacheSize > EXPORT_CACHE_KB / 4) conn.db.pragma(`cache_size = -${EXPORT_CACHE_KB}`);
  try {
    for (const id of ids) {
      conn.db.exec('BEGIN');
      try {
        yield* sessionItems(conn, id, scannedRowids, checkJson, encodeRows, packedParts);
      } finally {
        if (conn.db.inTransaction) conn.db.exec('COMMIT');
      }
    }
  } finally {
    scannedRowids.close();
    conn.db.pragma(`cache_size = ${cacheSize}`);
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
        const { select, columns } = typedColumns(conn, table, conn.valueReads === 'chunked' && isRowidTable(conn, table), true);
        const found: Row[] = [];
        const jsonValid: (ReadonlyMap<string, boolean> | undefined)[] = [];
        for (const raw of statement(db, `SELECT ${select} FROM "${table}" WHERE id IN (SELECT value FROM json_each(?)) ORDER BY rowid`).iterate(JSON.stringify(ids)) as IterableIterator<Record<string, unknown>>) {
          const { row, valid } = rowOf(conn, table, columns, raw);
          found.push(row);
          jsonValid.push(valid);
        }
        if (found.length > 0) yield { kind: 'rows', table, rows: found, jsonValid };
        counts[table] = found.length;
      }
      yield { kind: 'end', sessionId, counts };
    } finally {
      if (db.inTransaction) db.exec('COMMIT');
    }
  }
}
