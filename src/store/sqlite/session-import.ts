/**
 * Sessions into OpenCode's file from a stream of items (restore from an archive or a server).
 * Each session goes in inside one write transaction with foreign keys on, so it is there whole or
 * not at all; data goes in with `CAST(? AS TEXT)`, so no payload becomes a JS string and every
 * row comes back as it was. A session's items are gathered first (up to a bound) so that the
 * write lock is held only while writing, not while the source is read.
 */
import { SkError } from '../../core/errors.js';
import { defaultProjectRow } from '../../core/opencode-format.js';
import { rowPayloadBytes } from '../../core/table-row.js';
import { BlobValue, ChunkedValue, isSyncIterable, payloadBytes, rowId, wholePayload, type MessageRecord, type Payload, type PartRecord, type Row, type SessionHeader, type SessionItem, type SessionItems, type TableCounts } from '../session-items.js';
import type { ImportOptions, ImportResult } from '../writer.js';
import { mapSqliteError, type SqliteConnection } from './connection.js';
import { restoreDiffFile } from './diff-files.js';
import { statement } from './rows.js';
import { largeValueWrites } from './value-chunks.js';

/** Bytes of one session held before writing starts; a bigger session is written as it arrives. */
const GATHER_BYTES = 32 * 1024 * 1024;

/** Bytes of the payload values of some rows, for progress and the gathering bound. */
function rowsBytes(rows: readonly Row[]): number {
  return rows.reduce((n, row) => n + rowPayloadBytes(row), 0);
}

class SessionImporter {
  private readonly columns = new Map<string, Set<string>>();
  private readonly result: ImportResult = { imported: [], skipped: [], bytes: 0 };
  private header: SessionHeader | null = null;
  private skipping = false;
  private pending: SessionItem[] = [];
  private pendingBytes = 0;
  private writing = false;
  private counts: TableCounts = {};
  /** A trim's archive of a session still present: only the rows it lists go back, over what the trim left. */
  private putBack: Map<string, Set<string>> | null = null;
  private putBackKept = 0;

  constructor(
    private readonly conn: SqliteConnection,
    private readonly options: ImportOptions,
  ) {}

  private columnsOf(table: string): Set<string> {
    let present = this.columns.get(table);
    if (!present) {
      present = new Set(this.conn.db.prepare('SELECT name FROM pragma_table_info(?)').pluck().all(table) as string[]);
      this.columns.set(table, present);
    }
    return present;
  }

  /** Inserts the columns this database has (an archive from another version may have more or fewer). */
  private insertRow(table: string, row: Row, orIgnore = false): void {
    const present = this.columnsOf(table);
    if (present.size === 0) throw new SkError('archive', `the archive holds a ${table} row, but ${this.conn.path} has no ${table} table; nothing of this session was restored`);
    const keys = Object.keys(row).filter((k) => present.has(k));
    if (keys.length === 0) return;
    statement(
      this.conn.db,
      `INSERT ${orIgnore ? 'OR IGNORE ' : ''}INTO "${table}" (${keys.map((k) => `"${k}"`).join(', ')}) VALUES (${keys.map(() => '?').join(', ')})`,
    ).run(...keys.map((k) => row[k] ?? null));
  }

