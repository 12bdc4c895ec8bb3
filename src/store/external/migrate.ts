/**
 * Copying between OpenCode's SQLite file and an external store, both ways, as streams.
 *
 * `migrateToExternal`: sessions in keyset pages; each session's messages in keyset pages and its
 * parts read as BLOBs (Buffers, off the V8 heap), attachments cut out by byte offset and stored
 * once by sha256, rows inserted in batches bounded in rows and bytes. A session is marked
 * `complete` only after its rows were read back and their digest matched, so an interrupted run
 * resumes by skipping complete sessions and redoing the one it was in (no duplicates: its rows are
 * cleared first). The end is a verification of every session's counts and digest.
 *
 * `restoreFromExternal`: the reverse, into the SQLite file, byte for byte (`CAST(? AS TEXT)` of
 * the rebuilt Buffer), one short write transaction per session.
 */
import { CompiledQuery, sql, type RawBuilder } from 'kysely';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { SkError } from '../../core/errors.js';
import { mapSqliteError, openDatabase, type OpenDatabase } from '../sqlite/open.js';
import { diffFilePath } from '../sqlite/sqlite-archive.js';
import { jsonAcceptable, SERVER_CHECKED_JSON_BYTES } from './codec.js';
import { batchRowsFor, ExternalStore, messageRow, rowLine, sessionDigest, sha256Hex, type MessageRow, type PartRow, type SmallAttachment, type SqlValue, type StoredSessionExtras } from './external-store.js';

const SESSION_PAGE = 200;
const MESSAGE_PAGE = 200;
const PART_PAGE = 500;
const INLINE_FETCH_BYTES = 256 * 1024;
/** Bytes of row data per INSERT statement. */
const BATCH_BYTES = 4 * 1024 * 1024;
/** Batches inserting at once per table (the pool has 4 connections; attachments and reads need one). */
const MAX_IN_FLIGHT = 2;
const MAX_DIFF_FILE = 64 * 1024 * 1024;
/** Rows read back per verification group (and sessions per group). */
const VERIFY_ROWS = 4000;
const VERIFY_SESSIONS = 64;
/** Verification groups running at once, beside the inserts. */
const MAX_VERIFYING = 2;

export interface MigrateProgress {
  sessionsDone: number;
  sessionsTotal: number;
  bytesDone: number;
  bytesTotal: number;
  rows: number;
  skipped: number;
}

export interface MigrateOptions {
  /** The SQLite file. */
  source: string;
  /** An open external store (schema created), or a connection string. */
  target: ExternalStore | string;
  /** Only these sessions (already expanded to their trees); default every session. */
  sessionIds?: readonly string[];
  onProgress?: (progress: MigrateProgress) => void;
  /** Test seam: called after each session is complete. */
  afterSession?: (id: string) => void | Promise<void>;
}

export interface SessionCheck {
  id: string;
  messages: number;
  parts: number;
  digest: string;
}

export interface MigrateResult {
  target: string;
  sessions: number;
  copied: number;
  skipped: number;
  messages: number;
  parts: number;
  rows: number;
  bytes: number;
  elapsedMs: number;
  verified: boolean;
  checks: SessionCheck[];
}

interface SourceRow {
  id: string;
  timeCreated: number;
  timeUpdated: number;
  bytes: number;
  data: Buffer | null;
}

function fetchData(open: OpenDatabase, table: 'message' | 'part', row: SourceRow): Buffer {
  if (row.data) return row.data;
  if (row.bytes > open.readableLimit) {
    throw new SkError('too-big', `${table} ${row.id} is ${row.bytes} bytes, over the ${open.readableLimit}-byte limit this build can read; it cannot be copied`);
  }
  const data = open.db.prepare(`SELECT CAST(data AS BLOB) FROM "${table}" WHERE id = ?`).pluck().get(row.id);
  if (!Buffer.isBuffer(data)) throw new SkError('not-found', `${table} ${row.id} disappeared while copying`);
  return data;
}

