/**
 * OpenCode's own file, read with the memory rules of DESIGN.md section 3. Payload columns are
 * sized with octet_length (which reads no payload), fetched as BLOBs (Buffers outside the V8 heap)
 * one large value at a time, and reduced before anything is parsed.
 */
import { existsSync, statSync } from 'node:fs';
import { emptyCompactionPlan, type CompactionPlan, type PlanOptions } from '../../core/compaction.js';
import type { AttachmentResult, ListResult, OversizeValue, PageOptions, SessionSummary, ShowResult, StatsOptions, StatsResult } from '../../core/api.js';
import { decodeSessionCursor, encodeCursor } from '../../core/cursor.js';
import { SkError } from '../../core/errors.js';
import { DEFAULT_SESSION_PAGE } from '../../core/page-rules.js';
import { attachmentFilename, attachmentRefName, findAttachments, parseAttachmentRef } from '../../core/part-scan.js';
import { familyFacts, type SessionRowFacts } from '../../core/planner.js';
import { EVENT_LOG_TABLES } from '../../core/opencode-format.js';
import { crossedThresholds } from '../../core/thresholds.js';
import { AttachmentCache } from '../attachment-cache.js';
import { dataFolderPlaces } from './data-folder/places.js';
import { buildShowPage } from '../page-builder.js';
import type { RetentionFacts, SessionCounts, SessionReader, StoreSize } from '../reader.js';
import type { SessionItem } from '../session-items.js';
import { mapSqliteError, openConnection, V8_STRING_LIMIT, type OpenOptions, type SqliteConnection } from './connection.js';
import { SqliteContentSource } from './content-source.js';
import { compactionPlan } from './event-compaction.js';
import { SessionMessageSource, usesSessionMessages } from './session-message-source.js';
import { exportSessions } from './session-export.js';
import { payloadOf, payloadSum, sessionTrees, sessionVersions, statement, type PayloadRow } from './rows.js';

/**
 * The row an attachment reference points into: a part (`prt_…`), or in the newer layout a whole
 * message (`msg_…` in session_message) or, failing that, the prompt that carried it (session_input).
 */
function attachmentHolder(conn: SqliteConnection, id: string): { table: string; row: Pick<PayloadRow, 'id' | 'bytes' | 'data'> } | null {
  for (const [table, column] of [
    ['part', 'data'],
    ['session_message', 'data'],
    ['session_input', 'prompt'],
  ] as const) {
    if (!conn.schema.tables.has(table)) continue;
    const row = statement(conn.db, `SELECT id, octet_length(${column}) AS bytes, NULL AS data FROM "${table}" WHERE id = ?`).get(id) as Pick<PayloadRow, 'id' | 'bytes' | 'data'> | undefined;
    if (row) return { table: column === 'data' ? table : `${table}:${column}`, row };
  }
  return null;
}

/** Largest snapshot `stats` compares with its row (SQLite's memory for a compare is several times it). */
const STATS_COMPARE_LIMIT = 16 * 1024 * 1024;

/** Pages in use: what the file would be after a full reclaim. */
export function liveBytes(conn: SqliteConnection): number {
  const { db } = conn;
  const pageSize = db.pragma('page_size', { simple: true }) as number;
  return ((db.pragma('page_count', { simple: true }) as number) - (db.pragma('freelist_count', { simple: true }) as number)) * pageSize;
}

export class SqliteReader implements SessionReader {
  readonly kind = 'sqlite' as const;
  readonly pagesCacheable = true;
  readonly conn: SqliteConnection;

  constructor(conn: SqliteConnection) {
    this.conn = conn;
  }

  static open(path: string, options: Omit<OpenOptions, 'readonly'> = {}): SqliteReader {
    return new SqliteReader(openConnection(path, { ...options, readonly: true }));
  }

  get location(): string {
    return this.conn.path;
  }

  private has(table: string): boolean {
    return this.conn.schema.tables.has(table);
  }

