/**
 * The external store: PostgreSQL, MySQL/MariaDB or SQL Server as a reader and a writer, so the
 * same commands browse it and an embedding app can use it as its primary store. Reads follow the
 * SQLite store's memory rules: keyset pages, sizes from stored counters, bodies fetched one large
 * value at a time as Buffers, attachments streamed chunk by chunk into the content-addressed cache.
 * Engine differences are the dialect's (dialect.ts); nothing here asks which engine it is.
 */
import { sql, type Kysely } from 'kysely';
import type { AttachmentResult, ListResult, PageOptions, ShowResult, StatsOptions, StatsResult } from '../../core/api.js';
import { decodeSessionCursor, encodeCursor } from '../../core/cursor.js';
import { SkError } from '../../core/errors.js';
import { defaultProjectRow, type SessionRow } from '../../core/opencode-format.js';
import { DEFAULT_SESSION_PAGE } from '../../core/page-rules.js';
import { attachmentFilename, attachmentRefName, describeDataUrl, parseAttachmentRef } from '../../core/part-scan.js';
import { familyFacts, type SessionRowFacts } from '../../core/planner.js';
import type { ExternalKind } from '../../core/storage.js';
import { crossedThresholds } from '../../core/thresholds.js';
import { AttachmentCache } from '../attachment-cache.js';
import { buildShowPage } from '../page-builder.js';
import type { RetentionFacts, SessionCounts, SessionReader, StoreSize } from '../reader.js';
import type { Row, SessionItem } from '../session-items.js';
import type { DeleteResult, ImportOptions, ImportResult, ReclaimResult, SessionState, SessionWriter } from '../writer.js';
import { importSessions } from './bulk-import.js';
import { attachmentChunks, CHUNK_BYTES, cutPart, parseSpans, rebuildPart, type CutPart, type StoredSpan } from './codec.js';
import { connect, connectionError, type ParsedConnection } from './connection.js';
import { ExternalContentSource } from './content-source.js';
import type { EngineDialect } from './dialect.js';
import { migrateSchema, schemaVersion, SCHEMA_VERSION, type SkTables } from './schema.js';
import { messageRow, partRow, sessionValues, type MessageInput, type PartInput, type PartRow, type StoredSessionExtras } from './stored-rows.js';

/** Attachment chunks fetched per round trip (about 4 MB). */
const CHUNKS_PER_READ = 4;
const MESSAGE_PAGE = 200;

/** An attachment small enough for one chunk, inserted with a batch of part rows. */
export interface SmallAttachment {
  sha256: string;
  data: Buffer;
}

export class ExternalStore implements SessionReader, SessionWriter {
  readonly kind: ExternalKind;
  /** Other writers of a server leave no cheap version mark: its pages are never cached. */
  readonly pagesCacheable = false;
  readonly db: Kysely<SkTables>;
  readonly conn: ParsedConnection;
  readonly dialect: EngineDialect;

  private constructor(db: Kysely<SkTables>, conn: ParsedConnection, dialect: EngineDialect) {
    this.db = db;
    this.conn = conn;
    this.dialect = dialect;
    this.kind = conn.kind;
  }

