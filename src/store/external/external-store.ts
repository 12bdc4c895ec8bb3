/**
 * The external store: the same SessionStore over PostgreSQL, MySQL/MariaDB or SQL Server, plus
 * writes, so an embedding app can use it as its primary store. Reads follow the SQLite store's
 * memory rules: keyset pages, sizes from stored counters, bodies fetched one large value at a
 * time as Buffers, attachments streamed chunk by chunk into the content-addressed cache.
 */
import { createHash } from 'node:crypto';
import { sql, type Kysely, type RawBuilder } from 'kysely';
import type {
  AttachmentResult,
  ListResult,
  MessageView,
  PageOptions,
  ShowResult,
  StatsOptions,
  StatsResult,
} from '../../core/api.js';
import { decodeMessageCursor, decodeSessionCursor, encodeCursor } from '../../core/cursor.js';
import { SkError } from '../../core/errors.js';
import { toMessageInfo, toPartInfo, toSessionInfo, type SessionRow } from '../../core/opencode-format.js';
import { attachmentRefName, describeDataUrl, findAttachmentRef, parseAttachmentRef, scanPartData } from '../../core/part-scan.js';
import { crossedThresholds } from '../../core/thresholds.js';
import { AttachmentCache } from '../attachment-cache.js';
import { DEFAULT_MESSAGE_PAGE, DEFAULT_SESSION_PAGE, PAGE_RULES, stringLimits, type SessionStore } from '../store.js';
import { attachmentChunks, CHUNK_BYTES, cutPart, jsonAcceptable, jsonCopy, parseSpans, rebuildPart, type CutPart, type StoredSpan } from './codec.js';
import { connect, connectionError, type ExternalKind, type ParsedConnection } from './connection.js';
import { migrateSchema, schemaVersion, SCHEMA_VERSION, type SkTables } from './schema.js';

const { inlineFetchBytes: INLINE_FETCH_BYTES, inlineTotalBytes: INLINE_TOTAL_BYTES, budgetBytes: PAGE_BUDGET_BYTES } = PAGE_RULES;
const { sessionPayloadColumns: SESSION_PAYLOAD_COLUMNS, sessionPayloadLimit: SESSION_PAYLOAD_LIMIT } = PAGE_RULES;
/** Inline bodies fetched in one query. */
const INLINE_BATCH_BYTES = 1024 * 1024;
/** Attachment chunks fetched per round trip (about 4 MB). */
const CHUNKS_PER_READ = 4;

export type SqlValue = string | number | null;

/** Row facts beside the session row, for an exact restore into SQLite. */
export interface StoredSessionExtras {
  project: Record<string, SqlValue> | null;
  todos: Record<string, SqlValue>[];
  share: Record<string, SqlValue> | null;
  /** `storage/session_diff/<id>.json` as text, when it existed. */
  diff: string | null;
}

export interface MessageInput {
  id: string;
  sessionId: string;
  timeCreated: number;
  timeUpdated: number;
  /** `message.data`: JSON text (a Buffer keeps big ones off the heap). */
  data: Buffer | string;
}

export interface PartInput extends MessageInput {
  messageId: string;
}

export type MessageRow = SkTables['sk_message'];
/** An attachment small enough for one chunk, inserted with a batch of part rows. */
export interface SmallAttachment {
  sha256: string;
  data: Buffer;
}
export type PartRow = SkTables['sk_part'];

interface BodyRow {
  id: string;
  time_created: number;
  bytes: number;
  body: Buffer | null;
  body_bytes: number;
  attachments?: string | null;
}

/** Rows per INSERT: SQL Server allows 2,100 parameters per statement. */
export function batchRowsFor(kind: ExternalKind): number {
  return kind === 'sqlserver' ? 150 : 500;
}

export class ExternalStore implements SessionStore {
  readonly kind: ExternalKind;
  readonly db: Kysely<SkTables>;
  readonly conn: ParsedConnection;

  private constructor(db: Kysely<SkTables>, conn: ParsedConnection) {
    this.db = db;
    this.conn = conn;
    this.kind = conn.kind;
  }

  /**
   * Connects. With `create`, creates or upgrades the schema (what `migrate` and writers want);
   * without, a database the tool never touched is a one-line error.
   */
  static async open(connectionString: string, options: { create?: boolean; poolSize?: number; bulk?: boolean } = {}): Promise<ExternalStore> {
    const { db, conn } = await connect(connectionString, options.poolSize, options.bulk);
    const store = new ExternalStore(db, conn);
    try {
      if (options.create) await migrateSchema(db, conn.kind);
      else {
        const version = await schemaVersion(db);
        if (version === 0) throw new SkError('not-found', `${conn.display} holds no session-keeper tables (run: session-keeper migrate --to <connectionString>)`);
        if (version > SCHEMA_VERSION) throw new SkError('unsupported-schema', `${conn.display} has schema version ${version}; this build knows up to ${SCHEMA_VERSION}`);
      }
    } catch (error) {
      await db.destroy().catch(() => undefined);
      throw connectionError(error, conn, 'schema');
    }
    return store;
  }

