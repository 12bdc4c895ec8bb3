/**
 * OpenCode's own file, read with the memory rules of DESIGN.md section 3. Payload columns are
 * sized with octet_length (which reads no payload), fetched as BLOBs (Buffers outside the V8 heap)
 * one large value at a time, and reduced before anything is parsed.
 */
import type { SelectedSession, SessionSelector } from '../../core/selectors.js';
import type { TrimmedRows, TrimPlan } from '../../core/trim.js';
import { exportTrimmedRows } from './session-export.js';
import type { TrimRequest } from '../reader.js';
import { existsSync, statSync } from 'node:fs';
import type { CompactionPlan, PlanOptions } from '../../core/compaction.js';
import type { AttachmentResult, ListResult, OversizeValue, PageOptions, SessionSummary, ShowResult, StatsOptions, StatsResult } from '../../core/api.js';
import { decodeSessionCursor, encodeCursor } from '../../core/cursor.js';
import { SkError } from '../../core/errors.js';
import { DEFAULT_SESSION_PAGE } from '../../core/page-rules.js';
import { reducePartChunks } from '../../core/part-reduce.js';
import { attachmentFilename, attachmentRefName, findAttachmentRef, findAttachments, parseAttachmentRef, type AttachmentSpan } from '../../core/part-scan.js';
import type { SessionRowFacts } from '../../core/planner.js';
import type { SessionSpace } from '../../core/browse.js';
import { EVENT_LOG_TABLES } from '../../core/opencode-format.js';
import { crossedThresholds } from '../../core/thresholds.js';
import { AttachmentCache, type CachedFile, type EntryWriter } from '../attachment-cache.js';
import type { ChangeMarks, ExportOptions, OpenedAttachment, RetentionFacts, SessionCounts, SessionMark, SessionProjects, SessionReader, StoreSize } from '../reader.js';
import type { SessionItem } from '../session-items.js';
import { mapSqliteError, openConnection, V8_STRING_LIMIT, type OpenOptions, type SqliteConnection } from './connection.js';
import { contentBytesAside, contentBytesOf } from './content-bytes.js';
import { exportSessions } from './session-export.js';
import { defaultIndexDir, everyPart, fileState, PartIndex, rowsOf, type UnindexedPart } from './part-index.js';
import { checkReadable, payloadOf, payloadSum, sessionTrees, sessionVersions, statement, type PayloadRow } from './rows.js';
import { decodeStoredAttachment, findStoredAttachments, largeValueWritePath, valueChunks } from './value-chunks.js';

// What only some reads need loads with their first call: `list` starts without the data-folder
// walk, the event-log plan, the show page builder, selectors, trims and change marks.
const placesModule = () => import('./data-folder/places.js');
const eventCompaction = () => import('./event-compaction.js');

/** What `stats` calls of those modules, handed down once loaded: the event log's plan, or the empty one without a log. */
type CompactionPlanner = (conn: SqliteConnection, options: PlanOptions) => CompactionPlan;
type PlaceSizer = (typeof import('./data-folder/places.js'))['dataFolderPlaces'];

/** Values up to this size are read whole (a Buffer, freed at once); larger ones in chunks when sk_chunks is loaded. */
export const WHOLE_READ_BYTES = 1024 * 1024;
/** Stats remember at least this many of the largest sessions, so any `--largest` up to it is answered from the memo. */
const LARGEST_REMEMBERED = 100;

/** Stats as remembered for one file state: all but what depends on the caller's options. */
interface RememberedStats {
  largestLimit: number;
  stats: Omit<StatsResult, 'warnings' | 'files'>;
}

export interface ReaderOptions extends Omit<OpenOptions, 'readonly'> {
  /** Folder of our part index (default beside the attachment cache); null for none. */
  indexDir?: string | null;
}

/** A row an attachment can live in, with what sk_chunks needs to read it. */
interface AttachmentHolder {
  /** `payloadOf`'s name for it: the table, or `table:column`. */
  table: string;
  name: string;
  column: string;
  row: Pick<PayloadRow, 'id' | 'bytes' | 'data'> & { rowid: number };
}

/**
 * The row an attachment reference points into: a part (`prt_…`), or in the newer layout a whole
 * message (`msg_…` in session_message) or, failing that, the prompt that carried it (session_input).
 */
