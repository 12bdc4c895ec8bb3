/**
 * The external store: PostgreSQL, MySQL/MariaDB or SQL Server as a reader and a writer, so the
 * same commands browse it and an embedding app can use it as its primary store. Reads follow the
 * SQLite store's memory rules: keyset pages, sizes from stored counters, bodies fetched one large
 * value at a time as Buffers, attachments streamed chunk by chunk into the content-addressed cache.
 * Engine differences are the dialect's (dialect.ts); nothing here asks which engine it is.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SelectedSession } from '../../core/selectors.js';
import type { TrimPlan } from '../../core/trim.js';
import { emptyCompactionPlan, type CompactionPlan, type CompactionResult } from '../../core/compaction.js';
import type { AttachmentResult, ListResult, PageOptions, ShowResult, StatsOptions, StatsResult } from '../../core/api.js';
import { decodeSessionCursor, encodeCursor } from '../../core/cursor.js';
import { SkError } from '../../core/errors.js';
import { DEFAULT_SESSION_PAGE } from '../../core/page-rules.js';
import { attachmentFilename, attachmentRefName, describeDataUrl, parseAttachmentRef } from '../../core/part-scan.js';
import { familyFacts, type SessionRowFacts } from '../../core/planner.js';
import { crossedThresholds } from '../../core/thresholds.js';
import { AttachmentCache, type EntryWriter } from '../attachment-cache.js';
import { buildShowPage } from '../page-builder.js';
import type { ExportOptions, OpenedAttachment, RetentionFacts, SessionCounts, SessionProjects, SessionReader, StoreSize } from '../reader.js';
import type { HeldVersion, MirrorBase, MirrorOutcome, MirrorTarget, MirrorWrite, NewSessionsWrite } from '../mirror-target.js';
import type { ChunkedValue, Row, SessionItem, SessionItems, TableCounts } from '../session-items.js';
import { digestOfSession, heldVersions, mirrorBases, mirrorNewSessions, mirrorSession, recordBase, registerSource } from './mirror-write.js';
import type { AppliedTrim, DeleteOptions, DeleteResult, ExpectedSession, ImportOptions, ImportResult, ReclaimResult, SessionState, SessionWriter } from '../writer.js';
import { importSessions } from './bulk-import.js';
import { parseSpans, rebuildPart, type StoredSpan } from './codec.js';
import { SPILL_PART_BYTES, SpilledPart } from './part-spill.js';
import { connect, connectionError } from './connection.js';
import { ExternalContentSource } from './content-source.js';
import { ExternalContext } from './context.js';
import { migrateSchema, schemaVersion, SCHEMA_VERSION } from './schema.js';
import { messageRow, type MessageInput, type PartInput, type StoredSessionExtras } from './stored-rows.js';
import type { SkTables } from './tables.js';
import { collectAttachments, deleteSessionRows, preparePart, putSessionRow, recount, requireSession, sessionRowsIn, sessionStates, storedCounts, storedTableRows } from './writes.js';

/** Attachment chunks fetched per round trip (about 4 MB). */
const CHUNKS_PER_READ = 4;
const MESSAGE_PAGE = 200;

export class ExternalStore extends ExternalContext implements SessionReader, SessionWriter, MirrorTarget {
  /** Other writers of a server leave no cheap version mark: its pages are never cached. */
  readonly pagesCacheable = false;