  /** Runs a database step, turning driver failures into one password-free line. */
  async guard<T>(doing: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
        // SQLite's own failures (a copy reads the file while it writes here) keep their own mapping.
      if (error instanceof Error && error.name === 'SqliteError') throw error;
      if (error instanceof TypeError || error instanceof RangeError) throw new SkError('internal', `${doing}: ${error.message}`);
      throw connectionError(error, this.conn, doing);
    }
  }

  /** Byte length of a binary column in this dialect. */
  len(column: string): RawBuilder<number> {
    const fn = this.kind === 'postgres' ? 'octet_length' : this.kind === 'mysql' ? 'LENGTH' : 'DATALENGTH';
    return sql<number>`${sql.raw(fn)}(${sql.ref(column)})`;
  }

  /** sha256 of a binary column, as lowercase hex, computed by the server. */
  sha(column: string): RawBuilder<string> {
    if (this.kind === 'postgres') return sql<string>`encode(sha256(${sql.ref(column)}), 'hex')`;
    if (this.kind === 'mysql') return sql<string>`SHA2(${sql.ref(column)}, 256)`;
    return sql<string>`LOWER(CONVERT(VARCHAR(64), HASHBYTES('SHA2_256', ${sql.ref(column)}), 2))`;
  }

  private inlineBody(): RawBuilder<Buffer | null> {
    return sql<Buffer | null>`CASE WHEN ${this.len('body')} <= ${sql.lit(INLINE_FETCH_BYTES)} THEN body END`;
  }

  /** `LIMIT n` or, on SQL Server, `TOP n`. */
  page<T extends { limit(n: number): T; top(n: number): T }>(qb: T, n: number): T {
    return this.kind === 'sqlserver' ? qb.top(n) : qb.limit(n);
  }

  async dataVersion(): Promise<number> {
    return this.guard('read', async () => {
      const row = await this.db
        .selectFrom('sk_session')
        .select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.max('time_updated').as('t'), eb.fn.sum<number>('parts').as('p')])
        .executeTakeFirst();
      return Number(row?.n ?? 0) * 1e6 + Number(row?.t ?? 0) + Number(row?.p ?? 0);
    });
  }

  private async databaseBytes(): Promise<number> {
    try {
      if (this.kind === 'postgres') {
        const r = await sql<{ b: number }>`SELECT pg_database_size(current_database()) AS b`.execute(this.db);
        return Number(r.rows[0]?.b ?? 0);
      }
      if (this.kind === 'mysql') {
        const r = await sql<{ b: number }>`SELECT COALESCE(SUM(data_length + index_length), 0) AS b FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE 'sk\\_%'`.execute(this.db);
        return Number(r.rows[0]?.b ?? 0);
      }
      const r = await sql<{ b: number }>`SELECT COALESCE(SUM(reserved_page_count), 0) * 8192 AS b FROM sys.dm_db_partition_stats`.execute(this.db);
      return Number(r.rows[0]?.b ?? 0);
    } catch {
      return 0; // size views need privileges some roles lack; the counts still stand
    }
  }

  async stats(options: StatsOptions = {}): Promise<StatsResult> {
    return this.guard('stats', async () => {
      const sessions = await this.db
        .selectFrom('sk_session')
        .select((eb) => [
          eb.fn.countAll<number>().as('n'),
          eb.fn.sum<number>(eb.case().when('parent_id', 'is', null).then(1).else(0).end()).as('roots'),
        ])
        .executeTakeFirst();
      const messages = await this.db
        .selectFrom('sk_message')
        .select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.sum<number>('bytes').as('b')])
        .executeTakeFirst();
      const parts = await this.db
        .selectFrom('sk_part')
        .select((eb) => [
          eb.fn.countAll<number>().as('n'),
          eb.fn.sum<number>('bytes').as('b'),
          eb.fn.sum<number>('att_count').as('ac'),
          eb.fn.sum<number>('att_bytes').as('ab'),
          eb.fn.sum<number>('att_encoded').as('ae'),
        ])
        .executeTakeFirst();
      const largest = await this.page(
        this.db.selectFrom('sk_session').select(['id', 'title', 'bytes']).orderBy('bytes', 'desc').orderBy('id'),
        options.largest ?? 10,
      ).execute();
      const fileBytes = await this.databaseBytes();
      const n = (v: unknown): number => Number(v ?? 0);
      return {
        path: this.conn.display,
        schema: `${this.kind} v${SCHEMA_VERSION}`,
        fileBytes,
        walBytes: 0,
        freeBytes: 0,
        pageSize: 0,
        autoVacuum: 'none' as const,
        sessions: n(sessions?.n),
        rootSessions: n(sessions?.roots),
        messages: n(messages?.n),
        parts: n(parts?.n),
        events: 0,
        attachments: { count: n(parts?.ac), bytes: n(parts?.ab), encodedBytes: n(parts?.ae) },
        tables: [
          { name: 'session', rows: n(sessions?.n), payloadBytes: 0 },
          { name: 'message', rows: n(messages?.n), payloadBytes: n(messages?.b) },
          { name: 'part', rows: n(parts?.n), payloadBytes: n(parts?.b) },
        ],
        largest: largest.map((r) => ({ id: r.id, title: r.title, bytes: n(r.bytes) })),
        oversize: [],
        warnings: crossedThresholds(fileBytes, options.warnAtMB),
      };
    });
  }

  async listSessions(options: PageOptions = {}): Promise<ListResult> {
    const limit = options.limit ?? DEFAULT_SESSION_PAGE;
    return this.guard('list', async () => {
      let query = this.db
        .selectFrom('sk_session')
        .select(['id', 'parent_id', 'title', 'time_created', 'time_updated', 'time_archived', 'bytes'])
        .orderBy('time_updated', 'desc')
        .orderBy('id', 'desc');
      if (options.cursor) {
        const [updated, id] = decodeSessionCursor(options.cursor);
        query = query.where((eb) => eb.or([eb('time_updated', '<', updated), eb.and([eb('time_updated', '=', updated), eb('id', '<', id)])]));
      }
      const rows = await this.page(query, limit + 1).execute();
      const pageRows = rows.slice(0, limit);
      const last = pageRows[pageRows.length - 1];
      return {
        sessions: pageRows.map((r) => ({
          id: r.id,
          parentId: r.parent_id,
          title: r.title,
          timeCreated: Number(r.time_created),
          timeUpdated: Number(r.time_updated),
          timeArchived: r.time_archived === null ? null : Number(r.time_archived),
          bytes: Number(r.bytes),
        })),
        nextCursor: rows.length > limit && last ? encodeCursor([Number(last.time_updated), last.id]) : null,
      };
    });
  }

  /** The SQLite session row as stored, every column. */
  async sessionRow(sessionId: string): Promise<(SessionRow & Record<string, SqlValue>) | undefined> {
    const row = await this.db.selectFrom('sk_session').select('row_json').where('id', '=', sessionId).executeTakeFirst();
    if (!row) return undefined;
    // jsonb comes back parsed from pg; text columns come back as strings.
    return (typeof row.row_json === 'string' ? JSON.parse(row.row_json) : row.row_json) as SessionRow & Record<string, SqlValue>;
  }

  private async body(table: 'sk_message' | 'sk_part', row: BodyRow): Promise<Buffer> {
    if (row.body) return row.body;
    const fetched = await this.db.selectFrom(table).select('body').where('id', '=', row.id).executeTakeFirst();
    if (!fetched) throw new SkError('not-found', `${table.slice(3)} ${row.id} disappeared while reading`);
    return fetched.body;
  }

  /**
   * A message's parts in page order, sizes first; bodies come inline (one batched query) while
   * they are small and their total stays under PAGE_RULES.inlineTotalBytes, so a message with
   * thousands of parts never arrives as one huge result. The rest are fetched one at a time.
   */
  private async partsWithInlineBodies(messageId: string): Promise<BodyRow[]> {
    const rows = (await this.db
      .selectFrom('sk_part')
      .select(['id', 'time_created', 'bytes', 'attachments', this.len('body').as('body_bytes'), sql<null>`NULL`.as('body')])
      .where('message_id', '=', messageId)
      .orderBy('time_created')
      .orderBy('id')
      .execute()) as BodyRow[];
    const inline: BodyRow[] = [];
    let total = 0;
    for (const row of rows) {
      const size = Number(row.body_bytes);
      if (size > INLINE_FETCH_BYTES || total + size > INLINE_TOTAL_BYTES) continue;
      total += size;
      inline.push(row);
    }
    const byId = new Map(inline.map((row) => [row.id, row]));
    // Batches of about 1 MB: drivers may carry binary columns as text (PostgreSQL's bytea as hex),
    // so a bigger batch costs twice its size on the V8 heap before it becomes Buffers.
    for (let at = 0; at < inline.length; ) {
      const ids: string[] = [];
      for (let bytes = 0; at < inline.length && (ids.length === 0 || bytes < INLINE_BATCH_BYTES); at++) {
        const row = inline[at] as BodyRow;
        ids.push(row.id);
        bytes += Number(row.body_bytes);
      }
      for (const fetched of await this.db.selectFrom('sk_part').select(['id', 'body']).where('id', 'in', ids).execute()) {
        const row = byId.get(fetched.id);
        if (row) row.body = fetched.body;
      }
    }
    return rows;
  }

  async showSession(sessionId: string, options: PageOptions = {}): Promise<ShowResult> {
    const limit = options.limit ?? DEFAULT_MESSAGE_PAGE;
    return this.guard('show', async () => {
      const row = await this.sessionRow(sessionId);
      if (!row) throw new SkError('not-found', `no session ${sessionId} in ${this.conn.display}`);
      for (const c of SESSION_PAYLOAD_COLUMNS) {
        const value = row[c];
        if (typeof value === 'string' && Buffer.byteLength(value) > SESSION_PAYLOAD_LIMIT) {
          row[c] = JSON.stringify(`[session-keeper: cut, ${Buffer.byteLength(value)} bytes in all]`);
        }
      }
      const session = toSessionInfo(row);
      let query = this.db
        .selectFrom('sk_message')
        .select(['id', 'time_created', 'bytes', this.len('body').as('body_bytes'), this.inlineBody().as('body')])
        .where('session_id', '=', sessionId)
        .orderBy('time_created')
        .orderBy('id');
      if (options.cursor) {
        const [created, id] = decodeMessageCursor(options.cursor);
        query = query.where((eb) => eb.or([eb('time_created', '>', created), eb.and([eb('time_created', '=', created), eb('id', '>', id)])]));
      }
      const messages = (await this.page(query, limit + 1).execute()) as BodyRow[];
      let budget = PAGE_BUDGET_BYTES;
      const views: MessageView[] = [];
      let lastIncluded: BodyRow | undefined;
      for (const message of messages.slice(0, limit)) {
        if (views.length > 0 && budget <= 0) break;
        const info = await this.reduce('sk_message', message, budget, [], (value) => toMessageInfo(message.id, sessionId, value));
        budget -= info.cost;
        const partRows = await this.partsWithInlineBodies(message.id);
        const parts: Record<string, unknown>[] = [];
        for (const part of partRows) {
          const view = await this.reduce('sk_part', part, budget, parseSpans(part.attachments ?? null), (value) =>
            toPartInfo(part.id, sessionId, message.id, value),
          );
          budget -= view.cost;
          parts.push(view.value);
        }
        views.push({ info: info.value, parts });
        lastIncluded = message;
      }
      const more = messages.length > views.length;
      return {
        session: session as unknown as Record<string, unknown>,
        messages: views,
        nextCursor: more && lastIncluded ? encodeCursor([Number(lastIncluded.time_created), lastIncluded.id]) : null,
      };
    });
  }

  /** As SqliteStore.reduce, on the stored body; attachment sizes come from the stored spans. */
  private async reduce(
    table: 'sk_message' | 'sk_part',
    row: BodyRow,
    budget: number,
    spans: readonly StoredSpan[],
    wrap: (value: unknown) => Record<string, unknown>,
  ): Promise<{ value: Record<string, unknown>; cost: number }> {
    const { maxInlineString, previewBytes } = stringLimits(budget);
    const body = await this.body(table, row);
    try {
      const scanned = scanPartData(body, { partId: row.id, maxInlineString, previewBytes });
      if (spans.length > 0) {
        const bytes = new Map(spans.map((s) => [attachmentRefName(row.id, s.i), s.n]));
        patchRefs(scanned.value, bytes);
      }
      const value = wrap(scanned.value);
      const cost = scanned.attachments.length === 0 && scanned.truncatedStrings === 0 ? body.length : JSON.stringify(value).length;
      return { value, cost };
    } catch (error) {
      if (!(error instanceof SkError) || error.code !== 'bad-part') throw error;
      return { value: wrap({ type: 'unreadable', bytes: Number(row.bytes), error: error.message }), cost: 256 };
    }
  }

  /** An attachment's stored chunks, in order, a few per round trip. */
  async *chunks(sha256: string): AsyncGenerator<Buffer> {
    let next = 0;
    for (;;) {
      const rows = await this.guard('read attachment', () =>
        this.db
          .selectFrom('sk_attachment_chunk')
          .select(['seq', 'data'])
          .where('sha256', '=', sha256)
          .where('seq', '>=', next)
          .where('seq', '<', next + CHUNKS_PER_READ)
          .orderBy('seq')
          .execute(),
      );
      for (const row of rows) {
        if (Number(row.seq) !== next) throw new SkError('corrupt', `attachment ${sha256} is missing chunk ${next} in ${this.conn.display}`);
        yield row.data;
        next++;
      }
      if (rows.length < CHUNKS_PER_READ) return;
    }
  }

  /** A part's original bytes, in pieces (body slices and re-encoded chunks): what OpenCode wrote. */
  partBytes(body: Buffer, spans: readonly StoredSpan[]): AsyncGenerator<Buffer> {
    return rebuildPart(body, spans, (sha) => this.chunks(sha));
  }

  async extractAttachment(requested: string, cacheDir: string, out?: string): Promise<AttachmentResult> {
    const { partId, index } = parseAttachmentRef(requested);
    const ref = attachmentRefName(partId, index);
    const part = await this.guard('attachment', () =>
      this.db.selectFrom('sk_part').select(['body', 'attachments', 'att_count']).where('id', '=', partId).executeTakeFirst(),
    );
    if (!part) throw new SkError('not-found', `no part ${partId} in ${this.conn.display}`);
    const count = Number(part.att_count);
    if (index >= count) {
      throw new SkError('not-found', `part ${partId} has ${count} attachment${count === 1 ? '' : 's'}, no number ${index}`);
    }
    let filename: string | null = null;
    try {
      const scanned = scanPartData(part.body, { partId, maxInlineString: Number.MAX_SAFE_INTEGER });
      filename = findAttachmentRef(scanned.value, ref)?.filename ?? null;
    } catch {
      // the attachment itself is intact; only its name is unknown
    }
    const spans = parseSpans(part.attachments);
    const span = spans.find((s) => s.i === index);
    // The URL's header is still in the body, just before where the payload goes back.
    const headerStart = span ? part.body.lastIndexOf(0x22, span.o - 1) + 1 : 0;
    const cache = new AttachmentCache(cacheDir);
    let file;
    if (span?.k === 'b') {
      file = await cache.writeChunks(this.chunks(span.s), ref, out);
    } else {
      // Raw payloads (percent-encoded, or base64 written unusually) decode as the SQLite store decodes them.
      const pieces: Buffer[] = [];
      if (span) {
        pieces.push(part.body.subarray(headerStart, span.o));
        for await (const chunk of this.chunks(span.s)) pieces.push(chunk);
      } else {
        pieces.push(Buffer.from('data:,'));
      }
      const url = Buffer.concat(pieces);
      file = cache.writeSpan(url, describeDataUrl(url, 0, url.length, index), ref, `part ${partId} attachment ${index}`, out);
    }
    const header = span ? part.body.toString('latin1', headerStart, Math.min(span.o, headerStart + 1024)) : 'data:,';
    const mime = describeDataUrl(Buffer.from(header, 'latin1'), 0, header.length, index).mime;
    return { ref, path: file.path, bytes: file.bytes, sha256: file.sha256, mime, filename };
  }

  // ---- writes -------------------------------------------------------------------------------

  /**
   * Stores one attachment's chunks unless a complete copy is already there (content-addressed:
   * stored once however often referenced). An interrupted earlier copy is replaced.
   */
  async storeAttachment(buf: Buffer, source: CutPart['sources'][number]): Promise<void> {
    const existing = await this.db.selectFrom('sk_attachment').select('complete').where('sha256', '=', source.sha256).executeTakeFirst();
    if (existing && Number(existing.complete) === 1) return;
    if (existing) {
      await this.db.deleteFrom('sk_attachment_chunk').where('sha256', '=', source.sha256).execute();
      await this.db.deleteFrom('sk_attachment').where('sha256', '=', source.sha256).execute();
    }
    await this.db.insertInto('sk_attachment').values({ sha256: source.sha256, bytes: 0, chunks: 0, complete: 0 }).execute();
    let seq = 0;
    let bytes = 0;
    let batch: SkTables['sk_attachment_chunk'][] = [];
    const flush = async (): Promise<void> => {
      if (batch.length > 0) await this.db.insertInto('sk_attachment_chunk').values(batch).execute();
      batch = [];
    };
    for (const chunk of attachmentChunks(buf, source.span, source.kind)) {
      batch.push({ sha256: source.sha256, seq: seq++, data: chunk });
      bytes += chunk.length;
      // One chunk per statement on MySQL: its packets are capped (16 MB by default).
      if (batch.length >= (this.kind === 'mysql' ? 1 : 4)) await flush();
    }
    await flush();
    await this.db.updateTable('sk_attachment').set({ bytes, chunks: seq, complete: 1 }).where('sha256', '=', source.sha256).execute();
  }

  /**
   * A part row ready to insert, for bulk copies: attachments that fit in one chunk come back to be
   * inserted with the row batch (one statement for many); larger ones are stored now.
   */
  async preparePartBatched(input: PartInput, serverJson = false): Promise<{ row: PartRow; small: SmallAttachment[]; json: boolean }> {
    const data = typeof input.data === 'string' ? Buffer.from(input.data) : input.data;
    const cut = cutPart(data, input.id);
    const small: SmallAttachment[] = [];
    for (const source of cut.sources) {
      const encoded = source.span.end - source.span.payloadStart;
      if (this.kind !== 'sqlserver' && encoded <= CHUNK_BYTES) {
        const chunks = [...attachmentChunks(data, source.span, source.kind)];
        small.push({ sha256: source.sha256, data: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks) });
      } else {
        await this.storeAttachment(data, source);
      }
    }
    // With `serverJson` the JSON copy is left to the server (built from the body in the INSERT):
    // only whether it can be made is decided here.
    if (serverJson) {
      const row = partRow(input, data.length, cut, this.kind, true);
      return { row, small, json: jsonAcceptable(row.body, this.kind) };
    }
    return { row: partRow(input, data.length, cut, this.kind), small, json: false };
  }

  /**
   * Inserts single-chunk attachments in two statements, skipping any already stored: the chunk
   * first, then the attachment row marked complete, so a row never exists without its bytes.
   */
  async insertSmallAttachments(list: readonly SmallAttachment[]): Promise<void> {
    const unique = [...new Map(list.map((a) => [a.sha256, a])).values()];
    if (unique.length === 0) return;
    const chunks = unique.filter((a) => a.data.length > 0).map((a) => ({ sha256: a.sha256, seq: 0, data: a.data }));
    const rows = unique.map((a) => ({ sha256: a.sha256, bytes: a.data.length, chunks: a.data.length > 0 ? 1 : 0, complete: 1 }));
    if (this.kind === 'postgres') {
      if (chunks.length) await this.db.insertInto('sk_attachment_chunk').values(chunks).onConflict((oc) => oc.doNothing()).execute();
      await this.db.insertInto('sk_attachment').values(rows).onConflict((oc) => oc.doNothing()).execute();
    } else {
      if (chunks.length) await this.db.insertInto('sk_attachment_chunk').ignore().values(chunks).execute();
      await this.db.insertInto('sk_attachment').ignore().values(rows).execute();
    }
  }

  /** A part row ready to insert, its attachments stored first. */
  async preparePart(input: PartInput): Promise<PartRow> {
    const data = typeof input.data === 'string' ? Buffer.from(input.data) : input.data;
    const cut = cutPart(data, input.id);
    for (const source of cut.sources) await this.storeAttachment(data, source);
    return partRow(input, data.length, cut, this.kind);
  }

  async insertProject(row: Record<string, SqlValue>): Promise<void> {
    const id = String(row['id']);
    const have = await this.db.selectFrom('sk_project').select('id').where('id', '=', id).executeTakeFirst();
    if (have) return;
    try {
      await this.db.insertInto('sk_project').values({ id, row_json: JSON.stringify(row) }).execute();
    } catch (error) {
      const again = await this.db.selectFrom('sk_project').select('id').where('id', '=', id).executeTakeFirst();
      if (!again) throw error;
    }
  }

  /** Inserts (or replaces) a session row; its messages and parts are left as they are. */
  async putSession(row: Record<string, SqlValue>, extras: StoredSessionExtras | null = null, complete = true): Promise<void> {
    const values = sessionValues(row, extras);
    await this.guard('write session', async () => {
      if (extras?.project) await this.insertProject(extras.project);
      else await this.insertProject(defaultProject(row));
      await this.db.transaction().execute(async (trx) => {
        const had = await trx.deleteFrom('sk_session').where('id', '=', values.id).executeTakeFirst();
        await trx.insertInto('sk_session').values({ ...values, messages: 0, parts: 0, bytes: 0, digest: null, complete: complete ? 1 : 0 }).execute();
        if (Number(had.numDeletedRows) > 0) await this.recount(trx, values.id);
      });
    });
  }

  /**
   * For bulk copies: inserts a session row known to be absent, marked incomplete, in one statement
   * (its project once per copy: `projects` holds the ids already stored).
   */
  async insertNewSession(row: Record<string, SqlValue>, extras: StoredSessionExtras, projects: Set<string>): Promise<void> {
    const values = sessionValues(row, extras);
    const project = extras.project ?? defaultProject(row);
    const projectId = String(project['id']);
    if (!projects.has(projectId)) {
      await this.insertProject(project);
      projects.add(projectId);
    }
    await this.db.insertInto('sk_session').values({ ...values, messages: 0, parts: 0, bytes: 0, digest: null, complete: 0 }).execute();
  }

  /** Recomputes a session's counters from its rows. */
  private async recount(exec: Kysely<SkTables>, sessionId: string): Promise<void> {
    await exec
      .updateTable('sk_session')
      .set((eb) => ({
        messages: eb.selectFrom('sk_message').select((e) => e.fn.countAll<number>().as('n')).where('session_id', '=', sessionId),
        parts: eb.selectFrom('sk_part').select((e) => e.fn.countAll<number>().as('n')).where('session_id', '=', sessionId),
        bytes: sql<number>`COALESCE((SELECT SUM(bytes) FROM sk_message WHERE session_id = ${sessionId}), 0) + COALESCE((SELECT SUM(bytes) FROM sk_part WHERE session_id = ${sessionId}), 0)`,
      }))
      .where('id', '=', sessionId)
      .execute();
  }

  private async requireSession(sessionId: string): Promise<void> {
    const have = await this.db.selectFrom('sk_session').select('id').where('id', '=', sessionId).executeTakeFirst();
    if (!have) throw new SkError('not-found', `no session ${sessionId} in ${this.conn.display}`);
  }

  /** Creates or replaces a message (its parts stay). */
  async putMessage(input: MessageInput): Promise<void> {
    await this.guard('write message', async () => {
      await this.requireSession(input.sessionId);
      const row = messageRow(input, this.kind);
      await this.db.transaction().execute(async (trx) => {
        await trx.deleteFrom('sk_message').where('id', '=', input.id).execute();
        await trx.insertInto('sk_message').values(row).execute();
        await this.recount(trx, input.sessionId);
      });
    });
  }

  /** Creates or replaces a part; its attachments go to the content-addressed table. */
  async putPart(input: PartInput): Promise<void> {
    await this.guard('write part', async () => {
      await this.requireSession(input.sessionId);
      const message = await this.db.selectFrom('sk_message').select('id').where('id', '=', input.messageId).executeTakeFirst();
      if (!message) throw new SkError('not-found', `no message ${input.messageId} in ${this.conn.display}`);
      const row = await this.preparePart(input);
      const old = await this.db.selectFrom('sk_part').select('attachments').where('id', '=', input.id).executeTakeFirst();
      await this.db.transaction().execute(async (trx) => {
        await trx.deleteFrom('sk_part').where('id', '=', input.id).execute();
        await trx.insertInto('sk_part').values(row).execute();
        await this.recount(trx, input.sessionId);
      });
      if (old) await this.collectAttachments(parseSpans(old.attachments).map((s) => s.s));
    });
  }

  /** Every session id of the trees rooted at `roots`, roots first. */
  async sessionTrees(roots: readonly string[]): Promise<string[]> {
    const seen = new Set<string>();
    let frontier = roots.filter((id) => !seen.has(id));
    for (const id of frontier) seen.add(id);
    while (frontier.length > 0) {
      const children = await this.db.selectFrom('sk_session').select('id').where('parent_id', 'in', frontier).orderBy('id').execute();
      frontier = children.map((c) => c.id).filter((id) => !seen.has(id));
      for (const id of frontier) seen.add(id);
    }
    return [...seen];
  }

  /** Deletes sessions with their children, messages, parts and now-unreferenced attachments. */
  async deleteSessions(roots: readonly string[]): Promise<string[]> {
    return this.guard('delete', async () => {
      const ids = await this.sessionTrees(roots);
      const present = new Set(
        (ids.length ? await this.db.selectFrom('sk_session').select('id').where('id', 'in', ids).execute() : []).map((r) => r.id),
      );
      for (const id of ids) await this.deleteSessionRows(id, true);
      return ids.filter((id) => present.has(id));
    });
  }

  /** Removes one session's rows (and, with `withSession`, the session itself). */
  async deleteSessionRows(sessionId: string, withSession: boolean): Promise<void> {
    const shas = new Set<string>();
    for (;;) {
      // Attachment lists are read in pages: a session can have very many parts.
      const rows = await this.page(
        this.db.selectFrom('sk_part').select(['id', 'attachments']).where('session_id', '=', sessionId).where('att_count', '>', 0).orderBy('id'),
        1000,
      ).execute();
      for (const r of rows) for (const s of parseSpans(r.attachments)) shas.add(s.s);
      if (rows.length === 0) break;
      await this.db.deleteFrom('sk_part').where('id', 'in', rows.map((r) => r.id)).execute();
    }
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('sk_part').where('session_id', '=', sessionId).execute();
      await trx.deleteFrom('sk_message').where('session_id', '=', sessionId).execute();
      if (withSession) await trx.deleteFrom('sk_session').where('id', '=', sessionId).execute();
    });
    await this.collectAttachments([...shas]);
  }

  /** Drops attachments no part refers to any more. */
  private async collectAttachments(shas: readonly string[]): Promise<void> {
    for (const sha of new Set(shas)) {
      const used = await this.page(
        this.db.selectFrom('sk_part').select('id').where('att_count', '>', 0).where('attachments', 'like', `%${sha}%`),
        1,
      ).execute();
      if (used.length > 0) continue;
      await this.db.deleteFrom('sk_attachment_chunk').where('sha256', '=', sha).execute();
      await this.db.deleteFrom('sk_attachment').where('sha256', '=', sha).execute();
    }
  }

  /**
   * Makes every earlier commit durable: a synchronous commit of a real write flushes the WAL up to
   * it (PostgreSQL's asynchronous commits are never reordered). Called before anything is deleted
   * locally on the strength of the copy.
   */
  async durableBarrier(): Promise<void> {
    if (this.kind !== 'postgres') return; // MySQL and SQL Server commit durably per statement here
    await this.guard('flush', () =>
      this.db.transaction().execute(async (trx) => {
        await sql`SET LOCAL synchronous_commit = on`.execute(trx);
        await trx.updateTable('sk_migrations').set((eb) => ({ applied_at: eb.ref('applied_at') })).where('version', '=', SCHEMA_VERSION).execute();
      }),
    );
  }

  async close(): Promise<void> {
    await this.db.destroy().catch(() => undefined);
  }
}

