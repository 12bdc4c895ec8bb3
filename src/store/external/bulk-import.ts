/**
 * Sessions into a server from a stream of items, fast and verified. Rows of many sessions are
 * batched into INSERTs (or, where the dialect has a bulk load, COPYs) bounded in rows and bytes, a
 * few in flight at once on pooled connections while later sessions are read and cut. A value too
 * big to hold goes into its own COPY chunk by chunk, before the next item is read. Sessions are
 * verified in groups on other connections: a group waits for the commits of its rows, reads back
 * the server's digest of them (ids, times, body hashes: no body comes back) and compares it with
 * what was sent; only then is a session marked complete. An interrupted copy leaves sessions
 * incomplete, which the next copy replaces.
 */
import { createHash } from 'node:crypto';
import { sql, type RawBuilder } from 'kysely';
import { SkError } from '../../core/errors.js';
import { EVENT_LOG_TABLES } from '../../core/opencode-format.js';
import { rowPayloadBytes } from '../../core/table-row.js';
import { isSyncIterable, rowId, wholePayload, type Row, type SessionItem, type SessionItems, type TableCounts } from '../session-items.js';
import type { ImportOptions, ImportResult } from '../writer.js';
import type { BulkRow, CopyCell, CopyColumn, StreamedValue } from './dialect.js';
import { COPY_COLUMNS } from './copy-columns.js';
import { rowLine, sessionDigest, sha256Hex, tableRowLine, type SessionCheck } from './digest.js';
import { ExternalContext } from './context.js';
import {
  deleteSessionRows,
  insertNewSessions,
  insertSmallAttachments,
  preparePartBatched,
  preparePartStreamed,
  storeLargeAttachments,
  putSessionRow,
  serverJudgesJson,
  sessionStates,
  storeTableRows,
  type BatchedPart,
  type NewSession,
  type SmallAttachment,
} from './writes.js';
import { messageRow, type MessageRow, type PartRow } from './stored-rows.js';

/** Bytes of row data per INSERT statement. */
const BATCH_BYTES = 4 * 1024 * 1024;
/** Rows per COPY (about BATCH_BYTES of typical rows: fewer statements and commits than INSERTs allow). */
const COPY_BATCH_ROWS = 1000;
/** Batches inserting at once per table (the pool has 4 connections; attachments and reads need one). */
const MAX_IN_FLIGHT = 2;
/** Rows read back per verification group (and sessions per group). */
const VERIFY_ROWS = 4000;
const VERIFY_SESSIONS = 64;
/** Rows a group may have for the server to digest it in one query (its lines are sorted in the server's memory). */
const SERVER_DIGEST_ROWS = 200_000;
/** Verification groups running at once, beside the inserts. */
const MAX_VERIFYING = 2;

type LoadedRow = Omit<MessageRow, 'body'> & Partial<Omit<PartRow, 'body'>> & { body: Buffer | StreamedValue };

/** A row's cells in COPY_COLUMNS order; with `json` the body's text is also its jsonb copy. */
function copyCells(table: 'sk_message' | 'sk_part', row: LoadedRow, json: boolean): CopyCell[] {
  const columns = COPY_COLUMNS[table];
  const values = row as unknown as Record<string, CopyCell | undefined>;
  const cells = new Array<CopyCell>(columns.length);
  for (let i = 0; i < columns.length; i++) {
    const name = (columns[i] as CopyColumn).name;
    cells[i] = name === 'data' ? (json ? row.body : null) : (values[name] ?? null);
  }
  return cells;
}

/** A streamed value that hashes its bytes as they are read; `sha256()` is the digest of the last full read. */
function hashedValue(value: StreamedValue): { value: StreamedValue; sha256: () => string } {
  let digest: string | null = null;
  return {
    value: {
      bytes: value.bytes,
      *chunks() {
        digest = null;
        const hash = createHash('sha256');
        for (const chunk of value.chunks()) {
          hash.update(chunk);
          yield chunk;
        }
        digest = hash.digest('hex');
      },
    },
    sha256: () => {
      if (digest === null) throw new RangeError('a streamed body was not read to its end');
      return digest;
    },
  };
}

/**
 * Reads one session's stored rows back (ids, times, the server's sha256 of each body, attachment
 * lists: never the bodies) and digests them exactly as the copy did.
 */