function attachmentHolder(conn: SqliteConnection, id: string): AttachmentHolder | null {
  for (const [table, column] of ATTACHMENT_COLUMNS) {
    if (!conn.schema.tables.has(table)) continue;
    const row = statement(conn.db, `SELECT rowid, id, octet_length(${column}) AS bytes, NULL AS data FROM "${table}" WHERE id = ?`).get(id) as AttachmentHolder['row'] | undefined;
    if (row) return { table: column === 'data' ? table : `${table}:${column}`, name: table, column, row };
  }
  return null;
}

/**
 * Where attachments are stored: parts, and in the newer layout whole messages and the prompts that
 * carried them (a prompt's files sit in its message and again in its session_input row).
 */
/**
 * Event-log bytes per session in one pass: a sum per session scans the whole log for each one
 * where event.aggregate_id has no index; the OFFSET keeps the sizes a co-routine, so the grouping
 * sorts lengths, not payloads.
 */
const EVENT_BYTES_PER_SESSION = `SELECT aggregate_id AS id, sum(len) AS b FROM (SELECT aggregate_id, octet_length(data) AS len FROM event LIMIT -1 OFFSET 0) GROUP BY aggregate_id`;

const ATTACHMENT_COLUMNS = [
  ['part', 'data'],
  ['session_message', 'data'],
  ['session_input', 'prompt'],
] as const;

/** The one-line refusal for an attachment a row does not hold: a link to a file on disk is named as such. */
function noAttachment(head: Buffer, partId: string, found: number, index: number): never {
  const link = /"(?:url|uri)":"(file:\/\/[^"]{1,300})"/.exec(head.toString('utf8', 0, Math.min(head.length, 64 * 1024)))?.[1];
  if (link && found === 0) throw new SkError('not-found', `${partId} links to ${link}: a file on disk, not an attachment stored in the database`);
  throw new SkError('not-found', `part ${partId} has ${found} attachment${found === 1 ? '' : 's'}, no number ${index}`);
}

/** Largest snapshot `stats` compares with its row (SQLite's memory for a compare is several times it). */
const STATS_COMPARE_LIMIT = 16 * 1024 * 1024;

/** Pages in use: what the file would be after a full reclaim. */
export function liveBytes(conn: SqliteConnection): number {
  const { db } = conn;
  const pageSize = db.pragma('page_size', { simple: true }) as number;
  return ((db.pragma('page_count', { simple: true }) as number) - (db.pragma('freelist_count', { simple: true }) as number)) * pageSize;
}

export class SqliteReader implements SessionReader, ChangeMarks {
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

  async stats(options: StatsOptions = {}): Promise<StatsResult> {
    const [{ dataFolderPlaces }, { compactionPlan }, { emptyCompactionPlan }] = await Promise.all([placesModule(), eventCompaction(), import('../../core/compaction.js')]);
    const planLog: CompactionPlanner = (conn, plan) => (this.has('event') ? compactionPlan(conn, plan) : emptyCompactionPlan());
    return this.read(() => this.statsNow(options, planLog, dataFolderPlaces));
  }

  private statsNow(options: StatsOptions, compactionPlan: CompactionPlanner, dataFolderPlaces: PlaceSizer): StatsResult {
    const largestLimit = options.largest ?? 10;
    // The state is read first: figures read after it are never filed under an older one.
    const state = this.index ? fileState(this.conn) : null;
    const remembered = state ? this.index?.memo<RememberedStats>('stats', state) : undefined;
    let base = remembered && remembered.largestLimit >= largestLimit ? remembered : undefined;
    if (!base) {
      const limit = Math.max(largestLimit, LARGEST_REMEMBERED);
      base = { largestLimit: limit, stats: this.computeStats(limit, compactionPlan) };
      if (state) this.index?.remember('stats', state, base);
    }
    // Fields in the order `--json` has always printed them, the ones added since at the end.
    const { eventsByType, compactableBytes, valueReads: _reads, ...stats } = base.stats;
    return {
      ...stats,
      largest: stats.largest.slice(0, largestLimit),
      warnings: crossedThresholds(stats.fileBytes + stats.walBytes, options.warnAtMB, compactableBytes),
      eventsByType,
      compactableBytes,
      valueReads: this.conn.valueReads,
      // The folder beside the file changes without the file: measured each time, never remembered.
      files: dataFolderPlaces(this.conn, { freeBytes: stats.freeBytes }),
      valueWrites: largeValueWritePath(this.conn.db),
    };
  }