  /**
   * Inserts a message or part row. A value waiting in a file of ours never passes through JS:
   * 'lazy' writes a TEXT value of zeros that SQLite never allocates, then fills it from the file
   * through one blob handle (sk_text_zeros + sk_blob_write_file, memory of a chunk); 'file' has
   * SQLite read the file into the value (sk_file_text, the value twice in SQLite's memory while
   * the record is built); anything else is bound whole.
   */
  private insertPayloadRow(table: 'message' | 'part', columns: readonly string[], values: readonly (string | number)[], data: Payload, replace = false): void {
    const insert = replace ? 'INSERT OR REPLACE INTO' : 'INSERT INTO';
    const names = [...columns, 'data'].map((c) => `"${c}"`).join(', ');
    const slots = columns.map(() => '?').join(', ');
    const path = Buffer.isBuffer(data) || !data.file ? 'whole' : largeValueWrites(this.conn.db, table);
    if (path === 'lazy' && !Buffer.isBuffer(data) && data.file) {
      const { lastInsertRowid } = statement(this.conn.db, `${insert} "${table}" (${names}) VALUES (${slots}, sk_text_zeros(?))`).run(...values, data.bytes);
      const written = statement(this.conn.db, 'SELECT sk_blob_write_file(?, ?, ?, ?, ?)').pluck().get(table, 'data', lastInsertRowid, data.file.path, data.file.offset);
      if (written !== data.bytes) throw new SkError('archive', `${table} ${String(values[0])}: ${String(written)} of ${data.bytes} bytes went in`);
      return;
    }
    if (path === 'file' && !Buffer.isBuffer(data) && data.file) {
      statement(this.conn.db, `${insert} "${table}" (${names}) VALUES (${slots}, sk_file_text(?, ?, ?))`).run(...values, data.file.path, data.file.offset, data.bytes);
      return;
    }
    statement(this.conn.db, `${insert} "${table}" (${names}) VALUES (${slots}, CAST(? AS TEXT))`).run(...values, wholePayload(data));
  }

  private insertMessage(m: MessageRecord): void {
    this.insertPayloadRow('message', ['id', 'session_id', 'time_created', 'time_updated'], [m.id, m.sessionId, m.timeCreated, m.timeUpdated], m.data);
  }

  /** `replace`: a trim archive puts its rows back over the trimmed ones. */
  private insertPart(p: PartRecord, replace = false): void {
    this.insertPayloadRow('part', ['id', 'message_id', 'session_id', 'time_created', 'time_updated'], [p.id, p.messageId, p.sessionId, p.timeCreated, p.timeUpdated], p.data, replace);
  }

  private exists(id: string): boolean {
    return statement(this.conn.db, 'SELECT 1 FROM session WHERE id = ?').pluck().get(id) !== undefined;
  }

  private beginWriting(): void {
    const header = this.header as SessionHeader;
    const id = rowId(header.session);
    this.conn.db.exec('BEGIN IMMEDIATE');
    this.writing = true;
    if (this.putBack) return;
    if (this.options.existing === 'replace' && this.exists(id)) {
      statement(this.conn.db, 'DELETE FROM part WHERE session_id = ?').run(id);
      statement(this.conn.db, 'DELETE FROM message WHERE session_id = ?').run(id);
      statement(this.conn.db, 'DELETE FROM session WHERE id = ?').run(id);
    }
    this.insertRow('project', header.project ?? defaultProjectRow(header.session['project_id']), true);
    this.insertRow('session', header.session);
    for (const todo of header.todos) this.insertRow('todo', todo);
    if (header.share) this.insertRow('session_share', header.share);
  }