export async function storedCheck(store: ExternalContext, sessionId: string): Promise<SessionCheck> {
  const lines: string[] = [];
  let messages = 0;
  let parts = 0;
  for (const r of await storedRowLines(store, [sessionId])) lines.push(r.line);
  for (const table of ['sk_message', 'sk_part'] as const) {
    let lastId: string | undefined;
    for (;;) {
      let query = store.db
        .selectFrom(table)
        .select(['id', 'time_created', 'time_updated', store.dialect.byteLength('body').as('n'), store.dialect.sha256Hex('body').as('sha')])
        .select(table === 'sk_part' ? sql<string | null>`attachments`.as('spans') : sql<null>`NULL`.as('spans'))
        .where('session_id', '=', sessionId)
        .orderBy('id');
      if (lastId !== undefined) query = query.where('id', '>', lastId);
      const page = await store.dialect.limit(query, 2000).execute();
      for (const r of page) {
        lines.push(rowLine(table === 'sk_part' ? 'p' : 'm', r.id, Number(r.time_created), Number(r.time_updated), Number(r.n), String(r.sha).toLowerCase(), r.spans));
      }
      if (table === 'sk_part') parts += page.length;
      else messages += page.length;
      if (page.length < 2000) break;
      lastId = page[page.length - 1]?.id;
    }
  }
  return { id: sessionId, messages, parts, digest: sessionDigest(lines) };
}

/**
 * Checks of several sessions read back from the server: digested by the server where the engine
 * can (one query, no rows back), else in one read of their lines (ids, times, the server's sha256
 * of each body); a group over VERIFY_ROWS is read session by session, in pages, by `storedCheck`.
 */
async function storedChecks(store: ExternalContext, sent: readonly SessionCheck[]): Promise<Map<string, SessionCheck>> {
  const storedDigests = store.dialect.storedDigests;
  if (storedDigests && sent.reduce((n, s) => n + s.messages + s.parts, 0) <= SERVER_DIGEST_ROWS) {
    const found = await storedDigests(store.db, sent.map((s) => s.id));
    const empty = sessionDigest([]);
    const checks = new Map(sent.map((s) => [s.id, found.get(s.id) ?? { id: s.id, messages: 0, parts: 0, digest: empty }]));
    // The server sorts bytes, JavaScript UTF-16 units: a session that differs is read back row by row before it counts as failed.
    const differing = sent.filter((s) => !sameCheck(s, checks.get(s.id)));
    if (differing.length > 0) for (const [id, check] of await storedRowChecks(store, differing)) checks.set(id, check);
    return checks;
  }
  return await storedRowChecks(store, sent);
}

const sameCheck = (a: SessionCheck, b: SessionCheck | undefined): boolean => b !== undefined && a.messages === b.messages && a.parts === b.parts && a.digest === b.digest;

/** `storedChecks` from the rows themselves: their lines come back and are digested here. */
async function storedRowChecks(store: ExternalContext, sent: readonly SessionCheck[]): Promise<Map<string, SessionCheck>> {
  const checks = new Map<string, SessionCheck>();
  if (sent.length === 1 || sent.reduce((n, s) => n + s.messages + s.parts, 0) > VERIFY_ROWS) {
    for (const s of sent) checks.set(s.id, await storedCheck(store, s.id));
    return checks;
  }
  const ids = sent.map((s) => s.id);
  const lines = new Map<string, string[]>(ids.map((id) => [id, []]));
  const counts = new Map<string, { messages: number; parts: number }>(ids.map((id) => [id, { messages: 0, parts: 0 }]));
  for (const table of ['sk_message', 'sk_part'] as const) {
    const rows = await store.db
      .selectFrom(table)
      .select(['session_id', 'id', 'time_created', 'time_updated', store.dialect.byteLength('body').as('n'), store.dialect.sha256Hex('body').as('sha')])
      .select(table === 'sk_part' ? sql<string | null>`attachments`.as('spans') : sql<null>`NULL`.as('spans'))
      .where('session_id', 'in', ids)
      .execute();
    for (const r of rows) {
      lines.get(r.session_id)?.push(rowLine(table === 'sk_part' ? 'p' : 'm', r.id, Number(r.time_created), Number(r.time_updated), Number(r.n), String(r.sha).toLowerCase(), r.spans));
      const c = counts.get(r.session_id);
      if (c && table === 'sk_part') c.parts++;
      else if (c) c.messages++;
    }
  }
  for (const r of await storedRowLines(store, ids)) lines.get(r.sessionId)?.push(r.line);
  for (const id of ids) {
    const c = counts.get(id) ?? { messages: 0, parts: 0 };
    checks.set(id, { id, messages: c.messages, parts: c.parts, digest: sessionDigest(lines.get(id) ?? []) });
  }
  return checks;
}

