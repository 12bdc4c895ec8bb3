/**
 * The one write connection to OpenCode's file: evicting sessions, putting them back, and
 * reclaiming their space. OpenCode may be writing the same file, so every write transaction is
 * short (whole session trees for about 50 ms, or a batch of event rows), foreign keys are on,
 * and SQLite's busy timeout does the waiting.
 */
import { statfsSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { SkError } from '../../core/errors.js';
import type { SessionItems } from '../session-items.js';
import type { DeleteResult, ImportOptions, ImportResult, ReclaimResult, SessionState, SessionWriter } from '../writer.js';
import { mapSqliteError, openConnection, type OpenOptions, type SqliteConnection } from './connection.js';
import { removeDiffFile } from './diff-files.js';
import { sessionTrees, statement } from './rows.js';
import { importSessions } from './session-import.js';

const EVENT_DELETE_BATCH = 500;
/** A write transaction stops taking more session trees after this long. */
const TRANSACTION_BUDGET_MS = 50;
const INCREMENTAL_VACUUM_PAGES = 4096;

/** The file and its WAL, as the disk holds them. */
export function fileBytes(path: string): number {
  const size = (p: string): number => {
    try {
      return statSync(p).size;
    } catch {
      return 0;
    }
  };
  return size(path) + size(`${path}-wal`);
}

export class SqliteWriter implements SessionWriter {
  readonly kind = 'sqlite' as const;
  readonly conn: SqliteConnection;

  constructor(conn: SqliteConnection) {
    this.conn = conn;
  }

  static open(path: string, options: Omit<OpenOptions, 'readonly'> = {}): SqliteWriter {
    return new SqliteWriter(openConnection(path, { ...options, readonly: false }));
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

  deleteTrees(roots: readonly string[], options: { expectedVersions?: ReadonlyMap<string, number> } = {}): Promise<DeleteResult> {
    const { db, schema } = this.conn;
    const expected = options.expectedVersions;
    const result: DeleteResult = { deleted: [], sessionIds: [], partIds: [], changed: [] };
    const updatedOf = statement(db, 'SELECT time_updated FROM session WHERE id = ?').pluck();
    const partIdsOf = statement(db, 'SELECT id FROM part WHERE session_id = ?').pluck();
    const deleteParts = statement(db, 'DELETE FROM part WHERE session_id = ?');
    const deleteMessages = statement(db, 'DELETE FROM message WHERE session_id = ?');
    const deleteSession = statement(db, 'DELETE FROM session WHERE id = ?');

    /** Deletes one tree inside the open transaction; false when it changed since it was archived. */
    const deleteTree = (tree: string[]): boolean => {
      if (expected) {
        for (const id of tree) {
          const archived = expected.get(id);
          if (archived === undefined || updatedOf.get(id) !== archived) return false;
        }
      }
      for (const id of tree) {
        for (const partId of partIdsOf.all(id) as string[]) result.partIds.push(partId);
        deleteParts.run(id);
        deleteMessages.run(id);
      }
      // Children last-to-first, then the root; cascades take todos, shares, session_message.
      for (const id of [...tree].reverse()) deleteSession.run(id);
      return true;
    };

    return this.run(() => {
      let next = 0;
      while (next < roots.length) {
        // Whole trees only, as many as fit in about TRANSACTION_BUDGET_MS: the write lock is held
        // briefly, and thousands of small sessions do not pay a commit each.
        db.transaction(() => {
          const started = performance.now();
          do {
            const root = roots[next++] as string;
            const tree = sessionTrees(this.conn, [root]);
            if (tree.length === 0) continue;
            if (!deleteTree(tree)) {
              result.changed.push(root);
              continue;
            }
            result.deleted.push(root);
            for (const id of tree) result.sessionIds.push(id);
          } while (next < roots.length && performance.now() - started < TRANSACTION_BUDGET_MS);
        }).immediate();
      }
      if (schema.tables.has('event') && schema.tables.has('event_sequence') && result.sessionIds.length > 0) this.deleteEvents(result.sessionIds);
      for (const id of result.sessionIds) removeDiffFile(this.conn.path, id);
      return result;
    });
  }

  /**
   * Events are keyed by `aggregate_id`, which OpenCode does not index: one read pass finds their
   * rowids, then short transactions delete them by rowid. The `event_sequence` rows go last with
   * foreign-key enforcement paused for that one statement, because its cascade check would scan
   * the whole unindexed event table once per row; their events are already gone.
   */
  private deleteEvents(sessionIds: readonly string[]): void {
    const { db } = this.conn;
    const ids = JSON.stringify(sessionIds);
    const rowids = db.prepare('SELECT rowid FROM event WHERE aggregate_id IN (SELECT value FROM json_each(?))').pluck().all(ids) as number[];
    const deleteBatch = db.prepare('DELETE FROM event WHERE rowid IN (SELECT value FROM json_each(?))');
    for (let at = 0; at < rowids.length; at += EVENT_DELETE_BATCH) {
      const batch = JSON.stringify(rowids.slice(at, at + EVENT_DELETE_BATCH));
      db.transaction(() => deleteBatch.run(batch)).immediate();
    }
    db.pragma('foreign_keys = OFF');
    try {
      db.transaction(() => {
        // A straggler written by OpenCode between the passes goes too, so none is orphaned.
        db.prepare('DELETE FROM event WHERE aggregate_id IN (SELECT value FROM json_each(?)) AND rowid > ?').run(
          ids,
          rowids.reduce((max, id) => (id > max ? id : max), 0),
        );
        db.prepare('DELETE FROM event_sequence WHERE aggregate_id IN (SELECT value FROM json_each(?))').run(ids);
      }).immediate();
    } finally {
      db.pragma('foreign_keys = ON');
    }
  }

  importSessions(items: SessionItems, options: ImportOptions): Promise<ImportResult> {
    return importSessions(this.conn, items, options);
  }

  /** Nothing elsewhere is ever deleted on the strength of a write here: commits are enough. */
  async durable(): Promise<void> {}

  /**
   * Gives freed pages back to the file system: `incremental_vacuum` in short steps when the file
   * is in incremental mode, otherwise a full VACUUM (after checking there is room for its copy),
   * then a WAL checkpoint that truncates the WAL.
   */
  reclaim(): Promise<ReclaimResult> {
    const { db, path } = this.conn;
    const bytesBefore = fileBytes(path);
    return this.run(() => {
      const autoVacuum = db.pragma('auto_vacuum', { simple: true }) as number;
      const freePages = db.pragma('freelist_count', { simple: true }) as number;
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
      db.pragma('wal_checkpoint(TRUNCATE)');
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
        `not enough free disk to VACUUM ${path}: needs ${needed} bytes, ${available} available; sessions were deleted, space is not yet reclaimed`,
      );
    }
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
    this.conn.db.close();
  }
}