  /**
   * Rows of another table the session owns, each value with its own type: TEXT from its bytes
   * (`CAST(? AS TEXT)`), BLOBs as BLOBs. An `event_sequence` row keeps the higher of two seqs and an
   * event already there is the same event (OpenCode's own deletes leave orphans behind).
   */
  private insertTableRows(table: string, rows: readonly Row[], replace = false): void {
    const present = this.columnsOf(table);
    if (present.size === 0) {
      throw new SkError('archive', `the archive holds ${table} rows, but ${this.conn.path} has no ${table} table (an older OpenCode?); nothing of this session was restored`);
    }
    for (const row of rows) {
      const keys = Object.keys(row).filter((k) => present.has(k));
      const slots: string[] = [];
      const values: unknown[] = [];
      /** Values SQLite fills from a file of ours after the insert (the 'lazy' path). */
      const fills: { column: string; path: string; offset: number }[] = [];
      for (const k of keys) {
        const v = row[k] ?? null;
        const path = v instanceof ChunkedValue && v.file ? largeValueWrites(this.conn.db, table) : 'whole';
        const blob = v instanceof ChunkedValue && v.type === 'blob';
        if (v instanceof ChunkedValue && v.file && path === 'lazy') {
          // A BLOB's zeros are SQLite's own zeroblob; the fill is the same.
          slots.push(blob ? 'zeroblob(?)' : 'sk_text_zeros(?)');
          values.push(v.bytes);
          fills.push({ column: k, path: v.file.path, offset: v.file.offset });
        } else if (v instanceof ChunkedValue && v.file && path === 'file') {
          slots.push(blob ? 'CAST(sk_file_text(?, ?, ?) AS BLOB)' : 'sk_file_text(?, ?, ?)');
          values.push(v.file.path, v.file.offset, v.bytes);
        } else if (blob) {
          slots.push('?');
          values.push(wholePayload(v));
        } else if (v instanceof ChunkedValue || Buffer.isBuffer(v)) {
          slots.push('CAST(? AS TEXT)');
          values.push(wholePayload(v));
        } else {
          slots.push('?');
          values.push(v instanceof BlobValue ? v.bytes : v);
        }
      }
      const columns = keys.map((k) => `"${k}"`).join(', ');
      let sql = `INSERT INTO "${table}" (${columns}) VALUES (${slots.join(', ')})`;
      if (table === 'event_sequence') sql += ' ON CONFLICT(aggregate_id) DO UPDATE SET seq = max(seq, excluded.seq)';
      if (table === 'event') sql = sql.replace('INSERT INTO', 'INSERT OR IGNORE INTO');
      else if (replace) sql = sql.replace('INSERT INTO', 'INSERT OR REPLACE INTO');
      const { changes, lastInsertRowid } = statement(this.conn.db, sql).run(...values);
      // An event already there is the same event: nothing to fill.
      if (changes !== 1) continue;
      for (const fill of fills) {
        const bytes = (row[fill.column] as ChunkedValue).bytes;
        const written = statement(this.conn.db, 'SELECT sk_blob_write_file(?, ?, ?, ?, ?)').pluck().get(table, fill.column, lastInsertRowid, fill.path, fill.offset);
        if (written !== bytes) throw new SkError('archive', `${table}.${fill.column}: ${String(written)} of ${bytes} bytes went in`);
      }
    }
  }

  private write(item: SessionItem): void {
    const replace = this.putBack !== null;
    if (replace && item.kind === 'part') {
      if (this.changedSinceTrim('part', item.part.id, item.part.timeUpdated)) return;
      this.insertPart(item.part, true);
      this.count('part', 1, payloadBytes(item.part.data));
    } else if (replace && item.kind === 'rows') {
      const rows = item.rows.filter((row) => !this.changedSinceTrim(item.table, String(row['id']), row['time_updated']));
      this.insertTableRows(item.table, rows, true);
      this.count(item.table, rows.length, rowsBytes(rows));
    } else if (replace) {
      return;
    } else if (item.kind === 'message') {
      this.insertMessage(item.message);
      this.count('message', 1, payloadBytes(item.message.data));
    } else if (item.kind === 'part') {
      this.insertPart(item.part);
      this.count('part', 1, payloadBytes(item.part.data));
    } else if (item.kind === 'rows') {
      this.insertTableRows(item.table, item.rows);
      this.count(item.table, item.rows.length, rowsBytes(item.rows));
    }
  }

  private count(table: string, rows: number, bytes: number): void {
    this.counts[table] = (this.counts[table] ?? 0) + rows;
    this.options.onRows?.(bytes, rows);
    this.result.bytes += bytes;
  }

  async take(item: SessionItem): Promise<void> {
    if (item.kind === 'session') {
      this.header = item.header;
      const id = rowId(item.header.session);
      const present = this.options.existing === 'skip' && this.exists(id);
      const trimmed = item.header.trimmed;
      this.putBackKept = 0;
      this.putBack = present && trimmed ? new Map(Object.entries(trimmed).map(([table, ids]) => [table, new Set(ids)])) : null;
      // A trim's archive holds only the trimmed rows: it completes a session present, never makes one.
      this.skipping = (present && this.putBack === null) || (!present && trimmed !== undefined);
      this.counts = {};
      if (this.skipping) (present ? this.result.skipped : (this.result.absent ??= [])).push(id);
      return;
    }
    if (this.skipping || !this.header) return;
    if (this.putBack && item.kind !== 'end') {
      const kept = this.keptForPutBack(item);
      if (!kept) return;
      item = kept;
    }
    if (item.kind === 'end') {
      await this.finishSession(item.counts);
      return;
    }
    if (this.writing) {
      this.write(item);
      return;
    }
    this.pending.push(item);
    this.pendingBytes += item.kind === 'message' ? payloadBytes(item.message.data) : item.kind === 'part' ? payloadBytes(item.part.data) : item.kind === 'rows' ? rowsBytes(item.rows) : 0;
    // A session too big to gather is written as it arrives, its transaction held until its end.
    if (this.pendingBytes > GATHER_BYTES) this.flushPending();
  }