/** The digest lines of sessions' stored table rows (their bodies hashed by the server). */
async function storedRowLines(store: ExternalContext, ids: readonly string[]): Promise<{ sessionId: string; line: string }[]> {
  const rows = await store.db
    .selectFrom('sk_row')
    .select(['session_id', 'table_name', 'ord', 'attachments', store.dialect.byteLength('body').as('n'), store.dialect.sha256Hex('body').as('sha')])
    .where('session_id', 'in', ids)
    .execute();
  return rows.map((r) => ({ sessionId: r.session_id, line: tableRowLine(r.table_name, Number(r.ord), Number(r.n), String(r.sha).toLowerCase(), r.attachments) }));
}

/** A promise settled from outside, observed at once so a failure is never unhandled. */
interface Ticket {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: unknown) => void;
}

function ticket(): Ticket {
  let resolve: () => void = () => undefined;
  let reject: (error: unknown) => void = () => undefined;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

/** A buffered row: its batch's commit, and the flush its row began (awaited before the next row). */
interface AddedRow {
  committed: Promise<void>;
  flushing: Promise<void> | null;
}

/**
 * Rows of one table on their way to the server, across sessions: inserted in batches bounded in
 * rows and bytes, up to MAX_IN_FLIGHT at once on pooled connections while the next batch is read.
 * Each buffered row's `ticket()` settles when the batch holding it is committed.
 */
class RowBatch<T extends MessageRow | PartRow> {
  private rows: { row: T; json: boolean }[] = [];
  private attachments: SmallAttachment[] = [];
  private bytes = 0;
  private current = ticket();
  /** INSERTs still running (on other pooled connections) while the next batch is read and cut. */
  private inFlight: Promise<void>[] = [];
  /** PostgreSQL: bodies sent once, the jsonb copy made by the server. */
  readonly serverJson: boolean;

  constructor(
    private readonly store: ExternalContext,
    private readonly table: 'sk_message' | 'sk_part',
    /** Called as a batch goes: the session rows its rows wait for are stored now, if they are not yet. */
    private readonly beforeSend: () => void,
  ) {
    this.serverJson = store.dialect.serverJson !== null;
    this.batchRows = store.copyIn ? COPY_BATCH_ROWS : store.dialect.batchRows;
  }

  /** Rows per statement: a COPY has no parameter limit, so only BATCH_BYTES bounds it. */
  private readonly batchRows: number;
  /** The session rows the buffered rows belong to: a batch is sent only once they are stored. */
  private sessionsStored = new Set<Promise<void>>();

  /**
   * Buffers a row of the session whose own row `sessionStored` stores; gives the promise of its
   * batch's commit, and the flush to wait for before the next row when this one filled the batch.
   * A promise only when the batch had to go out first, so most rows cost none.
   */
  add(row: T, json: boolean, sessionStored: Promise<void>, attachments: readonly SmallAttachment[] = []): AddedRow | Promise<AddedRow> {
    let bytes = row.body.length + (row.data ? row.data.length : 0);
    for (const a of attachments) bytes += a.data.length;
    // A big row starts a statement of its own rather than push one past BATCH_BYTES (MySQL refuses packets over 16 MB).
    if (this.rows.length > 0 && this.bytes + bytes > BATCH_BYTES) return this.flush().then(() => this.push(row, json, sessionStored, attachments, bytes));
    return this.push(row, json, sessionStored, attachments, bytes);
  }

  private push(row: T, json: boolean, sessionStored: Promise<void>, attachments: readonly SmallAttachment[], bytes: number): AddedRow {
    this.rows.push({ row, json });
    this.sessionsStored.add(sessionStored);
    for (const a of attachments) this.attachments.push(a);
    this.bytes += bytes;
    const committed = this.current.promise;
    const full = this.rows.length >= this.batchRows || this.bytes >= BATCH_BYTES;
    return { committed, flushing: full ? this.flush() : null };
  }

  async flush(): Promise<void> {
    // Up to MAX_IN_FLIGHT batches at once: the server parses and stores them on several backends.
    while (this.inFlight.length >= MAX_IN_FLIGHT) await this.inFlight.shift();
    if (this.rows.length === 0) return;
    const rows = this.rows;
    const attachments = this.attachments;
    const done = this.current;
    const sessionsStored = [...this.sessionsStored];
    this.rows = [];
    this.attachments = [];
    this.sessionsStored = new Set();
    this.bytes = 0;
    this.current = ticket();
    this.beforeSend();
    // Rows never commit before their session's row: a resume finds a session absent only when none of its rows is there.
    const insert = Promise.all(sessionsStored)
      .then(() => insertSmallAttachments(this.store, attachments))
      .then(() => this.insert(rows));
    insert.then(done.resolve, done.reject);
    // Observed now so a failure is never unhandled; rethrown when it is awaited.
    insert.catch(() => undefined);
    this.inFlight.push(insert);
  }

  /** Waits for every INSERT; rethrows the first failure. */
  async finish(): Promise<void> {
    await this.flush();
    const pending = this.inFlight.splice(0);
    const results = await Promise.allSettled(pending);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  private async run(rows: { row: T; json: boolean }[]): Promise<void> {
    const copyIn = this.store.copyIn;
    if (copyIn) {
      const table = this.table;
      // Each row's cells are made as the COPY reaches it: only one row's list is alive at a time.
      const cells = function* (): Generator<CopyCell[]> {
        for (const r of rows) yield copyCells(table, r.row, r.json);
      };
      const stored = await copyIn.load(table, COPY_COLUMNS[table], cells());
      if (stored !== rows.length) throw new SkError('corrupt', `${this.table}: ${rows.length} rows sent, ${stored} stored in ${this.store.location}`);
      return;
    }
    const serverJson = this.store.dialect.serverJson;
    if (serverJson) await this.store.db.executeQuery(serverJson.bulkInsert(this.table, rows as unknown as BulkRow[]));
    else await this.store.db.insertInto(this.table).values(rows.map((r) => r.row)).execute();
  }

  private async insert(all: { row: T; json: boolean }[]): Promise<void> {
    // Big bodies whose JSON only the server checks go one per statement: a refusal costs one row.
    const aloneAbove = this.store.dialect.serverJson?.aloneAbove ?? Infinity;
    const alone = all.filter((r) => this.serverJson && r.json && r.row.body.length > aloneAbove);
    const rows = alone.length ? all.filter((r) => !alone.includes(r)) : all;
    for (const r of alone) {
      try {
        await this.run([r]);
      } catch {
        await this.run([{ row: r.row, json: false }]);
      }
    }
    if (rows.length > 0) await this.halving(rows);
  }

  /**
   * Stores rows; when the statement fails over a JSON copy the engine refused (its JSON rules
   * differ from JavaScript's), the exact body is what matters: the batch is retried in halves down
   * to the refused rows, which go in without the queryable copy (k refusals: O(k log n) statements).
   */
  private async halving(rows: { row: T; json: boolean }[]): Promise<void> {
    try {
      await this.run(rows);
    } catch (error) {
      const hasJson = (r: { row: T; json: boolean }): boolean => (this.serverJson ? r.json : r.row.data !== null);
      if (!rows.some(hasJson)) throw error;
      if (rows.length === 1) {
        const r = rows[0] as { row: T; json: boolean };
        await this.run([{ row: { ...r.row, data: null }, json: false }]);
        return;
      }
      const half = Math.ceil(rows.length / 2);
      await this.halving(rows.slice(0, half));
      await this.halving(rows.slice(half));
    }
  }
}

interface Batches {
  messages: RowBatch<MessageRow>;
  parts: RowBatch<PartRow>;
  /** project ids already stored by this copy */
  projects: Set<string>;
}

/** A session whose rows were sent: verified once every batch holding them is committed. */
interface SentSession {
  sent: SessionCheck;
  /** commits its rows wait on (batches and the session row) */
  committed: Set<Promise<void>>;
  /** source bytes (message and part JSON) */
  bytes: number;
  /** The digest lines of its rows, kept only for a `complete` hook. */
  lines: readonly string[] | null;
}

/** A verified session about to be marked complete, as a `complete` hook sees it. */
export interface VerifiedSession {
  id: string;
  /** The digest lines of its rows, as sent and as read back (sorted). */
  lines: readonly string[];
  /** Source bytes (message and part JSON, rows outside the event log). */
  bytes: number;
}

export interface BulkImportHooks {
  /**
   * Runs in the transaction that marks a verified group complete, so what the caller keeps beside
   * a session (the mirror's state) is recorded with it or not at all; returns the digest each
   * session is stored with (the mirror's own, which also covers the session row).
   */
  complete?: (trx: ExternalContext, sessions: readonly VerifiedSession[]) => Promise<ReadonlyMap<string, string>>;
}

/** Marks verified sessions complete, with their counts, digest and source bytes, in one statement. */
async function markComplete(store: ExternalContext, sessions: readonly SentSession[], digests?: ReadonlyMap<string, string>): Promise<void> {
  const caseOf = (value: (s: SentSession) => RawBuilder<unknown>): RawBuilder<unknown> =>
    sql`CASE id ${sql.join(sessions.map((s) => sql`WHEN ${s.sent.id} THEN ${value(s)}`), sql` `)} END`;
  await sql`UPDATE sk_session SET complete = 1,
    digest = ${caseOf((s) => sql`${digests?.get(s.sent.id) ?? s.sent.digest}`)},
    messages = ${caseOf((s) => sql.lit(s.sent.messages))},
    parts = ${caseOf((s) => sql.lit(s.sent.parts))},
    bytes = ${caseOf((s) => sql.lit(s.bytes))}
    WHERE id IN (${sql.join(sessions.map((s) => s.sent.id))})`.execute(store.db);
}

/** One session on its way in: what was sent so far, for its digest. */
interface Current {
  id: string;
  /** Digest lines of its messages, parts and other rows, kept apart: each kind nearly sorted already. */
  messageLines: string[];
  partLines: string[];
  rowLines: string[];
  messages: number;
  parts: number;
  /** Rows of the session's other tables, per table, and the next row's place among them. */
  rows: TableCounts;
  ord: number;
  bytes: number;
  committed: Set<Promise<void>>;
  /** The session's own row stored: its other rows are sent only after it (see RowBatch.add). */
  stored: Promise<void>;
  /** Rows the header carried (todos, the share). */
  header: TableCounts;
}

class BulkImport {
  private readonly batches: Batches;
  private readonly result: ImportResult = { imported: [], skipped: [], bytes: 0 };
  private group: SentSession[] = [];
  private groupRows = 0;
  private readonly verifying: Promise<void>[] = [];
  private current: Current | null = null;
  private skipping = false;
  private readonly serverJson: boolean;
  /** New sessions whose row is not stored yet: one statement stores them when the first of their rows is sent. */
  private pendingSessions: (NewSession & { stored: Ticket })[] = [];

  constructor(
    private readonly store: ExternalContext,
    private readonly options: ImportOptions,
    private readonly hooks: BulkImportHooks = {},
  ) {
    const storeSessions = (): void => this.storeSessions();
    this.batches = { messages: new RowBatch<MessageRow>(store, 'sk_message', storeSessions), parts: new RowBatch<PartRow>(store, 'sk_part', storeSessions), projects: new Set() };
    this.serverJson = store.dialect.serverJson !== null;
  }

  /**
   * Takes one item; a promise only when it must wait (a round trip, a batch that went out, a
   * verification group), so the many rows that only join a batch cost no promise.
   */
  take(item: SessionItem): Promise<void> | undefined {
    const store = this.store;
    switch (item.kind) {
      case 'session': {
        const id = rowId(item.header.session);
        if (this.options.present) return this.startSession(item.header, this.options.present.has(id));
        return sessionStates(store, [id]).then((states) => this.startSession(item.header, states.has(id)));
      }
      case 'message': {
        if (this.skipping || !this.current) return undefined;
        const data = item.message.data;
        if (!Buffer.isBuffer(data) && store.copyIn) return this.streamedMessage(item.message, data);
        // Without a bulk load a server takes each value whole (one bound parameter): a chunked one is gathered here.
        const m = { ...item.message, data: wholePayload(data) };
        const row = messageRow(m, store.dialect, this.serverJson);
        const cur = this.current;
        cur.messageLines.push(rowLine('m', row.id, row.time_created, row.time_updated, row.body.length, sha256Hex(row.body), null));
        cur.messages++;
        cur.bytes += m.data.length;
        this.options.onRows?.(row.bytes, 1);
        return this.batched(this.batches.messages, cur, row, serverJudgesJson(store, row.body));
      }
      case 'part': {
        if (this.skipping || !this.current) return undefined;
        const data = item.part.data;
        if (!Buffer.isBuffer(data)) return this.streamedPart({ ...item.part, data });
        const prepared = preparePartBatched(store, { ...item.part, data });
        const large = prepared.large;
        if (large) return storeLargeAttachments(store, large).then(() => this.batchedPart(prepared));
        return this.batchedPart(prepared);
      }
      case 'rows':
        if (this.skipping || !this.current) return undefined;
        return this.tableRows(this.current, item.table, item.rows);
      case 'end': {
        if (this.skipping || !this.current) return undefined;
        const cur = this.current;
        this.current = null;
        // Every row the source sent came through: a table this copy does not carry stops here.
        const received: TableCounts = { message: cur.messages, part: cur.parts, ...cur.rows, ...cur.header };
        for (const [table, rows] of Object.entries(item.counts)) {
          if ((received[table] ?? 0) !== rows) throw new SkError('corrupt', `session ${cur.id}: ${rows} ${table} rows were sent, ${received[table] ?? 0} arrived in ${store.location}`);
        }
        this.result.bytes += cur.bytes;
        // Each kind's lines come nearly in order (ids ascend with time), so their sort finds long runs.
        const lines = [...cur.messageLines, ...cur.partLines, ...cur.rowLines];
        const sent: SentSession = {
          sent: { id: cur.id, messages: cur.messages, parts: cur.parts, digest: sessionDigest(lines) },
          committed: cur.committed,
          bytes: cur.bytes,
          lines: this.hooks.complete ? lines : null,
        };
        const rows = cur.messages + cur.parts + cur.ord;
        const join = (): void => {
          this.group.push(sent);
          this.groupRows += rows;
        };
        if (this.group.length > 0 && (this.groupRows + rows > VERIFY_ROWS || this.group.length >= VERIFY_SESSIONS)) return this.submit().then(join);
        join();
        return undefined;
      }
    }
  }

  /** A session's own row: inserted (not awaited: its rows wait for it), or cleared and replaced when the server has it. */
  private startSession(header: Extract<SessionItem, { kind: 'session' }>['header'], exists: boolean): Promise<void> | undefined {
    const store = this.store;
    const { session, project, todos, share, diff } = header;
    const id = rowId(session);
    const extras = { todos, share, diff: diff ? diff.toString('utf8') : null };
    this.skipping = exists && this.options.existing === 'skip';
    if (this.skipping) {
      this.result.skipped.push(id);
      return undefined;
    }
    const begin = (committed: Set<Promise<void>>, stored: Promise<void>): void => {
      this.options.onRows?.(0, 1);
      this.current = { id, messageLines: [], partLines: [], rowLines: [], messages: 0, parts: 0, rows: {}, ord: 0, bytes: 0, committed, stored, header: { todo: todos.length, session_share: share ? 1 : 0 } };
    };
    // A session left half-copied (or changed since) is cleared first: no duplicates on resume.
    if (exists) {
      return (async () => {
        await deleteSessionRows(store, id, true);
        await putSessionRow(store, session, extras, project, false);
        begin(new Set(), Promise.resolve());
      })();
    }
    const stored = ticket();
    this.pendingSessions.push({ row: session, extras, project, stored });
    begin(new Set([stored.promise]), stored.promise);
    return undefined;
  }

  /**
   * Stores the pending session rows in one statement (a few where the engine's parameters run
   * out). Called before anything waits for one of them: a batch going out, a row sent alone, a
   * verification group.
   */
  private storeSessions(): void {
    const pending = this.pendingSessions;
    if (pending.length === 0) return;
    this.pendingSessions = [];
    insertNewSessions(this.store, pending, this.batches.projects).then(
      () => pending.forEach((p) => p.stored.resolve()),
      (error: unknown) => pending.forEach((p) => p.stored.reject(error)),
    );
  }

  /** Adds a row to its table's batch; a promise only when the batch went out and the next row waits for room. */
  private batched<T extends MessageRow | PartRow>(batch: RowBatch<T>, cur: Current, row: T, json: boolean, small?: readonly SmallAttachment[]): Promise<void> | undefined {
    const added = batch.add(row, json, cur.stored, small);
    if (added instanceof Promise) {
      return added.then((a) => {
        cur.committed.add(a.committed);
        return a.flushing ?? undefined;
      });
    }
    cur.committed.add(added.committed);
    return added.flushing ?? undefined;
  }

  private batchedPart(prepared: BatchedPart): Promise<void> | undefined {
    const cur = this.current;
    if (!cur) throw new SkError('internal', `part ${prepared.row.id} outside a session`);
    const { row, small, json } = prepared;
    cur.partLines.push(rowLine('p', row.id, row.time_created, row.time_updated, row.body.length, sha256Hex(row.body), row.attachments));
    cur.parts++;
    cur.bytes += row.bytes;
    this.options.onRows?.(row.bytes, 1);
    return this.batched(this.batches.parts, cur, row, json, small);
  }

  /** A message too big to hold: stored alone, streamed, once its session's row is. */
  private async streamedMessage(message: Extract<SessionItem, { kind: 'message' }>['message'], data: StreamedValue): Promise<void> {
    const cur = this.current;
    if (!cur) return;
    const empty = messageRow({ ...message, data: Buffer.alloc(0) }, this.store.dialect, true);
    this.storeSessions();
    await cur.stored;
    const row = await this.streamAlone('sk_message', { ...empty, bytes: data.bytes, body: data });
    cur.messageLines.push(rowLine('m', row.id, row.time_created, row.time_updated, data.bytes, row.sha256, null));
    cur.messages++;
    cur.bytes += data.bytes;
    this.options.onRows?.(data.bytes, 1);
  }

  /** A part read in chunks: its attachments cut out as it streams; its body batched, or stored alone when still too big. */
  private async streamedPart(part: Extract<SessionItem, { kind: 'part' }>['part'] & { data: StreamedValue }): Promise<void> {
    const store = this.store;
    const prepared = await preparePartStreamed(store, part, store.copyIn !== null);
    const cur = this.current;
    if (!cur) return;
    if (!prepared.streamed) {
      await this.batchedPart({ row: prepared.row, small: prepared.small, json: prepared.json, large: null });
      return;
    }
    // The value is readable only until the next item: its body is stored now, on its own.
    await insertSmallAttachments(store, prepared.small);
    this.storeSessions();
    await cur.stored;
    const row = await this.streamAlone('sk_part', prepared.row);
    cur.partLines.push(rowLine('p', row.id, row.time_created, row.time_updated, prepared.row.body.bytes, row.sha256, row.attachments ?? null));
    cur.parts++;
    cur.bytes += prepared.row.bytes;
    this.options.onRows?.(prepared.row.bytes, 1);
  }

  /** Rows of one of the session's other tables, by the engine's bulk load once the session's row is stored. */
  private async tableRows(cur: Current, table: string, rows: readonly Row[]): Promise<void> {
    this.storeSessions();
    await cur.stored;
    const stored = await storeTableRows(this.store, cur.id, table, rows, cur.ord, { bulk: true });
    cur.ord += rows.length;
    cur.rows[table] = (cur.rows[table] ?? 0) + rows.length;
    for (const line of stored.lines) cur.rowLines.push(line);
    const bytes = rows.reduce((n, row) => n + rowPayloadBytes(row), 0);
    // A session's bytes are what it holds now; its event log is sized apart.
    if (!EVENT_LOG_TABLES.includes(table)) cur.bytes += bytes;
    this.options.onRows?.(bytes, rows.length);
  }

  /**
   * One row whose body is read in chunks, loaded alone and committed before the next item (its
   * value is readable only until then); the body's sha256 is taken as it streams by.
   */
  private async streamAlone<R extends LoadedRow & { body: StreamedValue }>(table: 'sk_message' | 'sk_part', row: R): Promise<R & { sha256: string }> {
    const copyIn = this.store.copyIn;
    if (!copyIn) throw new SkError('internal', `${table}: a streamed row without a bulk load`);
    const hashed = hashedValue(row.body);
    const stored = await copyIn.load(table, COPY_COLUMNS[table], [copyCells(table, { ...row, body: hashed.value }, false)]);
    if (stored !== 1) throw new SkError('corrupt', `${table} ${row.id}: 1 row sent, ${stored} stored in ${this.store.location}`);
    return { ...row, sha256: hashed.sha256() };
  }

  /** A group waits for its commits, reads its rows back, compares digests, and only then marks its sessions complete. */
  private async verifyGroup(sessions: SentSession[]): Promise<void> {
    const store = this.store;
    await store.guard('migrate', () => Promise.all(sessions.flatMap((s) => [...s.committed])));
    const stored = await store.guard('verify', () => storedChecks(store, sessions.map((s) => s.sent)));
    for (const { sent } of sessions) {
      const found = stored.get(sent.id) ?? { id: sent.id, messages: 0, parts: 0, digest: '' };
      if (found.messages !== sent.messages || found.parts !== sent.parts || found.digest !== sent.digest) {
        throw new SkError(
          'corrupt',
          `session ${sent.id} did not verify in ${store.location}: sent ${sent.messages} messages/${sent.parts} parts, found ${found.messages}/${found.parts}${found.digest === sent.digest ? '' : ', digests differ'}`,
        );
      }
    }
    const complete = this.hooks.complete;
    if (complete) {
      await store.guard('migrate', () =>
        store.db.transaction().execute(async (trx) => {
          const t = new ExternalContext(trx, store.conn, store.dialect);
          const digests = await complete(t, sessions.map((s) => ({ id: s.sent.id, lines: s.lines ?? [], bytes: s.bytes })));
          await markComplete(t, sessions, digests);
        }),
      );
    } else await store.guard('migrate', () => markComplete(store, sessions));
    for (const { sent } of sessions) {
      this.result.imported.push({ id: sent.id, messages: sent.messages, parts: sent.parts });
      await this.options.onSession?.(sent.id);
    }
  }

  private async submit(): Promise<void> {
    if (this.group.length === 0) return;
    const sessions = this.group;
    this.group = [];
    this.groupRows = 0;
    // A group waits for its sessions' rows: those with no other row are stored now too.
    this.storeSessions();
    // The open batches go now, so the group's commits can come.
    await this.store.guard('migrate', async () => {
      await this.batches.messages.flush();
      await this.batches.parts.flush();
    });
    while (this.verifying.length >= MAX_VERIFYING) await this.verifying.shift();
    const verified = this.verifyGroup(sessions);
    verified.catch(() => undefined);
    this.verifying.push(verified);
  }

  async finish(): Promise<ImportResult> {
    if (this.current) throw new SkError('archive', `session ${this.current.id} ended before its last row`);
    await this.submit();
    await this.store.guard('migrate', async () => {
      await this.batches.messages.finish();
      await this.batches.parts.finish();
    });
    for (const verified of this.verifying.splice(0)) await verified;
    // Copies commit asynchronously where the engine allows: one durable barrier before anything relies on them.
    await this.store.guard('flush', () => this.store.dialect.durableBarrier(this.store.db));
    return this.result;
  }

  /** Waits for what is in flight, so no failure is left unobserved after an error. */
  async settle(): Promise<void> {
    this.storeSessions();
    await Promise.allSettled([...this.verifying, this.batches.messages.finish(), this.batches.parts.finish()]);
  }
}

/** Milliseconds of reading between two turns of the event loop while copies are in flight. */
const SOCKET_TURN_MS = 2;

/**
 * A turn of the event loop every SOCKET_TURN_MS: items taken without a wait run no I/O callback,
 * so the COPYs in flight would send nothing more than the socket took at once (the server idles
 * while the file is read, and the reading then waits for the server); each turn lets their
 * sockets drain into the server, which stores a batch while the next is read.
 */
function socketTurns(): () => Promise<void> | undefined {
  let last = performance.now();
  return () => {
    const now = performance.now();
    if (now - last < SOCKET_TURN_MS) return undefined;
    last = now;
    return new Promise((resolve) => setImmediate(resolve));
  };
}

/** Every session of `items` into the server, verified; `existing` says what happens to one already there. */
export async function importSessions(store: ExternalContext, items: SessionItems, options: ImportOptions, hooks: BulkImportHooks = {}): Promise<ImportResult> {
  const bulk = new BulkImport(store, options, hooks);
  try {
    // Most items need no wait: they are taken without a promise, a failure mapped as guard maps it.
    const take = (item: SessionItem): Promise<void> | undefined => {
      let pending: Promise<void> | undefined;
      try {
        pending = bulk.take(item);
      } catch (error) {
        throw store.failure('migrate', error);
      }
      return pending && store.guard('migrate', () => pending);
    };
    const turn = socketTurns();
    if (isSyncIterable(items)) {
      for (const item of items) {
        const pending = take(item) ?? turn();
        if (pending) await pending;
      }
    } else {
      for await (const item of items) {
        const pending = take(item) ?? turn();
        if (pending) await pending;
      }
    }
    return await bulk.finish();
  } catch (error) {
    await bulk.settle();
    throw error;
  }
}