/** The SQLite-side facts kept beside a session row, for an exact restore. */
function sessionExtras(open: OpenDatabase, session: Record<string, SqlValue>): StoredSessionExtras {
  const { db, schema } = open;
  const id = String(session['id']);
  const project = (db.prepare('SELECT * FROM project WHERE id = ?').get(session['project_id']) as Record<string, SqlValue> | undefined) ?? null;
  const todos = schema.tables.has('todo') ? (db.prepare('SELECT * FROM todo WHERE session_id = ? ORDER BY position').all(id) as Record<string, SqlValue>[]) : [];
  const share = schema.tables.has('session_share')
    ? ((db.prepare('SELECT * FROM session_share WHERE session_id = ?').get(id) as Record<string, SqlValue> | undefined) ?? null)
    : null;
  let diff: string | null = null;
  const path = diffFilePath(open.path, id);
  if (existsSync(path) && statSync(path).size <= MAX_DIFF_FILE) diff = readFileSync(path, 'utf8');
  return { project, todos, share, diff };
}

/**
 * Reads one session's stored rows back (ids, times, the server's sha256 of each body, attachment
 * lists: never the bodies) and digests them exactly as the copy did.
 */
export async function storedCheck(store: ExternalStore, sessionId: string): Promise<SessionCheck> {
  const lines: string[] = [];
  let messages = 0;
  let parts = 0;
  for (const table of ['sk_message', 'sk_part'] as const) {
    let lastId: string | undefined;
    for (;;) {
      let query = store.db
        .selectFrom(table)
        .select(['id', 'time_created', 'time_updated', store.len('body').as('n'), store.sha('body').as('sha')])
        .select(table === 'sk_part' ? sql<string | null>`attachments`.as('spans') : sql<null>`NULL`.as('spans'))
        .where('session_id', '=', sessionId)
        .orderBy('id');
      if (lastId !== undefined) query = query.where('id', '>', lastId);
      const page = await store.page(query, 2000).execute();
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
 * Checks of several sessions in one read (ids, times, the server's sha256 of each body): a
 * session whose rows alone exceed VERIFY_ROWS is read in pages by `storedCheck`.
 */
async function storedChecks(store: ExternalStore, sent: readonly SessionCheck[]): Promise<Map<string, SessionCheck>> {
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
      .select(['session_id', 'id', 'time_created', 'time_updated', store.len('body').as('n'), store.sha('body').as('sha')])
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
  for (const id of ids) {
    const c = counts.get(id) ?? { messages: 0, parts: 0 };
    checks.set(id, { id, messages: c.messages, parts: c.parts, digest: sessionDigest(lines.get(id) ?? []) });
  }
  return checks;
}

/** Marks verified sessions complete, with their counts, digest and source bytes, in one statement. */
async function markComplete(store: ExternalStore, sessions: readonly SentSession[]): Promise<void> {
  const caseOf = (value: (s: SentSession) => RawBuilder<unknown>): RawBuilder<unknown> =>
    sql`CASE id ${sql.join(sessions.map((s) => sql`WHEN ${s.sent.id} THEN ${value(s)}`), sql` `)} END`;
  await sql`UPDATE sk_session SET complete = 1,
    digest = ${caseOf((s) => sql`${s.sent.digest}`)},
    messages = ${caseOf((s) => sql.lit(s.sent.messages))},
    parts = ${caseOf((s) => sql.lit(s.sent.parts))},
    bytes = ${caseOf((s) => sql.lit(s.bytes))}
    WHERE id IN (${sql.join(sessions.map((s) => s.sent.id))})`.execute(store.db);
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

/** Columns of the PostgreSQL bulk INSERT, with their types (the VALUES list is untyped). */
const PG_COLUMNS = {
  sk_message: [
    ['id', 'varchar'],
    ['session_id', 'varchar'],
    ['time_created', 'int8'],
    ['time_updated', 'int8'],
    ['bytes', 'int8'],
    ['body', 'bytea'],
  ],
  sk_part: [
    ['id', 'varchar'],
    ['message_id', 'varchar'],
    ['session_id', 'varchar'],
    ['time_created', 'int8'],
    ['time_updated', 'int8'],
    ['bytes', 'int8'],
    ['body', 'bytea'],
    ['attachments', 'text'],
    ['att_count', 'int4'],
    ['att_bytes', 'int8'],
    ['att_encoded', 'int8'],
  ],
} as const;

/**
 * One PostgreSQL statement for many rows: the body goes over the wire once, as binary, and the
 * server builds the jsonb copy from it (`convert_from(body, 'UTF8')::jsonb`) where `json` says
 * it can (decided here: valid UTF-8, an object or array, nothing jsonb refuses).
 */
export function pgBulkInsert(table: 'sk_message' | 'sk_part', rows: readonly { row: MessageRow | PartRow; json: boolean }[]): CompiledQuery {
  const columns = PG_COLUMNS[table];
  const parameters: unknown[] = [];
  const tuples: string[] = [];
  for (const { row, json } of rows) {
    const record = row as unknown as Record<string, unknown>;
    const cells: string[] = [];
    for (const [name, type] of columns) {
      parameters.push(record[name] ?? null);
      cells.push(`$${parameters.length}::${type}`);
    }
    parameters.push(json);
    cells.push(`$${parameters.length}::bool`);
    tuples.push(`(${cells.join(',')})`);
  }
  const names = columns.map(([name]) => name).join(', ');
  return CompiledQuery.raw(
    `INSERT INTO ${table} (${names}, data) SELECT ${names}, CASE WHEN j THEN convert_from(body, 'UTF8')::jsonb END FROM (VALUES ${tuples.join(',')}) AS v(${names}, j)`,
    parameters,
  );
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
    private readonly store: ExternalStore,
    private readonly table: 'sk_message' | 'sk_part',
  ) {
    this.serverJson = store.kind === 'postgres';
  }

  /** Buffers a row; returns the promise of its batch's commit (boxed: an async function would wait for it). */
  async add(row: T, json: boolean, attachments: readonly SmallAttachment[] = []): Promise<{ committed: Promise<void> }> {
    this.rows.push({ row, json });
    for (const a of attachments) this.attachments.push(a);
    this.bytes += row.body.length + (row.data ? row.data.length : 0) + attachments.reduce((n, a) => n + a.data.length, 0);
    const committed = this.current.promise;
    if (this.rows.length >= batchRowsFor(this.store.kind) || this.bytes >= BATCH_BYTES) await this.flush();
    return { committed };
  }

  async flush(): Promise<void> {
    // Up to MAX_IN_FLIGHT batches at once: the server parses and stores them on several backends.
    while (this.inFlight.length >= MAX_IN_FLIGHT) await this.inFlight.shift();
    if (this.rows.length === 0) return;
    const rows = this.rows;
    const attachments = this.attachments;
    const done = this.current;
    this.rows = [];
    this.attachments = [];
    this.bytes = 0;
    this.current = ticket();
    const insert = this.store.insertSmallAttachments(attachments).then(() => this.insert(rows));
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
    if (this.serverJson) await this.store.db.executeQuery(pgBulkInsert(this.table, rows));
    else await this.store.db.insertInto(this.table).values(rows.map((r) => r.row)).execute();
  }

  private async insert(all: { row: T; json: boolean }[]): Promise<void> {
    // Big bodies whose JSON only the server checks go one per statement: a refusal costs one row.
    const alone = all.filter((r) => this.serverJson && r.json && r.row.body.length > SERVER_CHECKED_JSON_BYTES);
    const rows = alone.length ? all.filter((r) => !alone.includes(r)) : all;
    for (const r of alone) {
      try {
        await this.run([r]);
      } catch {
        await this.run([{ row: r.row, json: false }]);
      }
    }
    if (rows.length === 0) return;
    try {
      await this.run(rows);
    } catch (error) {
      // A JSON copy the engine refused (its JSON rules differ from JavaScript's): the exact body is
      // what matters, so those rows go in one by one, without the queryable copy where needed.
      const hasJson = (r: { row: T; json: boolean }): boolean => (this.serverJson ? r.json : r.row.data !== null);
      if (rows.length === 1 && !hasJson(rows[0] as { row: T; json: boolean })) throw error;
      for (const r of rows) {
        try {
          await this.run([r]);
        } catch (inner) {
          if (!hasJson(r)) throw inner;
          await this.run([{ row: { ...r.row, data: null }, json: false }]);
        }
      }
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
}

/** Copies one session's rows into the batches; returns what was sent, without waiting for commits. */
async function copySession(
  open: OpenDatabase,
  store: ExternalStore,
  session: Record<string, SqlValue>,
  batches: Batches,
  onBytes: (bytes: number, rows: number) => void,
  existing: boolean,
): Promise<SentSession> {
  const { db } = open;
  const sessionId = String(session['id']);
  const committed = new Set<Promise<void>>();
  // A session left half-copied (or changed since) is cleared first: no duplicates on resume.
  if (existing) {
    await store.deleteSessionRows(sessionId, true);
    await store.putSession(session, sessionExtras(open, session), false);
  } else {
    const inserted = store.insertNewSession(session, sessionExtras(open, session), batches.projects);
    inserted.catch(() => undefined);
    committed.add(inserted);
  }
  onBytes(0, 1);

  const lines: string[] = [];
  let messages = 0;
  let parts = 0;
  let bytes = 0;
  const serverJson = batches.messages.serverJson;
  const columns = `id, time_created AS timeCreated, time_updated AS timeUpdated, octet_length(data) AS bytes,
    CASE WHEN octet_length(data) <= ${INLINE_FETCH_BYTES} THEN CAST(data AS BLOB) END AS data`;
  const firstMessages = db.prepare(`SELECT ${columns} FROM message WHERE session_id = ? ORDER BY time_created, id LIMIT ?`);
  const nextMessages = db.prepare(
    `SELECT ${columns} FROM message WHERE session_id = ? AND (time_created > ? OR (time_created = ? AND id > ?))
     ORDER BY time_created, id LIMIT ?`,
  );
  // The session's parts in rowid pages (the session index holds rowids in order: no sort), not
  // per message: the digest is order-free. Inline data stops after 8 MB in one page; later parts
  // of that page are fetched one at a time.
  const partPage = db.prepare(
    `SELECT rowid AS rid, id, message_id AS messageId, time_created AS timeCreated, time_updated AS timeUpdated, octet_length(data) AS bytes,
       CASE WHEN octet_length(data) <= ${INLINE_FETCH_BYTES}
             AND sum(min(octet_length(data), ${INLINE_FETCH_BYTES})) OVER (ORDER BY rowid) <= ${8 * 1024 * 1024}
            THEN CAST(data AS BLOB) END AS data
     FROM part WHERE session_id = ? AND rowid > ? ORDER BY rowid LIMIT ${PART_PAGE}`,
  );
  let last: SourceRow | undefined;
  for (;;) {
    // Each page is read inside a short read transaction of its own: OpenCode may write meanwhile.
    const page = (last ? nextMessages.all(sessionId, last.timeCreated, last.timeCreated, last.id, MESSAGE_PAGE) : firstMessages.all(sessionId, MESSAGE_PAGE)) as SourceRow[];
    for (const message of page) {
      const row = messageRow(
        { id: message.id, sessionId, timeCreated: message.timeCreated, timeUpdated: message.timeUpdated, data: fetchData(open, 'message', message) },
        store.kind,
        serverJson,
      );
      lines.push(rowLine('m', row.id, row.time_created, row.time_updated, row.body.length, sha256Hex(row.body), null));
      messages++;
      bytes += message.bytes;
      committed.add((await batches.messages.add(row, serverJson && jsonAcceptable(row.body, store.kind))).committed);
      onBytes(row.bytes, 1);
    }
    if (page.length < MESSAGE_PAGE) break;
    last = page[page.length - 1];
  }
  let lastRowid = -Infinity;
  for (;;) {
    const page = partPage.all(sessionId, lastRowid) as (SourceRow & { rid: number; messageId: string })[];
    for (const part of page) {
      const data = fetchData(open, 'part', part);
      const { row: prow, small, json } = await store.preparePartBatched(
        {
          id: part.id,
          messageId: part.messageId,
          sessionId,
          timeCreated: part.timeCreated,
          timeUpdated: part.timeUpdated,
          data,
        },
        serverJson,
      );
      lines.push(rowLine('p', prow.id, prow.time_created, prow.time_updated, prow.body.length, sha256Hex(prow.body), prow.attachments));
      parts++;
      bytes += part.bytes;
      committed.add((await batches.parts.add(prow, json, small)).committed);
      onBytes(prow.bytes, 1);
    }
    if (page.length < PART_PAGE) break;
    lastRowid = (page[page.length - 1] as { rid: number }).rid;
  }
  return { sent: { id: sessionId, messages, parts, digest: sessionDigest(lines) }, committed, bytes };
}

/** Sessions to copy, in keyset pages by id (all of them, or the given list). */
function* sourceSessions(open: OpenDatabase, ids: readonly string[] | undefined): Generator<Record<string, SqlValue>> {
  const one = open.db.prepare('SELECT * FROM session WHERE id = ?');
  if (ids) {
    for (const id of ids) {
      const row = one.get(id) as Record<string, SqlValue> | undefined;
      if (!row) throw new SkError('not-found', `no session ${id} in ${open.path}`);
      yield row;
    }
    return;
  }
  const first = open.db.prepare('SELECT * FROM session ORDER BY id LIMIT ?');
  const next = open.db.prepare('SELECT * FROM session WHERE id > ? ORDER BY id LIMIT ?');
  let lastId: string | undefined;
  for (;;) {
    const page = (lastId === undefined ? first.all(SESSION_PAGE) : next.all(lastId, SESSION_PAGE)) as Record<string, SqlValue>[];
    yield* page;
    if (page.length < SESSION_PAGE) return;
    lastId = String(page[page.length - 1]?.['id']);
  }
}

/** Copies the SQLite store (or some sessions of it) into the external store, verified. */
export async function migrateToExternal(options: MigrateOptions): Promise<MigrateResult> {
  const started = performance.now();
  const open = openDatabase(options.source, { readonly: true });
  const store = typeof options.target === 'string' ? await ExternalStore.open(options.target, { create: true, bulk: true }) : options.target;
  const ownStore = typeof options.target === 'string';
  const result: MigrateResult = {
    target: store.conn.display,
    sessions: 0,
    copied: 0,
    skipped: 0,
    messages: 0,
    parts: 0,
    rows: 0,
    bytes: 0,
    elapsedMs: 0,
    verified: false,
    checks: [],
  };
  try {
    const ids = options.sessionIds;
    const inList = ids ? `WHERE session_id IN (SELECT value FROM json_each(?))` : '';
    const args = ids ? [JSON.stringify(ids)] : [];
    const total = (sql: string): number => open.db.prepare(sql).pluck().get(...args) as number;
    const progress: MigrateProgress = {
      sessionsDone: 0,
      sessionsTotal: ids ? ids.length : total('SELECT count(*) FROM session'),
      bytesDone: 0,
      bytesTotal:
        total(`SELECT coalesce(sum(octet_length(data)), 0) FROM message ${inList}`) + total(`SELECT coalesce(sum(octet_length(data)), 0) FROM part ${inList}`),
      rows: 0,
      skipped: 0,
    };
    options.onProgress?.(progress);
    const sizeOf = open.db.prepare(
      `SELECT coalesce((SELECT sum(octet_length(data)) FROM message WHERE session_id = @id), 0) +
              coalesce((SELECT sum(octet_length(data)) FROM part WHERE session_id = @id), 0)`,
    ).pluck();
    let lastReport = 0;
    const report = (force = false): void => {
      const now = performance.now();
      if (force || now - lastReport > 100) {
        lastReport = now;
        options.onProgress?.(progress);
      }
    };
    const batches: Batches = { messages: new RowBatch<MessageRow>(store, 'sk_message'), parts: new RowBatch<PartRow>(store, 'sk_part'), projects: new Set() };

    // Sessions are verified in groups, on other connections, while later ones are read and sent:
    // a group waits for the commits of its rows, reads them back, compares digests, and only then
    // marks its sessions complete.
    let group: SentSession[] = [];
    let groupRows = 0;
    const verifying: Promise<void>[] = [];
    const verifyGroup = async (sessions: SentSession[]): Promise<void> => {
      await store.guard('migrate', () => Promise.all(sessions.flatMap((s) => [...s.committed])));
      const stored = await store.guard('verify', () => storedChecks(store, sessions.map((s) => s.sent)));
      for (const { sent } of sessions) {
        const found = stored.get(sent.id) ?? { id: sent.id, messages: 0, parts: 0, digest: '' };
        if (found.messages !== sent.messages || found.parts !== sent.parts || found.digest !== sent.digest) {
          throw new SkError(
            'corrupt',
            `session ${sent.id} did not verify in ${store.conn.display}: sent ${sent.messages} messages/${sent.parts} parts, found ${found.messages}/${found.parts}${found.digest === sent.digest ? '' : ', digests differ'}`,
          );
        }
      }
      await store.guard('migrate', () => markComplete(store, sessions));
      for (const { sent } of sessions) {
        result.copied++;
        result.checks.push(sent);
        result.messages += sent.messages;
        result.parts += sent.parts;
        progress.sessionsDone++;
        await options.afterSession?.(sent.id);
      }
      report();
    };
    const submit = async (): Promise<void> => {
      if (group.length === 0) return;
      const sessions = group;
      group = [];
      groupRows = 0;
      // The open batches go now, so the group's commits can come.
      await store.guard('migrate', async () => {
        await batches.messages.flush();
        await batches.parts.flush();
      });
      while (verifying.length >= MAX_VERIFYING) await verifying.shift();
      const verified = verifyGroup(sessions);
      verified.catch(() => undefined);
      verifying.push(verified);
    };

    const pageOf: Record<string, SqlValue>[] = [];
    const copyPage = async (): Promise<void> => {
      const ids = pageOf.map((s) => String(s['id']));
      const haves = new Map(
        (
          await store.guard('migrate', () =>
            store.db.selectFrom('sk_session').select(['id', 'complete', 'time_updated', 'digest', 'messages', 'parts']).where('id', 'in', ids).execute(),
          )
        ).map((h) => [h.id, h]),
      );
      for (const session of pageOf) {
        const id = String(session['id']);
        result.sessions++;
        const have = haves.get(id);
        if (have && Number(have.complete) === 1 && have.digest && Number(have.time_updated) === Number(session['time_updated'])) {
          // Copied and verified by an earlier run, unchanged since: skipped (resume, idempotence).
          result.skipped++;
          progress.skipped++;
          progress.bytesDone += sizeOf.get({ id }) as number;
          const check = { id, messages: Number(have.messages), parts: Number(have.parts), digest: have.digest };
          result.checks.push(check);
          result.messages += check.messages;
          result.parts += check.parts;
          progress.sessionsDone++;
          report();
          continue;
        }
        let copied: SentSession;
        try {
          copied = await store.guard('migrate', () =>
            copySession(open, store, session, batches, (bytes, rows) => {
              progress.bytesDone += bytes;
              progress.rows += rows;
              result.rows += rows;
              result.bytes += bytes;
              report();
            }, have !== undefined),
          );
        } catch (error) {
          throw error instanceof SkError ? error : mapSqliteError(error, open.path);
        }
        const rows = copied.sent.messages + copied.sent.parts;
        if (group.length > 0 && (groupRows + rows > VERIFY_ROWS || group.length >= VERIFY_SESSIONS)) await submit();
        group.push(copied);
        groupRows += rows;
      }
      pageOf.length = 0;
    };
    for (const session of sourceSessions(open, ids)) {
      pageOf.push(session);
      if (pageOf.length >= SESSION_PAGE) await copyPage();
    }
    await copyPage();
    await submit();
    await store.guard('migrate', async () => {
      await batches.messages.finish();
      await batches.parts.finish();
    });
    for (const verified of verifying.splice(0)) await verified;
    report(true);
    await store.durableBarrier();
    await verifyCopy(open, store, ids);
    result.verified = true;
  } finally {
    open.db.close();
    if (ownStore) await store.close();
  }
  result.elapsedMs = performance.now() - started;
  return result;
}

/**
 * The final check: every source session is on the server, complete, with the same numbers of
 * messages and parts (each one's digest was matched when it was copied).
 */
export async function verifyCopy(open: OpenDatabase, store: ExternalStore, ids?: readonly string[]): Promise<void> {
  const counts = open.db.prepare(
    `SELECT (SELECT count(*) FROM message WHERE session_id = @id) AS messages, (SELECT count(*) FROM part WHERE session_id = @id) AS parts`,
  );
  const check = async (batch: string[]): Promise<void> => {
    if (batch.length === 0) return;
    const rows = await store.guard('verify', () =>
      store.db.selectFrom('sk_session').select(['id', 'complete', 'digest', 'messages', 'parts']).where('id', 'in', batch).execute(),
    );
    const byId = new Map(rows.map((r) => [r.id, r]));
    for (const id of batch) {
      const there = byId.get(id);
      const here = counts.get({ id }) as { messages: number; parts: number };
      if (!there || Number(there.complete) !== 1 || !there.digest) throw new SkError('corrupt', `verification failed: session ${id} is not complete in ${store.conn.display}`);
      if (Number(there.messages) !== here.messages || Number(there.parts) !== here.parts) {
        throw new SkError('corrupt', `verification failed: session ${id} has ${here.messages}/${here.parts} messages/parts here, ${Number(there.messages)}/${Number(there.parts)} in ${store.conn.display}`);
      }
    }
  };
  if (ids) {
    for (let i = 0; i < ids.length; i += 200) await check(ids.slice(i, i + 200));
    return;
  }
  const page = open.db.prepare('SELECT id FROM session WHERE id > ? ORDER BY id LIMIT 200').pluck();
  let lastId = '';
  for (;;) {
    const batch = page.all(lastId) as string[];
    await check(batch);
    if (batch.length < 200) return;
    lastId = batch[batch.length - 1] as string;
  }
}

export interface ExternalRestoreResult {
  restored: string[];
  skipped: string[];
}

function insertRow(open: OpenDatabase, table: string, row: Record<string, SqlValue>, orIgnore = false): void {
  const present = new Set(open.db.prepare('SELECT name FROM pragma_table_info(?)').pluck().all(table) as string[]);
  const keys = Object.keys(row).filter((k) => present.has(k));
  if (keys.length === 0) return;
  open.db
    .prepare(`INSERT ${orIgnore ? 'OR IGNORE ' : ''}INTO "${table}" (${keys.map((k) => `"${k}"`).join(', ')}) VALUES (${keys.map(() => '?').join(', ')})`)
    .run(...keys.map((k) => row[k] ?? null));
}

async function collect(pieces: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const piece of pieces) parts.push(piece);
  return Buffer.concat(parts);
}

/**
 * Brings sessions (with their child sessions) back from the external store into the SQLite file,
 * byte for byte. Sessions already in the file are skipped. Each session is read from the server
 * first (messages and parts streamed into one write transaction per session page).
 */
export async function restoreFromExternal(open: OpenDatabase, store: ExternalStore, roots: readonly string[]): Promise<ExternalRestoreResult> {
  const result: ExternalRestoreResult = { restored: [], skipped: [] };
  const ids = await store.guard('restore', () => store.sessionTrees(roots));
  const exists = open.db.prepare('SELECT 1 FROM session WHERE id = ?').pluck();
  const insertMessage = open.db.prepare('INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?, ?, ?, ?, CAST(? AS TEXT))');
  const insertPart = open.db.prepare(
    'INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?, ?, ?, ?, ?, CAST(? AS TEXT))',
  );
  for (const id of ids) {
    const stored = await store.guard('restore', () =>
      store.db.selectFrom('sk_session').select(['row_json', 'extras_json', 'project_id', 'complete']).where('id', '=', id).executeTakeFirst(),
    );
    if (!stored) throw new SkError('not-found', `no session ${id} in ${store.conn.display}`);
    if (Number(stored.complete) !== 1) throw new SkError('corrupt', `session ${id} is incomplete in ${store.conn.display} (an interrupted copy); run migrate again`);
    if (exists.get(id) !== undefined) {
      result.skipped.push(id);
      continue;
    }
    const row = (typeof stored.row_json === 'string' ? JSON.parse(stored.row_json) : stored.row_json) as Record<string, SqlValue>;
    const extras = (stored.extras_json ? JSON.parse(stored.extras_json) : { todos: [], share: null, diff: null }) as Omit<StoredSessionExtras, 'project'>;
    const projectRow = await store.guard('restore', () => store.db.selectFrom('sk_project').select('row_json').where('id', '=', stored.project_id).executeTakeFirst());
    const project = projectRow ? ((typeof projectRow.row_json === 'string' ? JSON.parse(projectRow.row_json) : projectRow.row_json) as Record<string, SqlValue>) : null;

    // The session's rows are gathered first (pages of Buffers, off the heap), then written in one
    // short transaction, so a failure on the server leaves the file without a half session.
    const messages: [string, number, number, Buffer][] = [];
    const parts: [string, string, number, number, Buffer][] = [];
    let last: { created: number; id: string } | undefined;
    for (;;) {
      let query = store.db
        .selectFrom('sk_message')
        .select(['id', 'time_created', 'time_updated', 'body'])
        .where('session_id', '=', id)
        .orderBy('time_created')
        .orderBy('id');
      if (last) {
        const { created, id: lastId } = last;
        query = query.where((eb) => eb.or([eb('time_created', '>', created), eb.and([eb('time_created', '=', created), eb('id', '>', lastId)])]));
      }
      const page = await store.guard('restore', () => store.page(query, MESSAGE_PAGE).execute());
      for (const m of page) {
        messages.push([m.id, Number(m.time_created), Number(m.time_updated), m.body]);
        const partRows = await store.guard('restore', () =>
          store.db.selectFrom('sk_part').select(['id', 'time_created', 'time_updated', 'body', 'attachments']).where('message_id', '=', m.id).orderBy('time_created').orderBy('id').execute(),
        );
        for (const p of partRows) {
          const spans = p.attachments ? (JSON.parse(p.attachments) as Parameters<ExternalStore['partBytes']>[1]) : [];
          const data = spans.length ? await collect(store.partBytes(p.body, spans)) : p.body;
          parts.push([p.id, m.id, Number(p.time_created), Number(p.time_updated), data]);
        }
      }
      if (page.length < MESSAGE_PAGE) break;
      const tail = page[page.length - 1];
      if (tail) last = { created: Number(tail.time_created), id: tail.id };
    }
    try {
      open.db.transaction(() => {
        insertRow(open, 'project', project ?? { id: row['project_id'] ?? 'global', worktree: '/', time_created: 0, time_updated: 0, sandboxes: '[]' }, true);
        insertRow(open, 'session', row);
        for (const todo of extras.todos) insertRow(open, 'todo', todo);
        if (extras.share) insertRow(open, 'session_share', extras.share);
        for (const [mid, created, updated, body] of messages) insertMessage.run(mid, id, created, updated, body);
        for (const [pid, mid, created, updated, data] of parts) insertPart.run(pid, mid, id, created, updated, data);
      })();
    } catch (error) {
      throw mapSqliteError(error, open.path);
    }
    if (extras.diff !== null && extras.diff !== undefined) {
      const target = diffFilePath(open.path, id);
      if (!existsSync(target)) {
        mkdirSync(dirname(target), { recursive: true });
        writeFileSync(`${target}.tmp`, extras.diff, { mode: 0o600 });
        renameSync(`${target}.tmp`, target);
      }
    }
    result.restored.push(id);
  }
  return result;
}