  private computeStats(largestLimit: number, compactionPlan: CompactionPlanner): Omit<StatsResult, 'warnings' | 'files'> {
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

    // Attachments: parts from our index where it knows them, the rest read once (see attachmentTotals).
    const attachments = this.attachmentTotals();

    // Values too big to compare are left out (kept): SQLite needs ~8x a value to compare it.
    const plan = compactionPlan(this.conn, { maxCompareBytes: STATS_COMPARE_LIMIT });
    // A session's own rows (every content table, as in `list`) and its event log. The log is summed
    // in one pass: a sum per session scans the whole log for each one where event.aggregate_id has
    // no index (files of OpenCode before 1.18), minutes on a 1 GB file; the OFFSET keeps the sizes
    // a co-routine, so the grouping sorts lengths, not payloads.
    const events = this.has('event')
      ? {
          join: `LEFT JOIN (${EVENT_BYTES_PER_SESSION}) AS e ON e.id = s.id`,
          term: ' + coalesce(e.b, 0)',
        }
      : { join: '', term: '' };
    const largest = db
      .prepare(`SELECT s.id, s.title, ${this.sessionBytesTerms('s.id').join(' + ')}${events.term} AS bytes FROM session s ${events.join} ORDER BY bytes DESC, s.id LIMIT ?`)
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
      attachments,
      tables,
      largest,
      oversize,
      valueReads: this.conn.valueReads,
      eventsByType: plan.byType.map((t) => ({ type: t.type, count: t.count, bytes: t.bytes })),
      compactableBytes: plan.compactable.bytes,
    };
  }

  /**
   * Attachment count and decoded bytes. Parts: from our index for those it knows in this version,
   * the others read (small values whole and only when SQLite's instr finds a data URL, large ones
   * in chunks) and their facts filed. The newer layout's messages and prompts are read the same
   * way, without the index. Each copy of a file counts, since each takes its place on disk.
   */
  private attachmentTotals(): StatsResult['attachments'] {
    const index = this.index;
    const known = index?.totals();
    const totals = { count: known?.count ?? 0, bytes: known?.decoded ?? 0, encodedBytes: known?.encoded ?? 0 };
    const add = (spans: readonly AttachmentSpan[]): void => {
      for (const span of spans) {
        totals.count++;
        totals.bytes += span.decodedBytes;
        totals.encodedBytes += span.end - span.start;
      }
    };
    if (!known || known.missing > 0) {
      for (const row of index ? index.unindexed(WHOLE_READ_BYTES) : everyPart(this.conn, WHOLE_READ_BYTES)) {
        const spans = this.spansOfRow('part', 'data', row);
        if (!spans) continue;
        add(spans);
        index?.record({ row: row.row, id: row.id, timeUpdated: row.timeUpdated, bytes: row.bytes, spans });
      }
      index?.flush();
    }
    for (const [table, column] of ATTACHMENT_COLUMNS) {
      if (table === 'part' || !this.has(table)) continue;
      for (const row of rowsOf(this.conn, table, column, WHOLE_READ_BYTES)) add(this.spansOfRow(table, column, row) ?? []);
    }
    return totals;
  }

  /** One row's attachments, or null when they cannot be read now (too big for this build, changed meanwhile). */
  private spansOfRow(table: string, column: string, row: UnindexedPart): AttachmentSpan[] | null {
    if (row.bytes < 0 || row.mentions === 0) return [];
    try {
      if (row.data) return findAttachments(row.data, row.id);
      if (row.bytes > this.conn.readableLimit) return null;
      return findStoredAttachments(this.conn.db, table, column, row.row, row.id);
    } catch (error) {
      // A malformed row is reported by `show`, not counted here; anything else is read next time.
      return error instanceof SkError && error.code === 'bad-part' ? [] : null;
    }
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

  /**
   * What each session's bytes are made of, as the size check's chart splits the file: attachments
   * as stored (from the part index), its event log (one pass over `event`), and the rest of its
   * rows (text). Every session, subtasks apart; remembered per file state.
   */
  sessionSpace(): Promise<Map<string, SessionSpace>> {
    return this.read(() => {
      const state = this.index ? fileState(this.conn) : null;
      const remembered = state ? this.index?.memo<[string, SessionSpace][]>('space', state) : undefined;
      if (remembered) return new Map(remembered);
      // Files the facts of parts the index does not know yet (or, without an index, reads them).
      if (this.index) this.attachmentTotals();
      const attachments = this.index ? this.index.sessionEncoded() : this.attachmentsPerSession('part', 'data');
      // The newer layout's messages and prompts hold attachments too (never indexed: read as stats reads them).
      for (const [table, column] of ATTACHMENT_COLUMNS) {
        if (table === 'part' || !this.has(table)) continue;
        for (const [id, bytes] of this.attachmentsPerSession(table, column)) attachments.set(id, (attachments.get(id) ?? 0) + bytes);
      }
      const events = new Map<string, number>();
      if (this.has('event')) for (const r of statement(this.conn.db, EVENT_BYTES_PER_SESSION).all() as { id: string; b: number }[]) events.set(r.id, r.b);
      const space = new Map<string, SessionSpace>();
      const rows = statement(this.conn.db, `SELECT s.id, ${this.sessionBytesTerms('s.id').join(' + ')} AS bytes FROM session s`).all() as { id: string; bytes: number }[];
      for (const r of rows) {
        const a = attachments.get(r.id) ?? 0;
        space.set(r.id, { attachments: a, events: events.get(r.id) ?? 0, text: Math.max(0, r.bytes - a) });
      }
      if (state) this.index?.remember('space', state, [...space]);
      return space;
    });
  }

  /** Attachment bytes per session read from the rows themselves (no index to ask). */
  private attachmentsPerSession(table: string, column: string): Map<string, number> {
    const out = new Map<string, number>();
    const sessionOf = statement(this.conn.db, `SELECT session_id FROM "${table}" WHERE rowid = ?`).pluck();
    for (const row of table === 'part' ? everyPart(this.conn, WHOLE_READ_BYTES) : rowsOf(this.conn, table, column, WHOLE_READ_BYTES)) {
      const spans = this.spansOfRow(table, column, row) ?? [];
      const encoded = spans.reduce((n, span) => n + span.end - span.start, 0);
      if (encoded === 0) continue;
      const id = sessionOf.get(row.row) as string;
      out.set(id, (out.get(id) ?? 0) + encoded);
    }
    return out;
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

  async showSession(sessionId: string, options: PageOptions = {}): Promise<ShowResult> {
    const [{ buildShowPage }, { SqliteContentSource }, { SessionMessageSource, usesSessionMessages }] = await Promise.all([
      import('../page-builder.js'),
      import('./content-source.js'),
      import('./session-message-source.js'),
    ]);
    // A session is read from exactly the table that holds it: session_message when it has rows there.
    return this.read(() =>
      buildShowPage(
        usesSessionMessages(this.conn, sessionId)
          ? new SessionMessageSource(this.conn, WHOLE_READ_BYTES)
          : new SqliteContentSource(this.conn, WHOLE_READ_BYTES, this.index),
        sessionId,
        options,
      ),
    );
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
   * Decodes attachment `requested` into the writer `open` gives. With sk_chunks a large value is
   * read a chunk at a time and only up to the attachment's end, the filename then read from the
   * ranges around the payload; otherwise the value is read whole, as a Buffer, as before.
   */
  private decode(requested: string, cache: AttachmentCache, open: (cache: AttachmentCache, ref: string) => EntryWriter): AttachmentResult {
    const { partId, index } = parseAttachmentRef(requested);
    const ref = attachmentRefName(partId, index);
    const holder = attachmentHolder(this.conn, partId);
    if (!holder) throw new SkError('not-found', `no part ${partId} in ${this.conn.path}`);
    const { row } = holder;
    if (this.conn.valueReads === 'chunked' && row.bytes > WHOLE_READ_BYTES) {
      checkReadable(this.conn, holder.table, row);
      let span: AttachmentSpan | undefined;
      try {
        const file: CachedFile = AttachmentCache.fill(open(cache, ref), (sink) => {
          span = decodeStoredAttachment(this.conn.db, holder.name, holder.column, row.rowid, { partId, index, sink }).span;
        });
        const found = span as AttachmentSpan;
        return { ref, path: file.path, bytes: file.bytes, sha256: file.sha256, mime: found.mime, filename: this.filenameAround(holder, partId, ref, found) };
      } catch (error) {
        // No such attachment: maybe a link to a file on disk, said as such (its first 64 KiB tell).
        if (error instanceof SkError && error.code === 'not-found' && / has 0 attachments/.test(error.message)) {
          noAttachment(Buffer.concat([...valueChunks(this.conn.db, holder.name, holder.column, row.rowid, { stop: 64 * 1024 })]), partId, 0, index);
        }
        throw error;
      }
    }
    const buf = payloadOf(this.conn, holder.table, row);
    const spans = findAttachments(buf, partId);
    const span = spans[index];
    if (!span) noAttachment(buf, partId, spans.length, index);
    const file = cache.decodeSpanInto(open(cache, ref), buf, span, `part ${partId} attachment ${index}`);
    return { ref, path: file.path, bytes: file.bytes, sha256: file.sha256, mime: span.mime, filename: attachmentFilename(buf, partId, ref) };
  }

  /**
   * The filename OpenCode gave attachment `ref`: the row's JSON read around the payload just
   * decoded (its other attachments and long strings cut as they stream by), or null.
   */
  private filenameAround(holder: AttachmentHolder, partId: string, ref: string, span: AttachmentSpan): string | null {
    const { db } = this.conn;
    const { name, column, row } = holder;
    function* around(): Generator<{ bytes: Buffer; at: number }> {
      let at = 0;
      for (const chunk of valueChunks(db, name, column, row.rowid, { stop: span.payloadStart })) {
        yield { bytes: chunk, at };
        at += chunk.length;
      }
      // The payload's last two bytes carry its padding; the rest of it is left out.
      at = Math.max(span.payloadStart, span.end - 2);
      for (const chunk of valueChunks(db, name, column, row.rowid, { start: at, stop: row.bytes })) {
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
    return this.read(() => contentBytesOf(this.conn.db, ids ?? null));
  }

  contentBytesAside(ids?: readonly string[]): Promise<number> {
    const aside = contentBytesAside({ path: this.conn.path, ids: ids ?? null });
    // No thread (sources run as TypeScript) or a failed one: the same sum here.
    return aside ? aside.catch(() => this.contentBytes(ids)) : this.contentBytes(ids);
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

  sessionProjects(): Promise<SessionProjects> {
    return this.read(() => {
      const db = this.conn.db;
      const roots = db.prepare('SELECT id, project_id AS projectId FROM session WHERE parent_id IS NULL').all() as { id: string; projectId: string }[];
      const projects = this.has('project') ? (db.prepare('SELECT id, name, worktree FROM project ORDER BY id').all() as SessionProjects['projects']) : [];
      return { rootProject: new Map(roots.map((r) => [r.id, r.projectId])), projects };
    });
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
  async retentionFacts(withBytes: boolean): Promise<RetentionFacts> {
    const { familyFacts } = await import('../../core/planner.js');
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
      return { facts: familyFacts(rows, withBytes ? this.rememberedFreedBytes(storeBytes) : new Map(), 1), storeBytes };
    });
  }

  /** `freedBytes`, remembered per file state (they change with every commit, and only then). */
  private rememberedFreedBytes(storeBytes: number): Map<string, number> {
    const state = this.index ? fileState(this.conn) : null;
    const remembered = state ? this.index?.memo<[string, number][]>('freed', state) : undefined;
    if (remembered) return new Map(remembered);
    const freed = this.freedBytes(storeBytes);
    if (state) this.index?.remember('freed', state, [...freed]);
    return freed;
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
      // The OFFSET keeps r a co-routine: flattened into the grouping, SQLite's sorter would copy
      // every payload value instead of its size (seconds on a 1 GB file).
      const sql = `WITH r AS (SELECT "${table.key}" AS id, ${payload} + 64 AS b FROM "${table.table}" LIMIT -1 OFFSET 0)
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

  async compactionPlan(options: PlanOptions = {}): Promise<CompactionPlan> {
    const { compactionPlan } = await eventCompaction();
    return this.read(() => compactionPlan(this.conn, options));
  }

  /** Change marks from counters and times (session-marks.ts): what the mirror compares between polls. */
  async sessionMarks(ids?: readonly string[]): Promise<Map<string, SessionMark>> {
    const { sessionMarks } = await import('./session-marks.js');
    return this.read(() => sessionMarks(this.conn, ids ?? null));
  }

  async selectSessions(selector: SessionSelector, now: number): Promise<SelectedSession[]> {
    const { selectSessions } = await import('./selectors.js');
    return this.read(() => selectSessions(this.conn, selector, now, (id) => this.sessionBytesTerms(id)));
  }

  *exportTrimmedRows(trimmed: ReadonlyMap<string, TrimmedRows>): Generator<SessionItem> {
    try {
      yield* exportTrimmedRows(this.conn, trimmed);
    } catch (error) {
      throw mapSqliteError(error, this.conn.path);
    }
  }

  async trimPlan(request: TrimRequest): Promise<TrimPlan> {
    const { planTrim } = await import('./trim.js');
    return this.read(() => planTrim(this.conn, request));
  }

  /** The sessions' rows, one session after another; SQLite's failures mapped to one-line errors. */
  *exportSessions(ids: readonly string[], options: ExportOptions = {}): Generator<SessionItem> {
    try {
      yield* exportSessions(this.conn, ids, options);
    } catch (error) {
      throw mapSqliteError(error, this.conn.path);
    }
  }

  async close(): Promise<void> {
    this.opened?.close();
    this.conn.db.close();
  }
}
