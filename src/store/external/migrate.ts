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
import { sql } from 'kysely';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { SkError } from '../../core/errors.js';
import { mapSqliteError, openDatabase, type OpenDatabase } from '../sqlite/open.js';
import { diffFilePath } from '../sqlite/sqlite-archive.js';
import { batchRowsFor, ExternalStore, messageRow, rowLine, sessionDigest, sha256Hex, type MessageRow, type PartRow, type SmallAttachment, type SqlValue, type StoredSessionExtras } from './external-store.js';

const SESSION_PAGE = 200;
const MESSAGE_PAGE = 200;
const INLINE_FETCH_BYTES = 256 * 1024;
/** Bytes of row data per INSERT statement. */
const BATCH_BYTES = 4 * 1024 * 1024;
/** Batches inserting at once per table (the pool has 4 connections; attachments and reads need one). */
const MAX_IN_FLIGHT = 2;
const MAX_DIFF_FILE = 64 * 1024 * 1024;

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

class RowBatch<T extends MessageRow | PartRow> {
  private rows: T[] = [];
  private attachments: SmallAttachment[] = [];
  private bytes = 0;
  constructor(
    private readonly store: ExternalStore,
    private readonly table: 'sk_message' | 'sk_part',
  ) {}

  async add(row: T, attachments: readonly SmallAttachment[] = []): Promise<void> {
    this.rows.push(row);
    this.attachments.push(...attachments);
    this.bytes += row.body.length + (row.data ? row.data.length : 0) + attachments.reduce((n, a) => n + a.data.length, 0);
    if (this.rows.length >= batchRowsFor(this.store.kind) || this.bytes >= BATCH_BYTES) await this.flush();
  }

  /** INSERTs still running (on other pooled connections) while the next batch is read and cut. */
  private inFlight: Promise<void>[] = [];