  /** Runs a read, mapping SQLite's failures to one-line errors. */
  private async read<T>(fn: () => T | Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw mapSqliteError(error, this.conn.path);
    }
  }

  dataVersion(): Promise<number> {
    return this.read(() => this.conn.db.pragma('data_version', { simple: true }) as number);
  }

  stats(options: StatsOptions = {}): Promise<StatsResult> {
    return this.read(() => this.statsNow(options));
  }

  private statsNow(options: StatsOptions): StatsResult {
    const { db, path, readableLimit } = this.conn;
    const fileBytes = statSync(path).size;
    const walBytes = existsSync(`${path}-wal`) ? statSync(`${path}-wal`).size : 0;
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    const freePages = db.pragma('freelist_count', { simple: true }) as number;
    const autoVacuumMode = db.pragma('auto_vacuum', { simple: true }) as number;
    const count = (sql: string): number => db.prepare(sql).pluck().get() as number;

    const tables: StatsResult['tables'] = [];
    for (const [name, payload] of [
      ['session', 'coalesce(octet_length(summary_diffs),0) + coalesce(octet_length(revert),0)'],
      ['message', 'octet_length(data)'],
      ['part', 'octet_length(data)'],
      ['session_message', 'octet_length(data)'],
      ['session_input', 'octet_length(prompt)'],
      ['session_context_epoch', 'coalesce(octet_length(baseline),0) + coalesce(octet_length(snapshot),0)'],
      ['event', 'octet_length(data)'],
      ['todo', 'octet_length(content)'],
    ] as const) {
      if (!this.has(name)) continue;
      if (name === 'session' && !this.conn.schema.sessionColumns.has('summary_diffs')) continue;
      const row = db.prepare(`SELECT count(*) AS rows, coalesce(sum(${payload}), 0) AS bytes FROM "${name}"`).get() as { rows: number; bytes: number };
      tables.push({ name, rows: row.rows, payloadBytes: row.bytes });
    }

    const oversize: OversizeValue[] = [];
    for (const [table, sessionColumn, column] of [
      ['part', 'session_id', 'data'],
      ['message', 'session_id', 'data'],
      ['session_message', 'session_id', 'data'],
      ['session_input', 'session_id', 'prompt'],
      ['event', 'aggregate_id', 'data'],
    ] as const) {
      if (!this.has(table)) continue;
      const rows = db
        .prepare(`SELECT id, ${sessionColumn} AS sessionId, octet_length(${column}) AS bytes FROM "${table}" WHERE octet_length(${column}) > ?`)
        .all(V8_STRING_LIMIT) as { id: string; sessionId: string | null; bytes: number }[];
      for (const row of rows) oversize.push({ table, ...row, readable: row.bytes <= readableLimit });
    }

    // Attachments: only parts that mention a data URL are read, one at a time, as Buffers.
    let attachmentCount = 0;
    let attachmentBytes = 0;
    let encodedBytes = 0;
    // In the newer layout a prompt's files sit in the message and again in its session_input row:
    // each copy is counted, since each takes its place on disk.
    for (const [table, column] of [
      ['part', 'data'],
      ['session_message', 'data'],
      ['session_input', 'prompt'],
    ] as const) {
      if (!this.has(table)) continue;
      const withData = db.prepare(`SELECT id, CAST(${column} AS BLOB) AS data FROM "${table}" WHERE octet_length(${column}) <= ? AND instr(${column}, '"data:') > 0`);
      for (const row of withData.iterate(readableLimit) as IterableIterator<{ id: string; data: Buffer }>) {
        try {
          for (const span of findAttachments(row.data, row.id)) {
            attachmentCount++;
            attachmentBytes += span.decodedBytes;
            encodedBytes += span.end - span.start;
          }
        } catch {
          // a malformed row is reported by `show`, not counted here
        }
      }
    }

    // Values too big to compare are left out (kept): SQLite needs ~8x a value to compare it.
    const plan = this.has('event') ? compactionPlan(this.conn, { maxCompareBytes: STATS_COMPARE_LIMIT }) : emptyCompactionPlan();
    const largestLimit = options.largest ?? 10;
    // A session's own rows (every content table, as in `list`) and its event log.
    const eventTerm = this.has('event') ? ' + coalesce((SELECT sum(octet_length(data)) FROM event WHERE aggregate_id = s.id), 0)' : '';
    const largest = db
      .prepare(`SELECT s.id, s.title, ${this.sessionBytesTerms('s.id').join(' + ')}${eventTerm} AS bytes FROM session s ORDER BY bytes DESC, s.id LIMIT ?`)
      .all(largestLimit) as { id: string; title: string; bytes: number }[];

    return {
      path,
      schema: this.conn.schema.version,
      layout: this.conn.schema.layout,
      fileBytes,
      walBytes,
      freeBytes: freePages * pageSize,
      pageSize,
      autoVacuum: autoVacuumMode === 2 ? 'incremental' : autoVacuumMode === 1 ? 'full' : 'none',
      sessions: count('SELECT count(*) FROM session'),
      rootSessions: count('SELECT count(*) FROM session WHERE parent_id IS NULL'),
      // A message of the newer layout is a session_message row (each session is in one layout).
      messages: count('SELECT count(*) FROM message') + (this.has('session_message') ? count('SELECT count(*) FROM session_message') : 0),
      parts: count('SELECT count(*) FROM part'),
      events: this.has('event') ? count('SELECT count(*) FROM event') : 0,
      attachments: { count: attachmentCount, bytes: attachmentBytes, encodedBytes },
      tables,
      largest,
      oversize,
      warnings: crossedThresholds(fileBytes + walBytes, options.warnAtMB, plan.compactable.bytes),
      eventsByType: plan.byType.map((t) => ({ type: t.type, count: t.count, bytes: t.bytes })),
      compactableBytes: plan.compactable.bytes,
      files: dataFolderPlaces(this.conn, { freeBytes: freePages * pageSize }),
    };
  }

  /**
   * Bytes each session holds now: its messages' and parts' data, and the TEXT and BLOB values of
   * its other content tables (OpenCode 1.18's session_message, ...). Index-backed; the event log
   * is sized in `stats`.
   */
  private sessionBytes(ids: string[]): Map<string, number> {
    const rows = statement(this.conn.db, `SELECT ids.value AS id, ${this.sessionBytesTerms('ids.value').join(' + ')} AS bytes FROM json_each(?) AS ids`).all(JSON.stringify(ids)) as {
      id: string;
      bytes: number;
    }[];
    return new Map(rows.map((r) => [r.id, r.bytes]));
  }

  /** SQL terms adding up the bytes a session (its id in `idExpression`) holds, one term a table. */
  private sessionBytesTerms(idExpression: string): string[] {
    const terms = [
      `coalesce((SELECT sum(octet_length(data)) FROM message WHERE session_id = ${idExpression}), 0)`,
      `coalesce((SELECT sum(octet_length(data)) FROM part WHERE session_id = ${idExpression}), 0)`,
    ];
    for (const table of this.conn.schema.sessionTables.tables) {
      if (table.role !== 'rows' || EVENT_LOG_TABLES.includes(table.table) || !table.indexed) continue;
      terms.push(`coalesce((SELECT sum(${payloadSum(this.conn, table.table)}) FROM "${table.table}" WHERE "${table.key}" = ${idExpression}), 0)`);
    }
    return terms;
  }

  listSessions(options: PageOptions = {}): Promise<ListResult> {
    return this.read(() => {
      const limit = options.limit ?? DEFAULT_SESSION_PAGE;
      const archived = this.conn.schema.sessionColumns.has('time_archived') ? 'time_archived' : 'NULL';
      const columns = `id, parent_id AS parentId, title, time_created AS timeCreated, time_updated AS timeUpdated, ${archived} AS timeArchived`;
      // OpenCode lists by time_updated; ids wrapped in 2026-08 so the id only breaks ties.
      let rows: Omit<SessionSummary, 'bytes'>[];
      if (options.cursor) {
        const [updated, id] = decodeSessionCursor(options.cursor);
        rows = statement(
          this.conn.db,
          `SELECT ${columns} FROM session WHERE time_updated < ? OR (time_updated = ? AND id < ?) ORDER BY time_updated DESC, id DESC LIMIT ?`,
        ).all(updated, updated, id, limit + 1) as Omit<SessionSummary, 'bytes'>[];
      } else {
        rows = statement(this.conn.db, `SELECT ${columns} FROM session ORDER BY time_updated DESC, id DESC LIMIT ?`).all(limit + 1) as Omit<SessionSummary, 'bytes'>[];
      }
      const page = rows.slice(0, limit);
      const bytes = this.sessionBytes(page.map((r) => r.id));
      const last = page[page.length - 1];
      return {
        sessions: page.map((r) => ({ ...r, bytes: bytes.get(r.id) ?? 0 })),
        nextCursor: rows.length > limit && last ? encodeCursor([last.timeUpdated, last.id]) : null,
      };
    });
  }

  showSession(sessionId: string, options: PageOptions = {}): Promise<ShowResult> {
    // A session is read from exactly the table that holds it: session_message when it has rows there.
    return this.read(() => buildShowPage(usesSessionMessages(this.conn, sessionId) ? new SessionMessageSource(this.conn) : new SqliteContentSource(this.conn), sessionId, options));
  }

  extractAttachment(requested: string, cacheDir: string, out?: string): Promise<AttachmentResult> {
    return this.read(() => {
      const { partId, index } = parseAttachmentRef(requested);
      const ref = attachmentRefName(partId, index);
      const holder = attachmentHolder(this.conn, partId);
      if (!holder) throw new SkError('not-found', `no part ${partId} in ${this.conn.path}`);
      const buf = payloadOf(this.conn, holder.table, holder.row);
      const spans = findAttachments(buf, partId);
      const span = spans[index];
      if (!span) {
        const link = /"(?:url|uri)":"(file:\/\/[^"]{1,300})"/.exec(buf.toString('utf8', 0, Math.min(buf.length, 64 * 1024)))?.[1];
        if (link && spans.length === 0) throw new SkError('not-found', `${partId} links to ${link}: a file on disk, not an attachment stored in the database`);
        throw new SkError('not-found', `part ${partId} has ${spans.length} attachment${spans.length === 1 ? '' : 's'}, no number ${index}`);
      }
      const cache = new AttachmentCache(cacheDir);
      // With --out the bytes go straight to the user's file, not through the cache and a copy.
      const file = cache.writeSpan(buf, span, ref, `part ${partId} attachment ${index}`, out);
      return { ref, path: file.path, bytes: file.bytes, sha256: file.sha256, mime: span.mime, filename: attachmentFilename(buf, partId, ref) };
    });
  }

  missingSessions(ids: readonly string[]): Promise<string[]> {
    return this.read(() => {
      const present = sessionVersions(this.conn, ids);
      return ids.filter((id) => !present.has(id));
    });
  }

  sessionTrees(roots: readonly string[]): Promise<string[]> {
    return this.read(() => sessionTrees(this.conn, roots));
  }

  sessionVersions(ids: readonly string[]): Promise<Map<string, number>> {
    return this.read(() => sessionVersions(this.conn, ids));
  }

  sessionCounts(ids: readonly string[]): Promise<Map<string, SessionCounts>> {
    return this.read(() => {
      const counts = statement(
        this.conn.db,
        `SELECT (SELECT count(*) FROM message WHERE session_id = @id) AS messages, (SELECT count(*) FROM part WHERE session_id = @id) AS parts`,
      );
      return new Map(ids.map((id) => [id, counts.get({ id }) as SessionCounts]));
    });
  }

  contentBytes(ids?: readonly string[]): Promise<number> {
    return this.read(() => {
      const where = ids ? 'WHERE session_id IN (SELECT value FROM json_each(?))' : '';
      const args = ids ? [JSON.stringify(ids)] : [];
      const sum = (table: string): number => statement(this.conn.db, `SELECT coalesce(sum(octet_length(data)), 0) FROM ${table} ${where}`).pluck().get(...args) as number;
      return sum('message') + sum('part');
    });
  }

  allSessionIds(): Promise<string[]> {
    return this.read(() => statement(this.conn.db, 'SELECT id FROM session ORDER BY id').pluck().all() as string[]);
  }

  rootsCreatedBefore(cutoff: number): Promise<string[]> {
    return this.read(
      () => statement(this.conn.db, 'SELECT id FROM session WHERE parent_id IS NULL AND time_created < ? ORDER BY time_created, id').pluck().all(cutoff) as string[],
    );
  }

  storeSize(): Promise<StoreSize> {
    return this.read(() => ({
      liveBytes: liveBytes(this.conn),
      rootSessions: statement(this.conn.db, 'SELECT count(*) FROM session WHERE parent_id IS NULL').pluck().get() as number,
      eventLogMark: this.has('event') ? ((statement(this.conn.db, 'SELECT coalesce(max(rowid), 0) FROM event').pluck().get() as number) ?? 0) : 0,
    }));
  }

  oldestRoot(): Promise<{ created: number | null; updated: number | null }> {
    return this.read(
      () =>
        statement(this.conn.db, 'SELECT min(time_created) AS created, min(time_updated) AS updated FROM session WHERE parent_id IS NULL').get() as {
          created: number | null;
          updated: number | null;
        },
    );
  }

  /**
   * Per-root facts for the planner: a root with its children, times taken as the latest in the
   * tree. With `withBytes`, each root's bytes are its tree's payload scaled by the file's overhead,
   * so that evicting it frees about that much once reclaimed.
   */
  retentionFacts(withBytes: boolean): Promise<RetentionFacts> {
    return this.read(() => {
      const { db, schema } = this.conn;
      const archived = schema.sessionColumns.has('time_archived') ? 'time_archived' : 'NULL';
      const rows = db
        .prepare(`SELECT id, parent_id AS parentId, title, time_created AS timeCreated, time_updated AS timeUpdated, ${archived} AS timeArchived FROM session`)
        .all() as SessionRowFacts[];
      // Sessions of the newer layout never touch their session row again: their activity is in session_message.
      const activity = new Map<string, number>();
      for (const [table, column] of [
        ['session_message', 'time_updated'],
        ['session_input', 'time_created'],
      ] as const) {
        if (!this.has(table)) continue;
        for (const r of db.prepare(`SELECT session_id AS id, max(${column}) AS t FROM "${table}" GROUP BY session_id`).all() as { id: string; t: number }[]) {
          activity.set(r.id, Math.max(activity.get(r.id) ?? 0, r.t));
        }
      }
      for (const row of rows) row.timeUpdated = Math.max(row.timeUpdated, activity.get(row.id) ?? 0);
      const storeBytes = liveBytes(this.conn);
      return { facts: familyFacts(rows, withBytes ? this.freedBytes(storeBytes) : new Map(), 1), storeBytes };
    });
  }

  /**
   * What evicting each session would free once reclaimed. A row's overflow pages are counted as
   * SQLite lays them out (whole pages, nearly exact: attachments live there); what stays on the
   * b-tree pages is scaled so that, over every session, the two add up to the pages in use, which
   * spreads indexes and page slack over the rows that cause them.
   */
  private freedBytes(storeBytes: number): Map<string, number> {
    const { db, schema } = this.conn;
    const page = db.pragma('page_size', { simple: true }) as number;
    const maxLocal = page - 35;
    const minLocal = Math.floor(((page - 12) * 32) / 255) - 23;
    const usable = page - 4;
    // A record is its payload columns plus ids, times and its header: about 64 bytes more.
    const localOf = `CASE WHEN b <= ${maxLocal} THEN b WHEN ${minLocal} + ((b - ${minLocal}) % ${usable}) <= ${maxLocal} THEN ${minLocal} + ((b - ${minLocal}) % ${usable}) ELSE ${minLocal} END`;
    const overflow = new Map<string, number>();
    const local = new Map<string, number>();
    let overflowTotal = 0;
    let localTotal = 0;
    for (const table of schema.sessionTables.tables) {
      const payload = table.role === 'content' ? 'coalesce(octet_length(data), 0)' : payloadSum(this.conn, table.table);
      const sql = `WITH r AS (SELECT "${table.key}" AS id, ${payload} + 64 AS b FROM "${table.table}")
        SELECT id, sum((b - (${localOf}) + ${usable - 1}) / ${usable} * ${page}) AS o, sum(${localOf}) AS l FROM r GROUP BY id`;
      for (const r of db.prepare(sql).all() as { id: string; o: number; l: number }[]) {
        overflow.set(r.id, (overflow.get(r.id) ?? 0) + r.o);
        local.set(r.id, (local.get(r.id) ?? 0) + r.l);
        overflowTotal += r.o;
        localTotal += r.l;
      }
    }
    const scale = localTotal > 0 ? Math.max(1, (storeBytes - overflowTotal) / localTotal) : 1;
    const freed = new Map<string, number>();
    for (const [id, l] of local) freed.set(id, Math.round((overflow.get(id) ?? 0) + l * scale));
    return freed;
  }

  compactionPlan(options: PlanOptions = {}): Promise<CompactionPlan> {
    return this.read(() => compactionPlan(this.conn, options));
  }

  /** The sessions' rows, one session after another; SQLite's failures mapped to one-line errors. */
  *exportSessions(ids: readonly string[]): Generator<SessionItem> {
    try {
      yield* exportSessions(this.conn, ids);
    } catch (error) {
      throw mapSqliteError(error, this.conn.path);
    }
  }

  async close(): Promise<void> {
    this.conn.db.close();
  }
}