  /**
   * Connects. With `create`, creates or upgrades the schema (what copies and writers want);
   * without, a database the tool never touched is a one-line error.
   */
  static async open(connectionString: string, options: { create?: boolean; poolSize?: number; bulk?: boolean } = {}): Promise<ExternalStore> {
    const { db, conn, dialect, copyIn } = await connect(connectionString, options.poolSize, options.bulk);
    const store = new ExternalStore(db, conn, dialect, copyIn);
    try {
      const version = await schemaVersion(db);
      // A newer build's tables are never written by this one (nor read: their meaning may have changed).
      if (version > SCHEMA_VERSION) throw new SkError('unsupported-schema', `${conn.display} has schema version ${version}, written by a newer session-keeper; this build knows up to ${SCHEMA_VERSION}: nothing was changed`);
      if (options.create) await migrateSchema(db, dialect);
      else if (version === 0) throw new SkError('not-found', `${conn.display} holds no session-keeper tables (run: session-keeper migrate --to <connectionString>)`);
    } catch (error) {
      await db.destroy().catch(() => undefined);
      throw connectionError(error, conn, 'schema');
    }
    return store;
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
        .where('complete', '=', 1)
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
      const largest = await this.dialect.limit(this.db.selectFrom('sk_session').select(['id', 'title', 'bytes']).where('complete', '=', 1).orderBy('bytes', 'desc').orderBy('id'), options.largest ?? 10).execute();
      const fileBytes = await this.databaseBytes();
      const n = (v: unknown): number => Number(v ?? 0);
      return {
        path: this.conn.display,
        schema: `${this.kind} v${SCHEMA_VERSION}`,
        layout: this.kind,
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
        eventsByType: [],
        compactableBytes: 0,
      };
    });
  }

  async listSessions(options: PageOptions = {}): Promise<ListResult> {
    const limit = options.limit ?? DEFAULT_SESSION_PAGE;
    return this.guard('list', async () => {
      let query = this.db
        .selectFrom('sk_session')
        .select(['id', 'parent_id', 'title', 'time_created', 'time_updated', 'time_archived', 'bytes'])
        // An interrupted copy's unfinished sessions are not listed: never half a session.
        .where('complete', '=', 1)
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
    const cache = new AttachmentCache(cacheDir);
    return this.decode(requested, cache, (ref) => cache.writerFor(ref, out));
  }

  /** Decodes one attachment into the cache and hands back the handle it was written through, open. */
  async openAttachment(requested: string, cacheDir: string): Promise<OpenedAttachment> {
    const cache = new AttachmentCache(cacheDir);
    const { partId, index } = parseAttachmentRef(requested);
    const { writer, handle } = await cache.createEntry(attachmentRefName(partId, index));
    try {
      return { result: await this.decode(requested, cache, () => writer), handle };
    } catch (error) {
      // Removes what was written (nothing, for a part not found) and closes the handle.
      writer.abort();
      throw error;
    }
  }

  private async decode(requested: string, cache: AttachmentCache, open: (ref: string) => EntryWriter): Promise<AttachmentResult> {
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
    let file;
    if (span?.k === 'b') {
      file = await AttachmentCache.fillAsync(open(ref), this.chunks(span.s));
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
      file = cache.decodeSpanInto(open(ref), url, describeDataUrl(url, 0, url.length, index), `part ${partId} attachment ${index}`);
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


  async sessionVersions(ids: readonly string[]): Promise<Map<string, number>> {
    return this.guard('read', async () => new Map((await sessionRowsIn(this, ids, ['id', 'time_updated'])).map((r) => [r.id, Number(r.time_updated)])));
  }

  /** Counts as recorded when each session's copy was verified. */
  async sessionCounts(ids: readonly string[]): Promise<Map<string, SessionCounts>> {
    return this.guard('read', async () =>
      new Map((await sessionRowsIn(this, ids, ['id', 'messages', 'parts'])).map((r) => [r.id, { messages: Number(r.messages), parts: Number(r.parts) }])),
    );
  }

  async contentBytes(ids?: readonly string[]): Promise<number> {
    return this.guard('read', async () => {
      if (!ids) {
        const row = await this.db.selectFrom('sk_session').select((eb) => eb.fn.sum<number>('bytes').as('b')).executeTakeFirst();
        return Number(row?.b ?? 0);
      }
      return (await sessionRowsIn(this, ids, ['id', 'bytes'])).reduce((sum, r) => sum + Number(r.bytes), 0);
    });
  }

  async allSessionIds(): Promise<string[]> {
    return this.guard('read', async () => (await this.db.selectFrom('sk_session').select('id').where('complete', '=', 1).orderBy('id').execute()).map((r) => r.id));
  }

  async rootsCreatedBefore(cutoff: number): Promise<string[]> {
    return this.guard('read', async () =>
      (await this.db.selectFrom('sk_session').select('id').where('complete', '=', 1).where('parent_id', 'is', null).where('time_created', '<', cutoff).orderBy('time_created').orderBy('id').execute()).map(
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
      return { liveBytes: await this.databaseBytes(), rootSessions: Number(row?.roots ?? 0), eventLogMark: 0 };
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

  /** Each root's project and the projects' names, as the session browser labels them (project rows are small). */
  async sessionProjects(): Promise<SessionProjects> {
    return this.guard('read', async () => {
      const roots = await this.db.selectFrom('sk_session').select(['id', 'project_id']).where('parent_id', 'is', null).where('complete', '=', 1).execute();
      const rows = await this.db.selectFrom('sk_project').select(['id', 'row_json']).orderBy('id').execute();
      const projects = rows.map((r) => {
        const row = (typeof r.row_json === 'string' ? JSON.parse(r.row_json) : r.row_json) as Row;
        return { id: r.id, name: typeof row['name'] === 'string' ? row['name'] : null, worktree: typeof row['worktree'] === 'string' ? row['worktree'] : '' };
      });
      return { rootProject: new Map(roots.map((r) => [r.id, r.project_id])), projects };
    });
  }

  async retentionFacts(withBytes: boolean): Promise<RetentionFacts> {
    return this.guard('read', async () => {
      const rows = await this.db.selectFrom('sk_session').select(['id', 'parent_id', 'title', 'time_created', 'time_updated', 'time_archived', 'bytes']).where('complete', '=', 1).execute();
      const facts = rows.map(sessionFacts);
      const bytes = new Map(withBytes ? rows.map((r) => [r.id, Number(r.bytes)]) : []);
      return { facts: familyFacts(facts, bytes, 1), storeBytes: await this.databaseBytes() };
    });
  }

  /**
   * Whole sessions as items, their parts rebuilt byte for byte. Only copies that finished and
   * were verified are handed out: a session an interrupted copy left behind is refused.
   */
  async *exportSessions(ids: readonly string[], _options?: ExportOptions): AsyncGenerator<SessionItem> {
    // Large parts wait in files of ours until their session has been taken whole.
    let spillDir: string | null = null;
    const spilled: SpilledPart[] = [];
    try {
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
        const counts: TableCounts = { message: 0, part: 0 };
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
            counts['message'] = (counts['message'] ?? 0) + 1;
            counts['part'] = (counts['part'] ?? 0) + parts.length;
            yield {
              kind: 'message',
              message: { id: m.id, sessionId: id, timeCreated: Number(m.time_created), timeUpdated: Number(m.time_updated), data: m.body },
              partTimes: parts.map((p) => [Number(p.time_created), Number(p.time_updated)]),
            };
            for (const p of parts) {
              const spans = parseSpans(p.attachments);
              const rebuilt = p.body.length + spans.reduce((n, s) => n + Number(s.e), 0);
              let data: Buffer | ChunkedValue = p.body;
              if (spans.length && rebuilt < SPILL_PART_BYTES) data = await collect(this.partBytes(p.body, spans));
              else if (spans.length) {
                spillDir ??= mkdtempSync(join(tmpdir(), 'session-keeper-export-'));
                const spill = await SpilledPart.write(spillDir, this.partBytes(p.body, spans));
                spilled.push(spill);
                data = spill.value();
              }
              yield { kind: 'part', part: { id: p.id, sessionId: id, messageId: m.id, timeCreated: Number(p.time_created), timeUpdated: Number(p.time_updated), data } };
            }
          }
          const tail = page[page.length - 1];
          if (page.length < MESSAGE_PAGE || !tail) break;
          last = { created: Number(tail.time_created), id: tail.id };
        }
        counts['todo'] = extras.todos.length;
        counts['session_share'] = extras.share ? 1 : 0;
        yield* storedTableRows(this, id, (body, spans) => collect(this.partBytes(body, spans)), counts);
        yield { kind: 'end', sessionId: id, counts };
        for (const spill of spilled.splice(0)) spill.remove();
      }
    } finally {
      for (const spill of spilled) spill.remove();
      if (spillDir) rmSync(spillDir, { recursive: true, force: true });
    }
  }

  // ---- writes ---------------------------------------------------------------------------------

  /** Sessions held here; `whole` when their copy finished and was verified. */
  sessionStates(ids: readonly string[]): Promise<Map<string, SessionState>> {
    return this.guard('read', () => sessionStates(this, ids));
  }

  importSessions(items: Parameters<SessionWriter['importSessions']>[0], options: ImportOptions): Promise<ImportResult> {
    return importSessions(this, items, options);
  }

  /** A copy on a server keeps the event log it was given (compacted before, when compaction is on). */
  async compactionPlan(): Promise<CompactionPlan> {
    return emptyCompactionPlan();
  }

  async compactEvents(): Promise<CompactionResult> {
    throw new SkError('usage', `${this.conn.display}: compaction works on OpenCode's SQLite file`);
  }

  /** A server keeps its own pages whole. */
  async assertIntact(): Promise<void> {}

  async durable(): Promise<void> {
    await this.guard('flush', () => this.dialect.durableBarrier(this.db));
  }

  /** The server manages its own space. */
  async reclaim(): Promise<ReclaimResult> {
    const bytes = await this.databaseBytes();
    return { mode: 'none', bytesBefore: bytes, bytesAfter: bytes };
  }

  selectSessions(): Promise<SelectedSession[]> {
    return Promise.reject(new SkError('usage', `${this.conn.display}: session selectors work on OpenCode's SQLite file`));
  }

  // eslint-disable-next-line require-yield
  async *exportTrimmedRows(): AsyncGenerator<SessionItem> {
    throw new SkError('usage', `${this.conn.display}: trim works on OpenCode's SQLite file`);
  }

  trimPlan(): Promise<TrimPlan> {
    return Promise.reject(new SkError('usage', `${this.conn.display}: trim works on OpenCode's SQLite file`));
  }

  applyTrim(): Promise<AppliedTrim> {
    return Promise.reject(new SkError('usage', `${this.conn.display}: trim works on OpenCode's SQLite file`));
  }

  convertToIncremental(): Promise<ReclaimResult> {
    return Promise.reject(new SkError('usage', `${this.conn.display}: auto_vacuum is a SQLite setting; a server manages its own space`));
  }






  // ---- the mirror (sync): see mirror-write.ts -------------------------------------------------

  registerSource(sourceId: string, name: string): Promise<void> {
    return this.guard('register mirror', () => registerSource(this, sourceId, name));
  }

  mirrorBases(sourceId: string): Promise<Map<string, MirrorBase>> {
    return this.guard('read mirror state', () => mirrorBases(this, sourceId));
  }

  heldVersions(ids: readonly string[]): Promise<Map<string, HeldVersion>> {
    return this.guard('read mirror state', () => heldVersions(this, ids));
  }

  digestOf(items: SessionItems): Promise<{ digest: string; updated: number }> {
    return this.guard('digest', () => digestOfSession(this, items));
  }

  mirrorSession(items: () => SessionItems, write: MirrorWrite): Promise<MirrorOutcome> {
    return this.guard('mirror session', () => mirrorSession(this, items, write));
  }

  mirrorNewSessions(items: SessionItems, write: NewSessionsWrite): Promise<void> {
    return this.guard('mirror new sessions', () => mirrorNewSessions(this, items, write));
  }

  recordBase(sourceId: string, sessionId: string, base: MirrorBase): Promise<void> {
    return this.guard('write mirror state', () => recordBase(this, sourceId, sessionId, base));
  }

  /** Inserts (or replaces) a session row; its messages and parts are left as they are. */
  async putSession(row: Row, extras: StoredSessionExtras | null = null, project: Row | null = null, complete = true): Promise<void> {
    await this.guard('write session', () => putSessionRow(this, row, extras, project, complete));
  }




  /** Creates or replaces a message (its parts stay). */
  async putMessage(input: MessageInput): Promise<void> {
    await this.guard('write message', async () => {
      await requireSession(this, input.sessionId);
      const row = messageRow(input, this.dialect);
      await this.db.transaction().execute(async (trx) => {
        await trx.deleteFrom('sk_message').where('id', '=', input.id).execute();
        await trx.insertInto('sk_message').values(row).execute();
        await recount(trx, input.sessionId);
      });
    });
  }

  /** Creates or replaces a part; its attachments go to the content-addressed table. */
  async putPart(input: PartInput): Promise<void> {
    await this.guard('write part', async () => {
      await requireSession(this, input.sessionId);
      const message = await this.db.selectFrom('sk_message').select('id').where('id', '=', input.messageId).executeTakeFirst();
      if (!message) throw new SkError('not-found', `no message ${input.messageId} in ${this.conn.display}`);
      const row = await preparePart(this, input);
      const old = await this.db.selectFrom('sk_part').select('attachments').where('id', '=', input.id).executeTakeFirst();
      await this.db.transaction().execute(async (trx) => {
        await trx.deleteFrom('sk_part').where('id', '=', input.id).execute();
        await trx.insertInto('sk_part').values(row).execute();
        await recount(trx, input.sessionId);
      });
      if (old) await collectAttachments(this, parseSpans(old.attachments).map((s) => s.s));
    });
  }

  /** Deletes sessions with their children, their rows and now-unreferenced attachments. */
  async deleteTrees(roots: readonly string[], options: DeleteOptions = {}): Promise<DeleteResult> {
    return this.guard('delete', async () => {
      const result: DeleteResult = { deleted: [], sessionIds: [], partIds: [], changed: [], notReached: [] };
      for (const [index, root] of roots.entries()) {
        if (options.signal?.aborted) {
          result.notReached.push(...roots.slice(index));
          break;
        }
        const tree = await this.sessionTrees([root]);
        const versions = await this.sessionVersions(tree);
        if (!versions.has(root)) continue;
        if (options.expected && !(await this.unchanged(tree, versions, options.expected))) {
          result.changed.push(root);
          options.onTree?.(root, false);
          continue;
        }
        for (const id of tree) {
          if (!versions.has(id)) continue;
          for (const partId of await deleteSessionRows(this, id, true)) result.partIds.push(partId);
          result.sessionIds.push(id);
        }
        result.deleted.push(root);
        options.onTree?.(root, true);
      }
      return result;
    });
  }

  /** Whether every session of a tree is still what the caller expected: same version, same rows per table. */
  private async unchanged(tree: readonly string[], versions: ReadonlyMap<string, number>, expected: ReadonlyMap<string, ExpectedSession>): Promise<boolean> {
    for (const id of tree) {
      if (!versions.has(id)) continue;
      const want = expected.get(id);
      if (!want || versions.get(id) !== want.updated) return false;
      if (!want.counts) continue;
      const now = await storedCounts(this, id);
      for (const [table, rows] of Object.entries(want.counts)) if ((now[table] ?? 0) !== rows) return false;
    }
    return true;
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