  /**
   * A trim keeps each row's `time_updated`: a row whose time differs now was changed by OpenCode
   * after the trim and is newer than the archive's copy, so it stays (and is counted as kept).
   */
  private changedSinceTrim(table: string, id: string, archivedUpdated: unknown): boolean {
    if (!this.columnsOf(table).has('time_updated')) return false;
    const now = statement(this.conn.db, `SELECT time_updated FROM "${table}" WHERE id = ?`).pluck().get(id);
    if (now === undefined || now === archivedUpdated) return false;
    this.putBackKept++;
    return true;
  }

  /** Of an item of a trimmed session, only the rows the trim changed (null: none of it). */
  private keptForPutBack(item: SessionItem): SessionItem | null {
    const rows = this.putBack as Map<string, Set<string>>;
    if (item.kind === 'part') return rows.get('part')?.has(item.part.id) ? item : null;
    if (item.kind !== 'rows') return null;
    const ids = rows.get(item.table);
    if (!ids) return null;
    const kept = item.rows.filter((row) => ids.has(String(row['id'])));
    return kept.length > 0 ? { kind: 'rows', table: item.table, rows: kept } : null;
  }

  private flushPending(): void {
    if (!this.writing) this.beginWriting();
    for (const item of this.pending) this.write(item);
    this.pending = [];
    this.pendingBytes = 0;
  }

  private async finishSession(sent: TableCounts): Promise<void> {
    const header = this.header as SessionHeader;
    const id = rowId(header.session);
    this.flushPending();
    if (this.putBack) {
      // Every trimmed row the archive holds went back, or was kept as newer.
      const expected = [...this.putBack.keys()].reduce((n, table) => n + (sent[table] ?? 0), 0);
      const written = Object.values(this.counts).reduce((n, rows) => n + rows, 0);
      if (written + this.putBackKept !== expected) throw new SkError('archive', `session ${id}: the archive holds ${expected} trimmed rows, ${written} went back; nothing of it was put back`);
      this.conn.db.exec('COMMIT');
      this.writing = false;
      (this.result.putBack ??= []).push({ id, rows: written });
      this.header = null;
      this.putBack = null;
      await this.options.onSession?.(id);
      return;
    }
    // Whole or not at all: every row the source sent went in (todos and the share with the header).
    const written: TableCounts = { ...this.counts, todo: header.todos.length, session_share: header.share ? 1 : 0 };
    for (const [table, rows] of Object.entries(sent)) {
      if ((written[table] ?? 0) !== rows) {
        throw new SkError('archive', `session ${id}: ${rows} ${table} rows were sent, ${written[table] ?? 0} went in; nothing of it was restored`);
      }
    }
    this.conn.db.exec('COMMIT');
    this.writing = false;
    if (header.diff) restoreDiffFile(this.conn.path, id, header.diff);
    this.result.imported.push({ id, messages: this.counts['message'] ?? 0, parts: this.counts['part'] ?? 0 });
    this.header = null;
    await this.options.onSession?.(id);
  }

  abort(): void {
    if (this.writing && this.conn.db.inTransaction) this.conn.db.exec('ROLLBACK');
    this.writing = false;
  }

  finish(): ImportResult {
    if (this.header && !this.skipping) throw new SkError('archive', `session ${rowId(this.header.session)} ended before its last row`);
    return this.result;
  }
}

/** Puts every session of `items` in, each whole; `existing` says what happens to one already there. */
export async function importSessions(conn: SqliteConnection, items: SessionItems, options: ImportOptions): Promise<ImportResult> {
  const importer = new SessionImporter(conn, options);
  try {
    if (isSyncIterable(items)) for (const item of items) await importer.take(item);
    else for await (const item of items) await importer.take(item);
    return importer.finish();
  } catch (error) {
    importer.abort();
    throw error instanceof SkError ? error : mapSqliteError(error, conn.path);
  }
}