  async flush(): Promise<void> {
    // Up to MAX_IN_FLIGHT batches at once: the server parses and stores them on several backends.
    while (this.inFlight.length >= MAX_IN_FLIGHT) await this.inFlight.shift();
    if (this.rows.length === 0) return;
    const rows = this.rows;
    const attachments = this.attachments;
    this.rows = [];
    this.attachments = [];
    this.bytes = 0;
    const insert = this.store.insertSmallAttachments(attachments).then(() => this.insert(rows));
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

  private async insert(rows: T[]): Promise<void> {
    try {
      await this.store.db.insertInto(this.table).values(rows).execute();
    } catch (error) {
      // A JSON copy the engine refused (its JSON rules differ from JavaScript's): the exact body is
      // what matters, so those rows go in one by one, without the queryable copy where needed.
      if (rows.length === 1 && rows[0]?.data === null) throw error;
      for (const row of rows) {
        try {
          await this.store.db.insertInto(this.table).values(row).execute();
        } catch (inner) {
          if (row.data === null) throw inner;
          await this.store.db.insertInto(this.table).values({ ...row, data: null }).execute();
        }
      }
    }
  }
}

/** Copies one session; returns its check (computed from what was sent) and the rows written. */
async function copySession(
  open: OpenDatabase,
  store: ExternalStore,
  session: Record<string, SqlValue>,
  onBytes: (bytes: number, rows: number) => void,
  existing: boolean,
): Promise<SessionCheck> {
  const { db } = open;
  const sessionId = String(session['id']);
  // A session left half-copied (or changed since) is cleared first: no duplicates on resume.
  if (existing) await store.deleteSessionRows(sessionId, true);
  await store.putSession(session, sessionExtras(open, session), false);
  onBytes(0, 1);

  const lines: string[] = [];
  let messages = 0;
  let parts = 0;
  const messageBatch = new RowBatch<MessageRow>(store, 'sk_message');
  const partBatch = new RowBatch<PartRow>(store, 'sk_part');
  const columns = `id, time_created AS timeCreated, time_updated AS timeUpdated, octet_length(data) AS bytes,
    CASE WHEN octet_length(data) <= ${INLINE_FETCH_BYTES} THEN CAST(data AS BLOB) END AS data`;
  const firstMessages = db.prepare(`SELECT ${columns} FROM message WHERE session_id = ? ORDER BY time_created, id LIMIT ?`);
  const nextMessages = db.prepare(
    `SELECT ${columns} FROM message WHERE session_id = ? AND (time_created > ? OR (time_created = ? AND id > ?))
     ORDER BY time_created, id LIMIT ?`,
  );
  // Inline data stops after 8 MB in one result; later parts are fetched one at a time.
  const partsOf = db.prepare(
    `SELECT id, time_created AS timeCreated, time_updated AS timeUpdated, octet_length(data) AS bytes,
       CASE WHEN octet_length(data) <= ${INLINE_FETCH_BYTES}
             AND sum(min(octet_length(data), ${INLINE_FETCH_BYTES})) OVER (ORDER BY time_created, id) <= ${8 * 1024 * 1024}
            THEN CAST(data AS BLOB) END AS data
     FROM part WHERE message_id = ? ORDER BY time_created, id`,
  );
  let last: SourceRow | undefined;
  for (;;) {
    // Each page is read inside a short read transaction of its own: OpenCode may write meanwhile.
    const page = (last ? nextMessages.all(sessionId, last.timeCreated, last.timeCreated, last.id, MESSAGE_PAGE) : firstMessages.all(sessionId, MESSAGE_PAGE)) as SourceRow[];
    for (const message of page) {
      const row = messageRow(
        { id: message.id, sessionId, timeCreated: message.timeCreated, timeUpdated: message.timeUpdated, data: fetchData(open, 'message', message) },
        store.kind,
      );
      lines.push(rowLine('m', row.id, row.time_created, row.time_updated, row.body.length, sha256Hex(row.body), null));
      messages++;
      await messageBatch.add(row);
      onBytes(row.bytes, 1);
      for (const part of partsOf.all(message.id) as SourceRow[]) {
        const data = fetchData(open, 'part', part);
        const { row: prow, small } = await store.preparePartBatched({
          id: part.id,
          messageId: message.id,
          sessionId,
          timeCreated: part.timeCreated,
          timeUpdated: part.timeUpdated,
          data,
        });
        lines.push(rowLine('p', prow.id, prow.time_created, prow.time_updated, prow.body.length, sha256Hex(prow.body), prow.attachments));
        parts++;
        await partBatch.add(prow, small);
        onBytes(prow.bytes, 1);
      }
    }
    if (page.length < MESSAGE_PAGE) break;
    last = page[page.length - 1];
  }
  await messageBatch.finish();
  await partBatch.finish();
  return { id: sessionId, messages, parts, digest: sessionDigest(lines) };
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

    for (const session of sourceSessions(open, ids)) {
      const id = String(session['id']);
      result.sessions++;
      const have = await store.guard('migrate', () =>
        store.db.selectFrom('sk_session').select(['complete', 'time_updated', 'digest', 'messages', 'parts']).where('id', '=', id).executeTakeFirst(),
      );
      if (have && Number(have.complete) === 1 && have.digest && Number(have.time_updated) === Number(session['time_updated'])) {
        // Copied and verified by an earlier run, unchanged since: skipped (resume, idempotence).
        result.skipped++;
        progress.skipped++;
        progress.bytesDone += sizeOf.get({ id }) as number;
        result.checks.push({ id, messages: Number(have.messages), parts: Number(have.parts), digest: have.digest });
      } else {
        let sent: SessionCheck;
        try {
          sent = await store.guard('migrate', () =>
            copySession(open, store, session, (bytes, rows) => {
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
        const stored = await store.guard('verify', () => storedCheck(store, id));
        if (stored.messages !== sent.messages || stored.parts !== sent.parts || stored.digest !== sent.digest) {
          throw new SkError(
            'corrupt',
            `session ${id} did not verify in ${store.conn.display}: sent ${sent.messages} messages/${sent.parts} parts, found ${stored.messages}/${stored.parts}${stored.digest === sent.digest ? '' : ', digests differ'}`,
          );
        }
        await store.guard('migrate', () =>
          store.db
            .updateTable('sk_session')
            .set({ complete: 1, digest: stored.digest, messages: stored.messages, parts: stored.parts, bytes: sizeOf.get({ id }) as number })
            .where('id', '=', id)
            .execute(),
        );
        result.copied++;
        result.checks.push(stored);
        await options.afterSession?.(id);
      }
      result.messages += result.checks[result.checks.length - 1]?.messages ?? 0;
      result.parts += result.checks[result.checks.length - 1]?.parts ?? 0;
      progress.sessionsDone++;
      report();
    }
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