function defaultProject(row: Record<string, SqlValue>): Record<string, SqlValue> {
  return { id: String(row['project_id'] ?? 'global'), worktree: '/', time_created: 0, time_updated: 0, sandboxes: '[]' };
}

function sessionValues(row: Record<string, SqlValue>, extras: StoredSessionExtras | null): Omit<SkTables['sk_session'], 'messages' | 'parts' | 'bytes' | 'digest' | 'complete'> {
  const id = row['id'];
  if (typeof id !== 'string' || !id) throw new SkError('usage', 'a session needs an id');
  return {
    id,
    project_id: String(row['project_id'] ?? 'global'),
    parent_id: typeof row['parent_id'] === 'string' ? row['parent_id'] : null,
    title: String(row['title'] ?? ''),
    time_created: Number(row['time_created'] ?? 0),
    time_updated: Number(row['time_updated'] ?? 0),
    time_archived: typeof row['time_archived'] === 'number' ? row['time_archived'] : null,
    row_json: JSON.stringify(row),
    extras_json: extras ? JSON.stringify({ todos: extras.todos, share: extras.share, diff: extras.diff }) : null,
  };
}

export function messageRow(input: MessageInput, kind: ExternalKind, withoutJson = false): MessageRow {
  const body = typeof input.data === 'string' ? Buffer.from(input.data) : input.data;
  return {
    id: input.id,
    session_id: input.sessionId,
    time_created: input.timeCreated,
    time_updated: input.timeUpdated,
    bytes: body.length,
    body,
    data: withoutJson ? null : jsonCopy(body, kind),
  };
}

