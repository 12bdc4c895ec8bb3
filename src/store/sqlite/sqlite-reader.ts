/**
 * OpenCode's own file, read with the memory rules of DESIGN.md section 3. Payload columns are
 * sized with octet_length (which reads no payload), fetched as BLOBs (Buffers outside the V8 heap)
 * one large value at a time, and reduced before anything is parsed.
 */
import { existsSync, statSync } from 'node:fs';
import type { AttachmentResult, ListResult, OversizeValue, PageOptions, SessionSummary, ShowResult, StatsOptions, StatsResult } from '../../core/api.js';
import { decodeSessionCursor, encodeCursor } from '../../core/cursor.js';
import { SkError } from '../../core/errors.js';
import { DEFAULT_SESSION_PAGE } from '../../core/page-rules.js';
import { reducePartChunks } from '../../core/part-reduce.js';
import { attachmentFilename, attachmentRefName, findAttachmentRef, findAttachments, parseAttachmentRef, type AttachmentSpan } from '../../core/part-scan.js';
import { familyFacts, type SessionRowFacts } from '../../core/planner.js';
import { crossedThresholds } from '../../core/thresholds.js';
import { AttachmentCache, type CachedFile, type EntryWriter } from '../attachment-cache.js';
import { buildShowPage } from '../page-builder.js';
import type { OpenedAttachment, RetentionFacts, SessionCounts, SessionReader, StoreSize } from '../reader.js';
import type { SessionItem } from '../session-items.js';
import { mapSqliteError, openConnection, V8_STRING_LIMIT, type OpenOptions, type SqliteConnection } from './connection.js';
import { SqliteContentSource } from './content-source.js';
import { exportSessions } from './session-export.js';
import { defaultIndexDir, everyPart, fileState, PartIndex, type UnindexedPart } from './part-index.js';
import { checkReadable, payloadOf, sessionTrees, sessionVersions, statement, type PayloadRow } from './rows.js';
import { decodeStoredAttachment, findStoredAttachments, valueChunks } from './value-chunks.js';

/** Values up to this size are read whole (a Buffer, freed at once); larger ones in chunks when sk_chunks is loaded. */
export const WHOLE_READ_BYTES = 1024 * 1024;
/** Stats remember at least this many of the largest sessions, so any `--largest` up to it is answered from the memo. */
const LARGEST_REMEMBERED = 100;

/** Payload bytes per table and per session: what stats, the planner and the dialog size things by. */
interface StoreSizes {
  tables: Record<'message' | 'part' | 'event', { rows: number; bytes: number; maxBytes: number }>;
  /** [session id, bytes of its messages, parts and events], every id that has rows. */
  sessions: [string, number][];
}

/** Stats as remembered for one file state: all but what depends on the caller's options. */
interface RememberedStats {
  largestLimit: number;
  stats: Omit<StatsResult, 'warnings'>;
}

