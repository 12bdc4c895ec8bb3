/**
 * The one write connection to OpenCode's file: evicting sessions, putting them back, and
 * reclaiming their space. OpenCode may be writing the same file, so every write transaction is
 * short (whole session trees for about 50 ms, or a batch of event rows), foreign keys are on,
 * and SQLite's busy timeout does the waiting.
 */
import { statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import type { CompactionResult, CompactOptions } from '../../core/compaction.js';
import { SkError } from '../../core/errors.js';
import type { SessionItems, TableCounts } from '../session-items.js';
import type { TrimPlan } from '../../core/trim.js';
import { applyTrim } from './trim.js';
import type { AppliedTrim, DeleteOptions, DeleteResult, ImportOptions, ImportResult, ReclaimOptions, ReclaimResult, SessionState, SessionWriter } from '../writer.js';
import { fileBytes, mapSqliteError, openConnection, type OpenOptions, type SqliteConnection } from './connection.js';
import { removeDiffFile } from './diff-files.js';
import { compactEvents } from './event-compaction.js';
import { acquireRunLock, type RunLock } from './run-lock.js';
import { assertIntact } from './integrity.js';
import { sessionTrees, statement } from './rows.js';
import { importSessions } from './session-import.js';
import { sessionMarks } from './session-marks.js';
import type { SessionTable } from './session-tables.js';

const EVENT_DELETE_BATCH = 500;
/**
 * A write transaction stops taking more session trees after this long (SESSION_KEEPER_WRITE_BUDGET_MS
 * shortens it beside a busy OpenCode; 0 is one tree per transaction, as a cancel test needs).
 */
const TRANSACTION_BUDGET_MS = writeBudgetMs(process.env['SESSION_KEEPER_WRITE_BUDGET_MS']);

function writeBudgetMs(value: string | undefined): number {
  const ms = value === undefined || value.trim() === '' ? NaN : Number(value);
  return Number.isFinite(ms) && ms >= 0 ? Math.min(ms, 50) : 50;
}
const INCREMENTAL_VACUUM_PAGES = 4096;
/** A full VACUUM is deferred for files over this size when less than this share of them is free. */
const WORTH_IT_FILE_BYTES = 256 * 1024 * 1024;
const WORTH_IT_SHARE = 0.1;

export class SqliteWriter implements SessionWriter {
  readonly kind = 'sqlite' as const;
  readonly conn: SqliteConnection;

  private readonly lock: RunLock;

  private constructor(conn: SqliteConnection, lock: RunLock) {
    this.conn = conn;
    this.lock = lock;
  }

  /** Opens the file for writing and takes its run lock: one changing session-keeper per database. */
  static open(path: string, options: Omit<OpenOptions, 'readonly'> = {}): SqliteWriter {
    const conn = openConnection(path, { ...options, readonly: false });
    try {
      return new SqliteWriter(conn, acquireRunLock(conn.path));
    } catch (error) {
      conn.db.close();
      throw error;
    }
  }

  /** `PRAGMA quick_check`: a damaged file is refused before anything is changed in it. */
  assertIntact(): Promise<void> {
    return this.run(() => assertIntact(this.conn));
  }

  get location(): string {
    return this.conn.path;
  }

  private async run<T>(fn: () => T | Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw mapSqliteError(error, this.conn.path);
    }
  }

  /** Every session here is whole: a write transaction puts each one in entirely or not at all. */
  sessionStates(ids: readonly string[]): Promise<Map<string, SessionState>> {
    return this.run(() => {
      const rows = statement(
        this.conn.db,
        `SELECT s.id, s.time_updated AS updated, (SELECT count(*) FROM message WHERE session_id = s.id) AS messages,
                (SELECT count(*) FROM part WHERE session_id = s.id) AS parts
         FROM session s WHERE s.id IN (SELECT value FROM json_each(?))`,
      ).all(JSON.stringify(ids)) as { id: string; updated: number; messages: number; parts: number }[];
      return new Map(rows.map((r) => [r.id, { updated: r.updated, whole: true, messages: r.messages, parts: r.parts }]));
    });
  }

  /**
   * OpenCode 2.x's layout is known only from public reports, not from the real binary: such a
   * file is read, and nothing in it is changed.
   */
  private refuseUnverifiedLayout(): void {
    if (this.conn.schema.layout === '2.x') {
      throw new SkError('unsupported-schema', `${this.conn.path} is an OpenCode 2.x file (session_v2): session-keeper reads it but changes nothing in it yet; nothing was changed`);
    }
  }

  /** Tables this build does not archive hang off sessions here: deleting would lose their rows. */
  private refuseUnknownTables(): void {
    this.refuseUnverifiedLayout();
    const unknown = this.conn.schema.sessionTables.unknown;
    if (unknown.length > 0) {
      throw new SkError(
        'unsupported-schema',
        `${this.conn.path} has session data in ${unknown.join(', ')}, which this version of session-keeper does not archive; nothing was deleted`,
      );
    }
  }

  deleteTrees(roots: readonly string[], options: DeleteOptions = {}): Promise<DeleteResult> {
    const { db, schema } = this.conn;
    const expected = options.expected;
    const result: DeleteResult = { deleted: [], sessionIds: [], partIds: [], changed: [], notReached: [] };
    const tables = schema.sessionTables.tables;
    const updatedOf = statement(db, 'SELECT time_updated FROM session WHERE id = ?').pluck();
    const partIdsOf = statement(db, 'SELECT id FROM part WHERE session_id = ?').pluck();
    const countOf = (table: SessionTable, id: string): number =>
      statement(db, `SELECT count(*) FROM "${table.table}" WHERE "${table.key}" = ?`).pluck().get(id) as number;
    // Tables without an index on their session key (the event log before OpenCode 1.18) are
    // counted and deleted in one pass each, outside the per-tree transactions.
    // event_sequence goes with an unindexed log: deleted per tree, its cascade would scan the whole
    // log once per session (and take events that arrived after the count).
    const logScanned = tables.some((t) => t.table === 'event' && !t.indexed);
    const withLog = (t: SessionTable): boolean => logScanned && t.table === 'event_sequence';
    const scanned = tables.filter((t) => !t.cascades && (!t.indexed || withLog(t)));
    const inline = tables.filter((t) => t.indexed && !t.cascades && t.role === 'rows' && !withLog(t));

    /** Whether a session still is exactly what was archived: same version, same rows per table. */
    const unchanged = (id: string, scannedCounts: ReadonlyMap<string, TableCounts>): boolean => {
      if (!expected) return true;
      const want = expected.get(id);
      if (!want || updatedOf.get(id) !== want.updated) return false;
      // Read inside the delete's own transaction: nothing can change between this look and the delete.
      if (want.mark !== undefined && sessionMarks(this.conn, [id]).get(id)?.mark !== want.mark) return false;
      if (!want.counts) return true;
      for (const table of tables) {
        const archived = want.counts[table.table];
        if (archived === undefined) continue;
        const now = table.indexed ? countOf(table, id) : (scannedCounts.get(table.table)?.[id] ?? 0);
        if (now !== archived) return false;
      }
      return true;
    };

    /** Deletes one tree inside the open transaction; false when it changed since it was archived. */
    const deleteTree = (tree: string[], scannedCounts: ReadonlyMap<string, TableCounts>): boolean => {
      for (const id of tree) if (!unchanged(id, scannedCounts)) return false;
      for (const id of tree) {
        for (const partId of partIdsOf.all(id) as string[]) result.partIds.push(partId);
        statement(db, 'DELETE FROM part WHERE session_id = ?').run(id);
        statement(db, 'DELETE FROM message WHERE session_id = ?').run(id);
        // Children before parents (`event` references `event_sequence`).
        for (const table of [...inline].reverse()) statement(db, `DELETE FROM "${table.table}" WHERE "${table.key}" = ?`).run(id);
      }
      // Children last-to-first, then the root; cascades take todos, shares, session_message, ...
      for (const id of [...tree].reverse()) statement(db, 'DELETE FROM session WHERE id = ?').run(id);
      return true;
    };

    return this.run(async () => {
      this.refuseUnknownTables();
      const trees = roots.map((root) => ({ root, tree: sessionTrees(this.conn, [root]) }));
      const scannedCounts = this.countByScan(scanned, trees.flatMap((t) => t.tree));
      let next = 0;
      while (next < trees.length) {
        if (options.signal?.aborted) break;
        // Whole trees only, as many as fit in about TRANSACTION_BUDGET_MS: the write lock is held
        // briefly, and thousands of small sessions do not pay a commit each.
        db.transaction(() => {
          const started = performance.now();
          do {
            const { root, tree } = trees[next++] as { root: string; tree: string[] };
            if (tree.length === 0) continue;
            if (!deleteTree(tree, scannedCounts)) {
              result.changed.push(root);
              options.onTree?.(root, false);
              continue;
            }
            result.deleted.push(root);
            for (const id of tree) result.sessionIds.push(id);
            options.onTree?.(root, true);
          } while (next < trees.length && performance.now() - started < TRANSACTION_BUDGET_MS && !options.signal?.aborted);
        }).immediate();
        // Between two transactions (none is open): progress goes out and a cancel can arrive.
        if (options.onTree || options.signal) await new Promise<void>((r) => setImmediate(r));
      }
      for (const { root } of trees.slice(next)) result.notReached.push(root);
      if (scanned.length > 0 && result.sessionIds.length > 0) this.deleteScanned(scanned, result.sessionIds, scannedCounts);
      for (const id of result.sessionIds) removeDiffFile(this.conn.path, id);
      return result;
    });
  }

  /** Rows per session of tables with no index on their key, in one pass per table. */
  private countByScan(tables: readonly SessionTable[], ids: readonly string[]): Map<string, TableCounts> {
    const counts = new Map<string, TableCounts>();
    for (const table of tables) {
      const byId: TableCounts = {};
      const rows = this.conn.db
        .prepare(`SELECT "${table.key}" AS id, count(*) AS n FROM "${table.table}" WHERE "${table.key}" IN (SELECT value FROM json_each(?)) GROUP BY "${table.key}"`)
        .all(JSON.stringify(ids)) as { id: string; n: number }[];
      for (const r of rows) byId[r.id] = r.n;
      counts.set(table.table, byId);
    }
    return counts;
  }

  /**
   * The event log without an index (before OpenCode 1.18): one read pass finds the rowids of the
   * deleted sessions' rows, then short transactions delete them by rowid. `event_sequence` goes
   * last with foreign-key enforcement paused for that one statement, because its cascade check
   * would scan the unindexed event table once per row; their events are already gone. Rows
   * written after the count (so never archived) are left in place, never deleted unarchived.
   */
  private deleteScanned(tables: readonly SessionTable[], sessionIds: readonly string[], counted: ReadonlyMap<string, TableCounts>): void {
    const { db } = this.conn;
    const ids = JSON.stringify(sessionIds);
    const leftovers = new Set<string>();
    for (const table of tables) {
      if (table.table === 'event_sequence') continue;
      const rows = db
        .prepare(`SELECT rowid AS rowid, "${table.key}" AS id FROM "${table.table}" WHERE "${table.key}" IN (SELECT value FROM json_each(?)) ORDER BY rowid`)
        .all(ids) as { rowid: number; id: string }[];
      // As many rows per session as were counted (and archived) before the delete: the oldest.
      const budget = new Map(Object.entries(counted.get(table.table) ?? {}));
      const doomed: number[] = [];
      for (const row of rows) {
        const left = budget.get(row.id) ?? 0;
        if (left > 0) {
          doomed.push(row.rowid);
          budget.set(row.id, left - 1);
        } else leftovers.add(row.id);
      }
      const deleteBatch = db.prepare(`DELETE FROM "${table.table}" WHERE rowid IN (SELECT value FROM json_each(?))`);
      for (let at = 0; at < doomed.length; at += EVENT_DELETE_BATCH) {
        const batch = JSON.stringify(doomed.slice(at, at + EVENT_DELETE_BATCH));
        db.transaction(() => deleteBatch.run(batch)).immediate();
      }
    }
    if (!tables.some((t) => t.table === 'event_sequence')) return;
    const sequences = JSON.stringify(sessionIds.filter((id) => !leftovers.has(id)));
    db.pragma('foreign_keys = OFF');
    try {
      db.transaction(() => db.prepare('DELETE FROM event_sequence WHERE aggregate_id IN (SELECT value FROM json_each(?))').run(sequences)).immediate();
    } finally {
      db.pragma('foreign_keys = ON');
    }
  }

  importSessions(items: SessionItems, options: ImportOptions): Promise<ImportResult> {
    return this.run(async () => {
      this.refuseUnverifiedLayout();
      return importSessions(this.conn, items, options);
    });
  }

  /** Nothing elsewhere is ever deleted on the strength of a write here: commits are enough. */
  async durable(): Promise<void> {}

  /**
   * Gives freed pages back to the file system: `incremental_vacuum` in short steps when the file
   * is in incremental mode, otherwise a full VACUUM (after checking there is room for its copy),
   * then a WAL checkpoint that truncates the WAL.
   */
  reclaim(options: ReclaimOptions = {}): Promise<ReclaimResult> {
    const { db, path } = this.conn;
    const bytesBefore = fileBytes(path);
    // Beside another writer a TRUNCATE checkpoint would hold its writes back while waiting: PASSIVE never waits.
    const checkpoint = options.besideWriter ? 'wal_checkpoint(PASSIVE)' : 'wal_checkpoint(TRUNCATE)';
    return this.run(() => {
      const autoVacuum = db.pragma('auto_vacuum', { simple: true }) as number;
      const freePages = db.pragma('freelist_count', { simple: true }) as number;
      const pageCount = db.pragma('page_count', { simple: true }) as number;
      const pageSize = db.pragma('page_size', { simple: true }) as number;
      // A VACUUM copies every live page: for a few free pages in a big file, not worth the wait;
      // beside a writer, never (it holds the write lock from start to end).
      const notWorthIt = options.onlyWhenWorthIt && pageCount * pageSize > WORTH_IT_FILE_BYTES && freePages < pageCount * WORTH_IT_SHARE;
      if (autoVacuum !== 2 && (notWorthIt || (options.besideWriter && freePages > 0))) {
        db.pragma(checkpoint);
        return { mode: 'deferred', bytesBefore, bytesAfter: fileBytes(path) };
      }
      let mode: ReclaimResult['mode'] = 'none';
      if (autoVacuum === 2) {
        mode = 'incremental';
        const step = db.prepare(`PRAGMA incremental_vacuum(${INCREMENTAL_VACUUM_PAGES})`);
        while ((db.pragma('freelist_count', { simple: true }) as number) > 0) {
          db.transaction(() => step.run()).immediate();
        }
      } else if (freePages > 0) {
        mode = 'vacuum';
        this.checkRoomForVacuum();
        db.exec('VACUUM');
      }
      db.pragma(checkpoint);
      return { mode, bytesBefore, bytesAfter: fileBytes(path) };
    });
  }

  /** VACUUM writes a full copy of the live pages (through the WAL): refuse when the disk lacks room. */
  private checkRoomForVacuum(): void {
    const { db, path } = this.conn;
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    const livePages = (db.pragma('page_count', { simple: true }) as number) - (db.pragma('freelist_count', { simple: true }) as number);
    const needed = livePages * pageSize * 2;
    const stats = statfsSync(dirname(path));
    const available = Number(stats.bavail) * Number(stats.bsize);
    if (available < needed) {
      throw new SkError(
        'disk-full',
        `not enough free disk to VACUUM ${path}: it needs ${needed} bytes, ${available} are available; the free space stays inside the file for now`,
      );
    }
  }

  compactEvents(options: CompactOptions = {}): Promise<CompactionResult> {
    return this.run(() => {
      this.refuseUnverifiedLayout();
      return compactEvents(this.conn, options);
    });
  }

  applyTrim(plan: TrimPlan, placeholder: string): Promise<AppliedTrim> {
    return this.run(() => applyTrim(this.conn, plan, placeholder));
  }

  /** Converts the file to auto_vacuum=INCREMENTAL once (a VACUUM rewrites it), so later deletes can shrink it in steps. */
  convertToIncremental(): Promise<ReclaimResult> {
    const { db, path } = this.conn;
    const bytesBefore = fileBytes(path);
    return this.run(() => {
      if ((db.pragma('auto_vacuum', { simple: true }) as number) !== 2) {
        this.checkRoomForVacuum();
        db.pragma('auto_vacuum = INCREMENTAL');
        db.exec('VACUUM');
      }
      db.pragma('wal_checkpoint(TRUNCATE)');
      return { mode: 'vacuum', bytesBefore, bytesAfter: fileBytes(path) };
    });
  }

  async close(): Promise<void> {
    try {
      this.conn.db.close();
    } finally {
      this.lock.release();
    }
  }
}