  /**
   * Connects. With `create`, creates or upgrades the schema (what copies and writers want);
   * without, a database the tool never touched is a one-line error.
   */
  static async open(connectionString: string, options: { create?: boolean; poolSize?: number; bulk?: boolean } = {}): Promise<ExternalStore> {
    const { db, conn, dialect } = await connect(connectionString, options.poolSize, options.bulk);
    const store = new ExternalStore(db, conn, dialect);
    try {
      if (options.create) await migrateSchema(db, dialect);
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

  get location(): string {
    return this.conn.display;
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

  // ---- reads for people --------------------------------------------------------------------

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
      return await this.dialect.databaseBytes(this.db);
    } catch {
      return 0; // size views need privileges some roles lack; the counts still stand
    }
  }

  async stats(options: StatsOptions = {}): Promise<StatsResult> {
    return this.guard('stats', async () => {
      const sessions = await this.db
        .selectFrom('sk_session')
        .select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.sum<number>(eb.case().when('parent_id', 'is', null).then(1).else(0).end()).as('roots')])
        .executeTakeFirst();
      const messages = await this.db.selectFrom('sk_message').select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.sum<number>('bytes').as('b')]).executeTakeFirst();
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
      const largest = await this.dialect.limit(this.db.selectFrom('sk_session').select(['id', 'title', 'bytes']).orderBy('bytes', 'desc').orderBy('id'), options.largest ?? 10).execute();
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
      const rows = await this.dialect.limit(query, limit + 1).execute();
      const pageRows = rows.slice(0, limit);
      const last = pageRows[pageRows.length - 1];
      return {
        sessions: pageRows.map((r) => ({ ...sessionFacts(r), bytes: Number(r.bytes) })),
        nextCursor: rows.length > limit && last ? encodeCursor([Number(last.time_updated), last.id]) : null,
      };
    });
  }

  /** The SQLite session row as stored, every column. */
  async sessionRow(sessionId: string): Promise<(SessionRow & Row) | undefined> {
    const row = await this.db.selectFrom('sk_session').select('row_json').where('id', '=', sessionId).executeTakeFirst();
    if (!row) return undefined;
    // jsonb comes back parsed from pg; text columns come back as strings.
    return (typeof row.row_json === 'string' ? JSON.parse(row.row_json) : row.row_json) as SessionRow & Row;
  }

  showSession(sessionId: string, options: PageOptions = {}): Promise<ShowResult> {
    return this.guard('show', () => buildShowPage(new ExternalContentSource(this), sessionId, options));
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
    const part = await this.guard('attachment', () => this.db.selectFrom('sk_part').select(['body', 'attachments', 'att_count']).where('id', '=', partId).executeTakeFirst());
    if (!part) throw new SkError('not-found', `no part ${partId} in ${this.conn.display}`);
    const count = Number(part.att_count);
    if (index >= count) throw new SkError('not-found', `part ${partId} has ${count} attachment${count === 1 ? '' : 's'}, no number ${index}`);
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
    return { ref, path: file.path, bytes: file.bytes, sha256: file.sha256, mime, filename: attachmentFilename(part.body, partId, ref) };
  }

  // ---- reads for retention and transfers ------------------------------------------------------

  async missingSessions(ids: readonly string[]): Promise<string[]> {
    const present = await this.sessionVersions(ids);
    return ids.filter((id) => !present.has(id));
  }

  /** Every session id of the trees rooted at `roots`, roots first. */
  async sessionTrees(roots: readonly string[]): Promise<string[]> {
    return this.guard('read', async () => {
      const seen = new Set<string>();
      let frontier = roots.filter((id) => !seen.has(id));
      for (const id of frontier) seen.add(id);
      while (frontier.length > 0) {
        const children = await this.db.selectFrom('sk_session').select('id').where('parent_id', 'in', frontier).orderBy('id').execute();
        frontier = children.map((c) => c.id).filter((id) => !seen.has(id));
        for (const id of frontier) seen.add(id);
      }
      return [...seen];
    });
  }

  /** Rows of `sk_session` for `ids`, in batches the engines' parameter limits allow. */
  private async sessionRowsIn<K extends keyof SkTables['sk_session'] & string>(ids: readonly string[], columns: readonly K[]): Promise<Pick<SkTables['sk_session'], K>[]> {
    const out: Pick<SkTables['sk_session'], K>[] = [];
    for (let at = 0; at < ids.length; at += 500) {
      const batch = ids.slice(at, at + 500);
      const rows = await this.db.selectFrom('sk_session').select(columns as readonly K[]).where('id', 'in', batch).execute();
      for (const row of rows) out.push(row as unknown as Pick<SkTables['sk_session'], K>);
    }
    return out;
  }

  async sessionVersions(ids: readonly string[]): Promise<Map<string, number>> {
    return this.guard('read', async () => new Map((await this.sessionRowsIn(ids, ['id', 'time_updated'])).map((r) => [r.id, Number(r.time_updated)])));
  }

  /** Counts as recorded when each session's copy was verified. */
  async sessionCounts(ids: readonly string[]): Promise<Map<string, SessionCounts>> {
    return this.guard('read', async () =>
      new Map((await this.sessionRowsIn(ids, ['id', 'messages', 'parts'])).map((r) => [r.id, { messages: Number(r.messages), parts: Number(r.parts) }])),
    );
  }

  async contentBytes(ids?: readonly string[]): Promise<number> {
    return this.guard('read', async () => {
      if (!ids) {
        const row = await this.db.selectFrom('sk_session').select((eb) => eb.fn.sum<number>('bytes').as('b')).executeTakeFirst();
        return Number(row?.b ?? 0);
      }
      return (await this.sessionRowsIn(ids, ['id', 'bytes'])).reduce((sum, r) => sum + Number(r.bytes), 0);
    });
  }

  async allSessionIds(): Promise<string[]> {
    return this.guard('read', async () => (await this.db.selectFrom('sk_session').select('id').orderBy('id').execute()).map((r) => r.id));
  }

  async rootsCreatedBefore(cutoff: number): Promise<string[]> {
    return this.guard('read', async () =>
      (await this.db.selectFrom('sk_session').select('id').where('parent_id', 'is', null).where('time_created', '<', cutoff).orderBy('time_created').orderBy('id').execute()).map(
        (r) => r.id,
      ),
    );
  }

  async storeSize(): Promise<StoreSize> {
    return this.guard('read', async () => {
      const row = await this.db
        .selectFrom('sk_session')
        .select((eb) => eb.fn.sum<number>(eb.case().when('parent_id', 'is', null).then(1).else(0).end()).as('roots'))
        .executeTakeFirst();
      return { liveBytes: await this.databaseBytes(), rootSessions: Number(row?.roots ?? 0) };
    });
  }

  async oldestRoot(): Promise<{ created: number | null; updated: number | null }> {
    return this.guard('read', async () => {
      const row = await this.db
        .selectFrom('sk_session')
        .select((eb) => [eb.fn.min('time_created').as('created'), eb.fn.min('time_updated').as('updated')])
        .where('parent_id', 'is', null)
        .executeTakeFirst();
      const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
      return { created: num(row?.created), updated: num(row?.updated) };
    });
  }

  async retentionFacts(withBytes: boolean): Promise<RetentionFacts> {
    return this.guard('read', async () => {
      const rows = await this.db.selectFrom('sk_session').select(['id', 'parent_id', 'title', 'time_created', 'time_updated', 'time_archived', 'bytes']).execute();
      const facts = rows.map(sessionFacts);
      const bytes = new Map(withBytes ? rows.map((r) => [r.id, Number(r.bytes)]) : []);
      return { facts: familyFacts(facts, bytes, 1), storeBytes: await this.databaseBytes() };
    });
  }

  /**
   * Whole sessions as items, their parts rebuilt byte for byte. Only copies that finished and
   * were verified are handed out: a session an interrupted copy left behind is refused.
   */
  async *exportSessions(ids: readonly string[]): AsyncGenerator<SessionItem> {
    for (const id of ids) {
      const stored = await this.guard('read', () =>
        this.db.selectFrom('sk_session').select(['row_json', 'extras_json', 'project_id', 'complete']).where('id', '=', id).executeTakeFirst(),
      );
      if (!stored) throw new SkError('not-found', `no session ${id} in ${this.conn.display}`);
      if (Number(stored.complete) !== 1) throw new SkError('corrupt', `session ${id} is incomplete in ${this.conn.display} (an interrupted copy); run migrate again`);
      const session = (typeof stored.row_json === 'string' ? JSON.parse(stored.row_json) : stored.row_json) as Row;
      const extras = (stored.extras_json ? JSON.parse(stored.extras_json) : { todos: [], share: null, diff: null }) as StoredSessionExtras;
      const projectRow = await this.guard('read', () => this.db.selectFrom('sk_project').select('row_json').where('id', '=', stored.project_id).executeTakeFirst());
      const project = projectRow ? ((typeof projectRow.row_json === 'string' ? JSON.parse(projectRow.row_json) : projectRow.row_json) as Row) : null;
      yield {
        kind: 'session',
        header: { session, project, todos: extras.todos, share: extras.share, diff: extras.diff === null || extras.diff === undefined ? null : Buffer.from(extras.diff) },
      };
      let last: { created: number; id: string } | undefined;
      for (;;) {
        let query = this.db.selectFrom('sk_message').select(['id', 'time_created', 'time_updated', 'body']).where('session_id', '=', id).orderBy('time_created').orderBy('id');
        if (last) {
          const { created, id: lastId } = last;
          query = query.where((eb) => eb.or([eb('time_created', '>', created), eb.and([eb('time_created', '=', created), eb('id', '>', lastId)])]));
        }
        const page = await this.guard('read', () => this.dialect.limit(query, MESSAGE_PAGE).execute());
        for (const m of page) {
          const parts = await this.guard('read', () =>
            this.db.selectFrom('sk_part').select(['id', 'time_created', 'time_updated', 'body', 'attachments']).where('message_id', '=', m.id).orderBy('time_created').orderBy('id').execute(),
          );
          yield {
            kind: 'message',
            message: { id: m.id, sessionId: id, timeCreated: Number(m.time_created), timeUpdated: Number(m.time_updated), data: m.body },
            partTimes: parts.map((p) => [Number(p.time_created), Number(p.time_updated)]),
          };
          for (const p of parts) {
            const spans = parseSpans(p.attachments);
            const data = spans.length ? await collect(this.partBytes(p.body, spans)) : p.body;
            yield { kind: 'part', part: { id: p.id, sessionId: id, messageId: m.id, timeCreated: Number(p.time_created), timeUpdated: Number(p.time_updated), data } };
          }
        }
        const tail = page[page.length - 1];
        if (page.length < MESSAGE_PAGE || !tail) break;
        last = { created: Number(tail.time_created), id: tail.id };
      }
      yield { kind: 'end', sessionId: id };
    }
  }

  // ---- writes ---------------------------------------------------------------------------------

  /** Sessions held here; `whole` when their copy finished and was verified. */
  async sessionStates(ids: readonly string[]): Promise<Map<string, SessionState>> {
    return this.guard('read', async () => {
      const rows = await this.sessionRowsIn(ids, ['id', 'time_updated', 'complete', 'digest', 'messages', 'parts']);
      return new Map(
        rows.map((r) => [r.id, { updated: Number(r.time_updated), whole: Number(r.complete) === 1 && r.digest !== null, messages: Number(r.messages), parts: Number(r.parts) }]),
      );
    });
  }

  importSessions(items: Parameters<SessionWriter['importSessions']>[0], options: ImportOptions): Promise<ImportResult> {
    return importSessions(this, items, options);
  }

  async durable(): Promise<void> {
    await this.guard('flush', () => this.dialect.durableBarrier(this.db));
  }

  /** The server manages its own space. */
  async reclaim(): Promise<ReclaimResult> {
    const bytes = await this.databaseBytes();
    return { mode: 'none', bytesBefore: bytes, bytesAfter: bytes };
  }

  convertToIncremental(): Promise<ReclaimResult> {
    return Promise.reject(new SkError('usage', `${this.conn.display}: auto_vacuum is a SQLite setting; a server manages its own space`));
  }

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
      if (batch.length >= this.dialect.chunksPerStatement) await flush();
    }
    await flush();
    await this.db.updateTable('sk_attachment').set({ bytes, chunks: seq, complete: 1 }).where('sha256', '=', source.sha256).execute();
  }

  /**
   * A part row ready to insert, for bulk copies: attachments that fit in one chunk come back to be
   * inserted with the row batch (one statement for many); larger ones are stored now.
   */
  async preparePartBatched(input: PartInput): Promise<{ row: PartRow; small: SmallAttachment[]; json: boolean }> {
    const data = typeof input.data === 'string' ? Buffer.from(input.data) : input.data;
    const cut = cutPart(data, input.id);
    const small: SmallAttachment[] = [];
    for (const source of cut.sources) {
      const encoded = source.span.end - source.span.payloadStart;
      if (this.dialect.batchesSmallAttachments && encoded <= CHUNK_BYTES) {
        const chunks = [...attachmentChunks(data, source.span, source.kind)];
        small.push({ sha256: source.sha256, data: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks) });
      } else {
        await this.storeAttachment(data, source);
      }
    }
    // With a server-built JSON copy only whether it can be made is decided here.
    const serverJson = this.dialect.serverJson;
    const row = partRow(input, data.length, cut, this.dialect, serverJson !== null);
    return { row, small, json: serverJson ? serverJson.acceptable(row.body) : false };
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
    if (chunks.length) await this.dialect.insertIgnoring(this.db, 'sk_attachment_chunk', chunks);
    await this.dialect.insertIgnoring(this.db, 'sk_attachment', rows);
  }

  /** A part row ready to insert, its attachments stored first. */
  async preparePart(input: PartInput): Promise<PartRow> {
    const data = typeof input.data === 'string' ? Buffer.from(input.data) : input.data;
    const cut = cutPart(data, input.id);
    for (const source of cut.sources) await this.storeAttachment(data, source);
    return partRow(input, data.length, cut, this.dialect);
  }

  async insertProject(row: Row): Promise<void> {
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
  async putSession(row: Row, extras: StoredSessionExtras | null = null, project: Row | null = null, complete = true): Promise<void> {
    const values = sessionValues(row, extras);
    await this.guard('write session', async () => {
      await this.insertProject(project ?? defaultProjectRow(row['project_id']));
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
  async insertNewSession(row: Row, extras: StoredSessionExtras, project: Row | null, projects: Set<string>): Promise<void> {
    const values = sessionValues(row, extras);
    const projectRow = project ?? defaultProjectRow(row['project_id']);
    const projectId = String(projectRow['id']);
    if (!projects.has(projectId)) {
      await this.insertProject(projectRow);
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
      const row = messageRow(input, this.dialect);
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

  /** Deletes sessions with their children, messages, parts and now-unreferenced attachments. */
  async deleteTrees(roots: readonly string[], options: { expectedVersions?: ReadonlyMap<string, number> } = {}): Promise<DeleteResult> {
    return this.guard('delete', async () => {
      const result: DeleteResult = { deleted: [], sessionIds: [], partIds: [], changed: [] };
      for (const root of roots) {
        const tree = await this.sessionTrees([root]);
        const versions = await this.sessionVersions(tree);
        if (!versions.has(root)) continue;
        const expected = options.expectedVersions;
        if (expected && tree.some((id) => versions.has(id) && versions.get(id) !== expected.get(id))) {
          result.changed.push(root);
          continue;
        }
        for (const id of tree) {
          if (!versions.has(id)) continue;
          for (const partId of await this.deleteSessionRows(id, true)) result.partIds.push(partId);
          result.sessionIds.push(id);
        }
        result.deleted.push(root);
      }
      return result;
    });
  }

  /** Removes one session's rows (and, with `withSession`, the session itself); returns the part ids removed. */
  async deleteSessionRows(sessionId: string, withSession: boolean): Promise<string[]> {
    const shas = new Set<string>();
    const partIds: string[] = [];
    for (;;) {
      // Parts are removed in pages: a session can have very many, each with its attachment list.
      const rows = await this.dialect.limit(this.db.selectFrom('sk_part').select(['id', 'attachments']).where('session_id', '=', sessionId).orderBy('id'), 1000).execute();
      if (rows.length === 0) break;
      for (const r of rows) {
        partIds.push(r.id);
        for (const s of parseSpans(r.attachments)) shas.add(s.s);
      }
      await this.db.deleteFrom('sk_part').where('id', 'in', rows.map((r) => r.id)).execute();
    }
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('sk_part').where('session_id', '=', sessionId).execute();
      await trx.deleteFrom('sk_message').where('session_id', '=', sessionId).execute();
      if (withSession) await trx.deleteFrom('sk_session').where('id', '=', sessionId).execute();
    });
    await this.collectAttachments([...shas]);
    return partIds;
  }

  /** Drops attachments no part refers to any more. */
  private async collectAttachments(shas: readonly string[]): Promise<void> {
    for (const sha of new Set(shas)) {
      const used = await this.dialect.limit(this.db.selectFrom('sk_part').select('id').where('att_count', '>', 0).where('attachments', 'like', `%${sha}%`), 1).execute();
      if (used.length > 0) continue;
      await this.db.deleteFrom('sk_attachment_chunk').where('sha256', '=', sha).execute();
      await this.db.deleteFrom('sk_attachment').where('sha256', '=', sha).execute();
    }
  }

  async close(): Promise<void> {
    await this.db.destroy().catch(() => undefined);
  }
}

/** A stored session row as the list and the planner see it (drivers may hand BIGINTs over as strings). */
function sessionFacts(r: Pick<SkTables['sk_session'], 'id' | 'parent_id' | 'title' | 'time_created' | 'time_updated' | 'time_archived'>): SessionRowFacts {
  return {
    id: r.id,
    parentId: r.parent_id,
    title: r.title,
    timeCreated: Number(r.time_created),
    timeUpdated: Number(r.time_updated),
    timeArchived: r.time_archived === null ? null : Number(r.time_archived),
  };
}

async function collect(pieces: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const piece of pieces) parts.push(piece);
  return Buffer.concat(parts);
}