export function partRow(input: PartInput, bytes: number, cut: CutPart, kind: ExternalKind, withoutJson = false): PartRow {
  return {
    id: input.id,
    message_id: input.messageId,
    session_id: input.sessionId,
    time_created: input.timeCreated,
    time_updated: input.timeUpdated,
    bytes,
    body: cut.body,
    data: withoutJson ? null : jsonCopy(cut.body, kind),
    attachments: cut.spans.length > 0 ? JSON.stringify(cut.spans) : null,
    att_count: cut.attachmentCount,
    att_bytes: cut.attachmentBytes,
    att_encoded: cut.encodedBytes,
  };
}

/**
 * One stored row's line in its session's digest: ids, times, the body's length and sha256, and
 * the attachment list. The session digest is the sha256 of these lines sorted, so the server can
 * supply body hashes itself (no body crosses the network to verify) and order does not matter.
 */
export function rowLine(kind: 'm' | 'p', id: string, created: number, updated: number, bodyBytes: number, bodySha: string, spans: string | null): string {
  return `${kind}\0${id}\0${created}\0${updated}\0${bodyBytes}\0${bodySha}\0${spans ?? ''}`;
}

export function sessionDigest(lines: string[]): string {
  const hash = createHash('sha256');
  for (const line of lines.sort()) hash.update(`${line}\n`);
  return hash.digest('hex');
}

export const sha256Hex = (body: Buffer): string => createHash('sha256').update(body).digest('hex');

function patchRefs(node: unknown, bytes: ReadonlyMap<string, number>): void {
  if (Array.isArray(node)) {
    for (const item of node) patchRefs(item, bytes);
  } else if (node && typeof node === 'object') {
    const record = node as Record<string, unknown>;
    const ref = record['ref'];
    if (typeof ref === 'string' && typeof record['mime'] === 'string' && typeof record['bytes'] === 'number') {
      const n = bytes.get(ref);
      if (n !== undefined) record['bytes'] = n;
      return;
    }
    for (const value of Object.values(record)) patchRefs(value, bytes);
  }
}