export interface ReaderOptions extends Omit<OpenOptions, 'readonly'> {
  /** Folder of our part index (default beside the attachment cache); null for none. */
  indexDir?: string | null;
}

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
  /** Where our index lives (null: none); it is opened when first needed, so `list` never pays for it. */
  private readonly indexDir: string | null;
  private opened: PartIndex | null | undefined;

  constructor(conn: SqliteConnection, indexDir: string | null = null) {
    this.conn = conn;
    this.indexDir = indexDir;
  }

  static open(path: string, options: ReaderOptions = {}): SqliteReader {
    const { indexDir, ...open } = options;
    return new SqliteReader(openConnection(path, { ...open, readonly: true }), indexDir === undefined ? defaultIndexDir() : indexDir);
  }

  /** Our index beside the attachment cache, or null (none wanted, or it cannot be opened). */
  get index(): PartIndex | null {
    if (this.opened === undefined) this.opened = PartIndex.open(this.conn, this.indexDir);
    return this.opened;
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
    const largestLimit = options.largest ?? 10;
    // The state is read first: figures read after it are never filed under an older one.
    const state = this.index ? fileState(this.conn) : null;
    const remembered = state ? this.index?.memo<RememberedStats>('stats', state) : undefined;
    let base = remembered && remembered.largestLimit >= largestLimit ? remembered : undefined;
    if (!base) {
      base = { largestLimit: Math.max(largestLimit, LARGEST_REMEMBERED), stats: this.computeStats(Math.max(largestLimit, LARGEST_REMEMBERED), state) };
      if (state) this.index?.remember('stats', state, base);
    }
    const { stats } = base;
    return {
      ...stats,
      largest: stats.largest.slice(0, largestLimit),
      valueReads: this.conn.valueReads,
      warnings: crossedThresholds(stats.fileBytes + stats.walBytes, options.warnAtMB),
    };
  }

  private computeStats(largestLimit: number, state: string | null): Omit<StatsResult, 'warnings'> {
    const { db, path, readableLimit } = this.conn;
    const fileBytes = statSync(path).size;
    const walBytes = existsSync(`${path}-wal`) ? statSync(`${path}-wal`).size : 0;
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    const freePages = db.pragma('freelist_count', { simple: true }) as number;
    const autoVacuumMode = db.pragma('auto_vacuum', { simple: true }) as number;
    const count = (sql: string): number => db.prepare(sql).pluck().get() as number;
    const sizes = this.storeSizes(state);

    const tables: StatsResult['tables'] = [];
    const small = (name: string, payload: string): void => {
      const row = db.prepare(`SELECT count(*) AS rows, coalesce(sum(${payload}), 0) AS bytes FROM "${name}"`).get() as { rows: number; bytes: number };
      tables.push({ name, rows: row.rows, payloadBytes: row.bytes });
    };
    if (this.conn.schema.sessionColumns.has('summary_diffs')) small('session', 'coalesce(octet_length(summary_diffs),0) + coalesce(octet_length(revert),0)');
    for (const name of ['message', 'part', 'event'] as const) {
      if (this.has(name)) tables.push({ name, rows: sizes.tables[name].rows, payloadBytes: sizes.tables[name].bytes });
    }
    if (this.has('todo')) small('todo', 'octet_length(content)');

    // Values too big for V8: looked for only in tables whose largest value is one.
    const oversize: OversizeValue[] = [];
    for (const [table, sessionColumn] of [
      ['part', 'session_id'],
      ['message', 'session_id'],
      ['event', 'aggregate_id'],
    ] as const) {
      if (!this.has(table) || sizes.tables[table].maxBytes <= V8_STRING_LIMIT) continue;
      const rows = db
        .prepare(`SELECT id, ${sessionColumn} AS sessionId, octet_length(data) AS bytes FROM "${table}" WHERE octet_length(data) > ?`)
        .all(V8_STRING_LIMIT) as { id: string; sessionId: string | null; bytes: number }[];
      for (const row of rows) oversize.push({ table, ...row, readable: row.bytes <= readableLimit });
    }

    // The largest sessions: ties by id, sessions without rows at 0, as the old single query ordered them.
    const bytesOf = new Map(sizes.sessions);
    const largest = (db.prepare('SELECT id, title FROM session').all() as { id: string; title: string }[])
      .map((r) => ({ id: r.id, title: r.title, bytes: bytesOf.get(r.id) ?? 0 }))
      .sort((a, b) => b.bytes - a.bytes || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .slice(0, largestLimit);

    return {
      path,
      schema: this.conn.schema.version,
      fileBytes,
      walBytes,
      freeBytes: freePages * pageSize,
      pageSize,
      autoVacuum: autoVacuumMode === 2 ? 'incremental' : autoVacuumMode === 1 ? 'full' : 'none',
      sessions: count('SELECT count(*) FROM session'),
      rootSessions: count('SELECT count(*) FROM session WHERE parent_id IS NULL'),
      messages: sizes.tables.message.rows,
      parts: sizes.tables.part.rows,
      events: sizes.tables.event.rows,
      attachments: this.attachmentTotals(),
      tables,
      largest,
      oversize,
      valueReads: this.conn.valueReads,
    };
  }

  /**
   * Rows, payload bytes and the largest value per table, and bytes per session, from octet_length
   * (no payload is read): remembered per file state, shared by stats and the planner.
   */
  private storeSizes(state: string | null): StoreSizes {
    const remembered = state ? this.index?.memo<StoreSizes>('sizes', state) : undefined;
    if (remembered) return remembered;
    const { db } = this.conn;
    const perSession = new Map<string, number>();
    const empty = { rows: 0, bytes: 0, maxBytes: 0 };
    const tables: StoreSizes['tables'] = { message: { ...empty }, part: { ...empty }, event: { ...empty } };
    const groups: [keyof StoreSizes['tables'], string][] = [
      // Grouped along their session index, which keeps a session's rows together.
      ['message', 'SELECT session_id AS id, count(*) AS n, coalesce(sum(octet_length(data)), 0) AS b, coalesce(max(octet_length(data)), 0) AS m FROM message GROUP BY session_id'],
      ['part', 'SELECT session_id AS id, count(*) AS n, coalesce(sum(octet_length(data)), 0) AS b, coalesce(max(octet_length(data)), 0) AS m FROM part GROUP BY session_id'],
      // Events of sessions that run at once interleave: sizes are taken in one scan first, so the
      // grouping sorts sizes, not rows (grouping along the index reads the table out of order).
      [
        'event',
        `WITH sized AS MATERIALIZED (SELECT aggregate_id AS id, octet_length(data) AS len FROM event)
         SELECT id, count(*) AS n, coalesce(sum(len), 0) AS b, coalesce(max(len), 0) AS m FROM sized GROUP BY id`,
      ],
    ];
    for (const [table, sql] of groups) {
      if (!this.has(table)) continue;
      const totals = tables[table];
      for (const row of db.prepare(sql).iterate() as IterableIterator<{ id: string | null; n: number; b: number; m: number }>) {
        totals.rows += row.n;
        totals.bytes += row.b;
        totals.maxBytes = Math.max(totals.maxBytes, row.m);
        if (row.id !== null) perSession.set(row.id, (perSession.get(row.id) ?? 0) + row.b);
      }
    }
    const sizes: StoreSizes = { tables, sessions: [...perSession] };
    if (state) this.index?.remember('sizes', state, sizes);
    return sizes;
  }

  /**
   * Attachment count and decoded bytes: from our index for parts it knows in this version, and by
   * reading the others (small values whole and only when SQLite's instr finds a data URL, large
   * ones in chunks), whose facts are then filed.
   */
  private attachmentTotals(): StatsResult['attachments'] {
    const index = this.index;
    const known = index?.totals();
    const totals = { count: known?.count ?? 0, bytes: known?.decoded ?? 0, encodedBytes: known?.encoded ?? 0 };
    if (known && known.missing === 0) return totals;
    const rows = index ? index.unindexed(WHOLE_READ_BYTES) : everyPart(this.conn, WHOLE_READ_BYTES);
    for (const row of rows) {
      const spans = this.spansOfRow(row);
      if (!spans) continue;
      for (const span of spans) {
        totals.count++;
        totals.bytes += span.decodedBytes;
        totals.encodedBytes += span.end - span.start;
      }
      index?.record({ row: row.row, id: row.id, timeUpdated: row.timeUpdated, bytes: row.bytes, spans });
    }
    index?.flush();
    return totals;
  }

  /** One part's attachments, or null when they cannot be read now (too big for this build, changed meanwhile). */
  private spansOfRow(row: UnindexedPart): AttachmentSpan[] | null {
    if (row.bytes < 0 || row.mentions === 0) return [];
    try {
      if (row.data) return findAttachments(row.data, row.id);
      if (row.bytes > this.conn.readableLimit) return null;
      return findStoredAttachments(this.conn.db, 'part', 'data', row.row, row.id);
    } catch (error) {
      // A malformed part is reported by `show`, not counted here; anything else is read next time.
      return error instanceof SkError && error.code === 'bad-part' ? [] : null;
    }
  }

  /** Payload bytes of each session's own messages and parts (index-backed; events are in `stats`). */
  private sessionBytes(ids: string[]): Map<string, number> {
    const rows = statement(
      this.conn.db,
      `SELECT ids.value AS id,
         coalesce((SELECT sum(octet_length(data)) FROM message WHERE session_id = ids.value), 0) +
         coalesce((SELECT sum(octet_length(data)) FROM part WHERE session_id = ids.value), 0) AS bytes
       FROM json_each(?) AS ids`,
    ).all(JSON.stringify(ids)) as { id: string; bytes: number }[];
    return new Map(rows.map((r) => [r.id, r.bytes]));
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
    return this.read(() => buildShowPage(new SqliteContentSource(this.conn, WHOLE_READ_BYTES, this.index), sessionId, options));
  }

  /** Decodes one attachment into the cache, or straight into `out` when given (no cache entry then). */
  async extractAttachment(requested: string, cacheDir: string, out?: string): Promise<AttachmentResult> {
    if (out) return this.read(() => this.decode(requested, new AttachmentCache(cacheDir), (cache, ref) => cache.writerFor(ref, out)));
    const opened = await this.openAttachment(requested, cacheDir);
    await opened.handle.close();
    return opened.result;
  }

  /** Decodes one attachment into the cache and hands back the handle it was written through, open. */
  async openAttachment(requested: string, cacheDir: string): Promise<OpenedAttachment> {
    const cache = new AttachmentCache(cacheDir);
    const { partId, index } = parseAttachmentRef(requested);
    const { writer, handle } = await cache.createEntry(attachmentRefName(partId, index));
    try {
      const result = await this.read(() => this.decode(requested, cache, () => writer));
      return { result, handle };
    } catch (error) {
      // Removes what was written (nothing, for a part not found) and closes the handle.
      writer.abort();
      throw error;
    }
  }

  /**
   * Decodes attachment `requested` into the writer `open` gives. With sk_chunks the value is read
   * a chunk at a time and only up to the attachment's end; the filename is then read from the
   * ranges around the payload. Without it the value is read whole, as a Buffer, as before.
   */
  private decode(requested: string, cache: AttachmentCache, open: (cache: AttachmentCache, ref: string) => EntryWriter): AttachmentResult {
    const { partId, index } = parseAttachmentRef(requested);
    const ref = attachmentRefName(partId, index);
    const part = statement(this.conn.db, 'SELECT rowid AS row, id, octet_length(data) AS bytes, NULL AS data FROM part WHERE id = ?').get(partId) as
      | (Pick<PayloadRow, 'id' | 'bytes' | 'data'> & { row: number })
      | undefined;
    if (!part) throw new SkError('not-found', `no part ${partId} in ${this.conn.path}`);
    if (this.conn.valueReads === 'chunked' && part.bytes > WHOLE_READ_BYTES) {
      checkReadable(this.conn, 'part', part);
      let span: AttachmentSpan | undefined;
      const file: CachedFile = AttachmentCache.fill(open(cache, ref), (sink) => {
        span = decodeStoredAttachment(this.conn.db, 'part', 'data', part.row, { partId, index, sink }).span;
      });
      const found = span as AttachmentSpan;
      return { ref, path: file.path, bytes: file.bytes, sha256: file.sha256, mime: found.mime, filename: this.filenameAround(part.row, part.bytes, partId, ref, found) };
    }
    const buf = payloadOf(this.conn, 'part', part);
    const spans = findAttachments(buf, partId);
    const span = spans[index];
    if (!span) throw new SkError('not-found', `part ${partId} has ${spans.length} attachment${spans.length === 1 ? '' : 's'}, no number ${index}`);
    const file = cache.decodeSpanInto(open(cache, ref), buf, span, `part ${partId} attachment ${index}`);
    return { ref, path: file.path, bytes: file.bytes, sha256: file.sha256, mime: span.mime, filename: attachmentFilename(buf, partId, ref) };
  }

  /**
   * The filename OpenCode gave attachment `ref`: the part's JSON read around the payload just
   * decoded (its other attachments and long strings cut as they stream by), or null.
   */
  private filenameAround(row: number, bytes: number, partId: string, ref: string, span: AttachmentSpan): string | null {
    const db = this.conn.db;
    function* around(): Generator<{ bytes: Buffer; at: number }> {
      let at = 0;
      for (const chunk of valueChunks(db, 'part', 'data', row, { stop: span.payloadStart })) {
        yield { bytes: chunk, at };
        at += chunk.length;
      }
      // The payload's last two bytes carry its padding; the rest of it is left out.
      at = Math.max(span.payloadStart, span.end - 2);
      for (const chunk of valueChunks(db, 'part', 'data', row, { start: at, stop: bytes })) {
        yield { bytes: chunk, at };
        at += chunk.length;
      }
    }
    try {
      const scanned = reducePartChunks(around(), { partId, maxInlineString: 4096, previewBytes: 0 });
      return findAttachmentRef(scanned.value, ref)?.filename ?? null;
    } catch {
      // the attachment itself is intact; only its name is unknown
      return null;
    }
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
      const bytesBySession = new Map<string, number>();
      let payloadTotal = 0;
      if (withBytes) {
        const sizes = this.storeSizes(this.index ? fileState(this.conn) : null);
        for (const [id, bytes] of sizes.sessions) bytesBySession.set(id, bytes);
        payloadTotal = sizes.tables.message.bytes + sizes.tables.part.bytes + sizes.tables.event.bytes;
      }
      const storeBytes = liveBytes(this.conn);
      return { facts: familyFacts(rows, bytesBySession, payloadTotal > 0 ? Math.max(1, storeBytes / payloadTotal) : 1), storeBytes };
    });
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
    this.opened?.close();
    this.conn.db.close();
  }
}
