/**
 * The mirror's writes into a server: one session per transaction, so a reader sees the old version
 * or the new one, never half of either. Rows the held copy already has unchanged (same id or place,
 * times, body hash and attachment list) stay where they are; the others are replaced, rows gone
 * locally are deleted. Before the commit the session's rows are read back (the server hashes the
 * bodies; none comes back) and their digest must equal the one of what was sent.
 *
 * Sessions the server holds no finished copy of (a first sync, a long offline spell) take
 * migration's pipelined path instead (`mirrorNewSessions`): batches across sessions, verified in
 * groups, each group marked complete in one transaction with its mirror state.
 */
import { sql, type Kysely } from 'kysely';
import { SkError } from '../../core/errors.js';
import { defaultProjectRow, EVENT_LOG_TABLES } from '../../core/opencode-format.js';
import { encodeTableRow, rowPayloadBytes } from '../../core/table-row.js';
import type { HeldVersion, MirrorBase, MirrorOutcome, MirrorWrite, NewSessionsWrite } from '../mirror-target.js';
import { isSyncIterable, wholePayload, type Row, type SessionHeader, type SessionItem, type SessionItems } from '../session-items.js';
import { importSessions, type VerifiedSession } from './bulk-import.js';
import { cutPart, parseSpans } from './codec.js';
import { ExternalContext } from './context.js';
import type { BulkRow, EngineDialect } from './dialect.js';
import { rowLine, sessionDigest, sha256Hex, tableRowLine } from './digest.js';
import { messageRow, partRow, sessionValues, type MessageRow, type PartRow } from './stored-rows.js';
import type { SkTables } from './tables.js';
import { collectAttachments, insertProject, storeAttachment, storeTableRows } from './writes.js';

/** Bytes of row data per INSERT. */
const BATCH_BYTES = 4 * 1024 * 1024;

/** JSON with its object keys sorted: the same text for a row however an engine's JSON type reorders it. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** The digest line of the session row and what is kept beside it (todos, the share, the diff file). */
function sessionLine(rowJson: unknown, extrasJson: string | null): string {
  const row = typeof rowJson === 'string' ? (JSON.parse(rowJson) as unknown) : rowJson;
  return `s\0${sha256Hex(Buffer.from(canonicalJson(row)))}\0${extrasJson === null ? '' : sha256Hex(Buffer.from(extrasJson))}`;
}

/** The session row as it will be stored. */
interface Prepared {
  header: SessionHeader;
  values: ReturnType<typeof sessionValues>;
}

function prepareHeader(header: SessionHeader): Prepared {
  const { session, todos, share, diff } = header;
  return { header, values: sessionValues(session, { todos, share, diff: diff ? diff.toString('utf8') : null }) };
}

/** Keys of a session's rows (`m:<id>`, `p:<id>`, `r:<ord>`) split by table, in batches a statement's parameters allow. */
function keyBatches(keys: Iterable<string>): { m: string[][]; p: string[][]; r: number[][] } {
  const out = { m: [] as string[][], p: [] as string[][], r: [] as number[][] };
  const push = <T>(lists: T[][], value: T): void => {
    const last = lists[lists.length - 1];
    if (last && last.length < 500) last.push(value);
    else lists.push([value]);
  };
  for (const key of keys) {
    if (key.startsWith('m:')) push(out.m, key.slice(2));
    else if (key.startsWith('p:')) push(out.p, key.slice(2));
    else push(out.r, Number(key.slice(2)));
  }
  return out;
}

/**
 * The stored lines of a session (`m:<id>`, `p:<id>`, `r:<ord>` to their digest lines, bodies hashed
 * by the server), all of them or only the rows `only` names, and the session's own line.
 */
async function storedLines(db: Kysely<SkTables>, ctx: ExternalContext, sessionId: string, only?: Iterable<string>): Promise<{ rows: Map<string, string>; session: string | null }> {
  const rows = new Map<string, string>();
  const d = ctx.dialect;
  const batches = only ? keyBatches(only) : null;
  for (const ids of batches ? batches.m : [null]) {
    let query = db.selectFrom('sk_message').select(['id', 'time_created', 'time_updated', d.byteLength('body').as('n'), d.sha256Hex('body').as('sha')]).where('session_id', '=', sessionId);
    if (ids) query = query.where('id', 'in', ids);
    for (const r of await query.execute()) rows.set(`m:${r.id}`, rowLine('m', r.id, Number(r.time_created), Number(r.time_updated), Number(r.n), String(r.sha).toLowerCase(), null));
  }
  for (const ids of batches ? batches.p : [null]) {
    let query = db.selectFrom('sk_part').select(['id', 'time_created', 'time_updated', 'attachments', d.byteLength('body').as('n'), d.sha256Hex('body').as('sha')]).where('session_id', '=', sessionId);
    if (ids) query = query.where('id', 'in', ids);
    for (const r of await query.execute()) rows.set(`p:${r.id}`, rowLine('p', r.id, Number(r.time_created), Number(r.time_updated), Number(r.n), String(r.sha).toLowerCase(), r.attachments));
  }
  for (const ords of batches ? batches.r : [null]) {
    let query = db.selectFrom('sk_row').select(['table_name', 'ord', 'attachments', d.byteLength('body').as('n'), d.sha256Hex('body').as('sha')]).where('session_id', '=', sessionId);
    if (ords) query = query.where('ord', 'in', ords);
    for (const r of await query.execute()) rows.set(`r:${Number(r.ord)}`, tableRowLine(r.table_name, Number(r.ord), Number(r.n), String(r.sha).toLowerCase(), r.attachments));
  }
  const session = await db.selectFrom('sk_session').select(['row_json', 'extras_json']).where('id', '=', sessionId).executeTakeFirst();
  return { rows, session: session ? sessionLine(session.row_json, session.extras_json) : null };
}

/** The mirror digest: every stored row's line and the session's own line. */
function mirrorDigest(rowLines: Iterable<string>, session: string): string {
  return sessionDigest([...rowLines, session]);
}

/** One row made ready: its key among the session's rows, its digest line, and how to store it. */
type ReadyRow =
  | { key: string; line: string; kind: 'message'; row: MessageRow; json: boolean; bytes: number }
  | { key: string; line: string; kind: 'part'; row: PartRow; json: boolean; data: Buffer; cut: ReturnType<typeof cutPart>; bytes: number }
  | { key: string; line: string; kind: 'row'; table: string; ord: number; row: Row; bytes: number };

/** Turns a session's items into ready rows, with the session header first and the sent counts checked at the end. */
async function* readyRows(ctx: ExternalContext, items: SessionItems, jsonCopies: boolean): AsyncGenerator<{ header: Prepared } | ReadyRow | { end: true }> {
  const all: AsyncIterable<SessionItem> | Iterable<SessionItem> = items;
  let ord = 0;
  let sessionId: string | null = null;
  const serverJson = ctx.dialect.serverJson;
  const received: Record<string, number> = {};
  const take = function* (item: SessionItem): Generator<{ header: Prepared } | ReadyRow | { end: true }> {
    switch (item.kind) {
      case 'session': {
        if (sessionId !== null) throw new SkError('internal', 'the mirror writes one session at a time');
        const prepared = prepareHeader(item.header);
        sessionId = prepared.values.id;
        received['todo'] = item.header.todos.length;
        received['session_share'] = item.header.share ? 1 : 0;
        yield { header: prepared };
        return;
      }
      case 'message': {
        // The server's copy is built from whole values, as migration does (see bulk-import.ts).
        const m = { ...item.message, data: wholePayload(item.message.data) };
        // Where the server builds the JSON copy from the body itself, the body crosses the wire once.
        const row = messageRow(m, ctx.dialect, serverJson !== null || !jsonCopies);
        const json = jsonCopies && serverJson !== null && serverJson.acceptable(row.body);
        received['message'] = (received['message'] ?? 0) + 1;
        yield { key: `m:${m.id}`, line: rowLine('m', row.id, row.time_created, row.time_updated, row.body.length, sha256Hex(row.body), null), kind: 'message', row, json, bytes: m.data.length };
        return;
      }
      case 'part': {
        const p = { ...item.part, data: wholePayload(item.part.data) };
        const data = p.data;
        const cut = cutPart(data, p.id);
        const row = partRow(p, data.length, cut, ctx.dialect, serverJson !== null || !jsonCopies);
        const json = jsonCopies && serverJson !== null && serverJson.acceptable(row.body);
        received['part'] = (received['part'] ?? 0) + 1;
        yield { key: `p:${p.id}`, line: rowLine('p', row.id, row.time_created, row.time_updated, row.body.length, sha256Hex(row.body), row.attachments), kind: 'part', row, json, data, cut, bytes: data.length };
        return;
      }
      case 'rows': {
        for (const row of item.rows) {
          const body = Buffer.concat(encodeTableRow(row));
          const cut = cutPart(body, `${sessionId ?? ''}/${item.table}/${ord}`);
          const spans = cut.spans.length > 0 ? JSON.stringify(cut.spans) : null;
          const line = tableRowLine(item.table, ord, cut.body.length, sha256Hex(cut.body), spans);
          // A session's bytes are what it holds now; its event log is sized apart.
          yield { key: `r:${ord}`, line, kind: 'row', table: item.table, ord, row, bytes: EVENT_LOG_TABLES.includes(item.table) ? 0 : rowPayloadBytes(row) };
          ord++;
        }
        received[item.table] = (received[item.table] ?? 0) + item.rows.length;
        return;
      }
      case 'end': {
        for (const [table, rows] of Object.entries(item.counts)) {
          if ((received[table] ?? 0) !== rows) throw new SkError('corrupt', `session ${item.sessionId}: ${rows} ${table} rows were sent, ${received[table] ?? 0} arrived in ${ctx.location}`);
        }
        yield { end: true };
        return;
      }
    }
  };
  if (isSyncIterable(all)) for (const item of all) yield* take(item);
  else for await (const item of all) yield* take(item);
}

/** The digest a session would have on the server, nothing written. */
export async function digestOfSession(ctx: ExternalContext, items: SessionItems): Promise<{ digest: string; updated: number }> {
  const lines: string[] = [];
  let header: Prepared | null = null;
  for await (const step of readyRows(ctx, items, false)) {
    if ('header' in step) header = step.header;
    else if ('line' in step) lines.push(step.line);
  }
  if (!header) throw new SkError('internal', 'a session without its session row');
  return { digest: mirrorDigest(lines, sessionLine(header.values.row_json, header.values.extras_json)), updated: header.values.time_updated };
}

/**
 * The verified lines of sessions this process wrote last, by digest: a session OpenCode is writing
 * is sent again and again, and while its held digest is still the one written here its rows need
 * not be hashed again on the server. Bounded in lines.
 */
class LineCache {
  private readonly entries = new Map<string, { digest: string; lines: Map<string, string> }>();
  private size = 0;
  constructor(private readonly maxLines = 200_000) {}
  get(id: string, digest: string | null): Map<string, string> | undefined {
    const entry = this.entries.get(id);
    return entry && digest !== null && entry.digest === digest ? entry.lines : undefined;
  }
  set(id: string, digest: string, lines: Map<string, string>): void {
    this.drop(id);
    if (lines.size > this.maxLines) return;
    this.entries.set(id, { digest, lines });
    this.size += lines.size;
    for (const key of this.entries.keys()) {
      if (this.size <= this.maxLines) break;
      this.drop(key);
    }
  }
  private drop(id: string): void {
    const old = this.entries.get(id);
    if (!old) return;
    this.size -= old.lines.size;
    this.entries.delete(id);
  }
}
const lineCaches = new WeakMap<ExternalContext, LineCache>();
const cacheOf = (store: ExternalContext): LineCache => {
  let cache = lineCaches.get(store);
  if (!cache) lineCaches.set(store, (cache = new LineCache()));
  return cache;
};

/** Thrown inside the transaction when the held copy moved: rolls it back. */
class Moved extends Error {}

/** INSERTs of one table for one session, in batches bounded in rows and bytes. */
class Inserts<T extends MessageRow | PartRow> {
  private rows: BulkRow[] = [];
  private bytes = 0;
  constructor(
    private readonly trx: Kysely<SkTables>,
    private readonly table: 'sk_message' | 'sk_part',
    private readonly dialect: EngineDialect,
  ) {}
  async add(row: T, json: boolean): Promise<void> {
    this.rows.push({ row: row as unknown as Record<string, unknown>, json });
    this.bytes += row.body.length + (row.data?.length ?? 0);
    if (this.rows.length >= this.dialect.batchRows || this.bytes >= BATCH_BYTES) await this.flush();
  }
  async flush(): Promise<void> {
    if (this.rows.length === 0) return;
    const rows = this.rows;
    this.rows = [];
    this.bytes = 0;
    const serverJson = this.dialect.serverJson;
    if (serverJson) await this.trx.executeQuery(serverJson.bulkInsert(this.table, rows));
    else await this.trx.insertInto(this.table).values(rows.map((r) => r.row) as never).execute();
  }
}

/** Upserts the mirror's state rows of a session (delete + insert: the same on every engine). */
async function recordState(trx: Kysely<SkTables>, sessionId: string, sourceId: string, base: MirrorBase, owner: boolean): Promise<void> {
  const now = Date.now();
  if (owner) {
    await trx.deleteFrom('sk_sync_session').where('session_id', '=', sessionId).execute();
    await trx.insertInto('sk_sync_session').values({ session_id: sessionId, source_id: sourceId, time_updated: base.updated, mark: base.mark, digest: base.digest, time_synced: now }).execute();
  }
  await trx.deleteFrom('sk_sync_base').where('source_id', '=', sourceId).where('session_id', '=', sessionId).execute();
  await trx.insertInto('sk_sync_base').values({ source_id: sourceId, session_id: sessionId, time_updated: base.updated, mark: base.mark, digest: base.digest, time_synced: now }).execute();
}

/** `recordState` for many sessions at once, each this source's version and the one held now (a first sync's group). */
async function recordStates(trx: Kysely<SkTables>, sourceId: string, states: readonly { sessionId: string; base: MirrorBase }[]): Promise<void> {
  if (states.length === 0) return;
  const now = Date.now();
  const ids = states.map((s) => s.sessionId);
  const rows = states.map(({ sessionId, base }) => ({ session_id: sessionId, source_id: sourceId, time_updated: base.updated, mark: base.mark, digest: base.digest, time_synced: now }));
  await trx.deleteFrom('sk_sync_session').where('session_id', 'in', ids).execute();
  await trx.insertInto('sk_sync_session').values(rows).execute();
  await trx.deleteFrom('sk_sync_base').where('source_id', '=', sourceId).where('session_id', 'in', ids).execute();
  await trx.insertInto('sk_sync_base').values(rows).execute();
}

/** Of `ids`, those the server has any row of: a session row (an unfinished copy) or rows an interrupted copy left without one. */
async function withRows(store: ExternalContext, ids: readonly string[]): Promise<Set<string>> {
  const found = new Set<string>();
  for (let at = 0; at < ids.length; at += 500) {
    const batch = ids.slice(at, at + 500);
    for (const r of await store.db.selectFrom('sk_session').select('id').where('id', 'in', batch).execute()) found.add(r.id);
    const rest = batch.filter((id) => !found.has(id));
    for (const table of ['sk_message', 'sk_part', 'sk_row'] as const) {
      if (rest.length === 0) break;
      for (const r of await store.db.selectFrom(table).select('session_id').distinct().where('session_id', 'in', rest).execute()) found.add(r.session_id);
    }
  }
  return found;
}

/**
 * Sessions the server holds no finished copy of, through migration's pipelined copy: their rows
 * batched across sessions, verified in groups by the server's digest, and each group marked
 * complete in the same transaction that records its mirror state (so an interrupted run leaves
 * sessions incomplete and unowned, which the next run replaces). The session row is checked too:
 * the stored digest is the mirror's, as the per-session path writes it.
 */
export async function mirrorNewSessions(store: ExternalContext, items: SessionItems, write: NewSessionsWrite): Promise<void> {
  /** What was sent of each session's own row, until its group is complete. */
  const sentHeaders = new Map<string, { line: string; updated: number }>();
  const outcomes = new Map<string, Extract<MirrorOutcome, { kind: 'written' }>>();
  async function* noteHeaders(): AsyncGenerator<SessionItem> {
    const take = (item: SessionItem): SessionItem => {
      if (item.kind === 'session') {
        const { values } = prepareHeader(item.header);
        sentHeaders.set(values.id, { line: sessionLine(values.row_json, values.extras_json), updated: values.time_updated });
      }
      return item;
    };
    if (isSyncIterable(items)) for (const item of items) yield take(item);
    else for await (const item of items) yield take(item);
  }
  const complete = async (trx: ExternalContext, sessions: readonly VerifiedSession[]): Promise<ReadonlyMap<string, string>> => {
    // Durable when seen: retention may delete the local copy on the strength of this state.
    await store.dialect.durableCommit(trx.db);
    const ids = sessions.map((s) => s.id);
    const stored = new Map((await trx.db.selectFrom('sk_session').select(['id', 'row_json', 'extras_json']).where('id', 'in', ids).execute()).map((r) => [r.id, sessionLine(r.row_json, r.extras_json)]));
    const digests = new Map<string, string>();
    const states: { sessionId: string; base: MirrorBase }[] = [];
    for (const s of sessions) {
      const sent = sentHeaders.get(s.id);
      const mark = write.markOf(s.id);
      if (!sent || mark === undefined) throw new SkError('internal', `session ${s.id} was verified before its last row was read`);
      if (stored.get(s.id) !== sent.line) throw new SkError('corrupt', `session ${s.id} did not verify in ${store.location}: the session row read back differs from what was sent`);
      const digest = mirrorDigest(s.lines, sent.line);
      digests.set(s.id, digest);
      states.push({ sessionId: s.id, base: { updated: sent.updated, mark, digest } });
      outcomes.set(s.id, { kind: 'written', digest, updated: sent.updated, mark, rows: s.lines.length, bytes: s.bytes });
    }
    await recordStates(trx.db, write.sourceId, states);
    return digests;
  };
  const present = await withRows(store, write.ids);
  await importSessions(
    store,
    noteHeaders(),
    {
      existing: 'replace',
      present,
      onSession: (id) => {
        // Committed with its state: the caller may rely on it now.
        const outcome = outcomes.get(id);
        sentHeaders.delete(id);
        outcomes.delete(id);
        if (outcome) write.onSession(id, outcome);
      },
    },
    { complete },
  );
}

async function writeOnce(store: ExternalContext, items: SessionItems, write: MirrorWrite, jsonCopies: boolean): Promise<{ outcome: MirrorOutcome; orphans: string[] }> {
  const orphans: string[] = [];
  const cache = cacheOf(store);
  const verified: { value: { id: string; digest: string; lines: Map<string, string> } | null } = { value: null };
  const outcome = await store.db.transaction().execute(async (trx): Promise<MirrorOutcome> => {
    // Durable when seen: retention may delete the local copy on the strength of this state.
    await store.dialect.durableCommit(trx);
    const t = new ExternalContext(trx, store.conn, store.dialect);
    const messages = new Inserts<MessageRow>(trx, 'sk_message', store.dialect);
    const parts = new Inserts<PartRow>(trx, 'sk_part', store.dialect);
    let header: Prepared | null = null;
    let held: Map<string, string> = new Map();
    const sent: string[] = [];
    let rows = 0;
    let bytes = 0;
    let mark: string | null = null;
    /** Rows left as they were (their lines as the server gave them) and rows written now. */
    const kept = new Map<string, string>();
    const changed = new Set<string>();
    let newRows: { table: string; first: number; rows: Row[] } | null = null;
    const flushRows = async (): Promise<void> => {
      if (newRows && newRows.rows.length > 0 && header) await storeTableRows(t, header.values.id, newRows.table, newRows.rows, newRows.first);
      newRows = null;
    };
    for await (const step of readyRows(t, items, jsonCopies)) {
      if ('header' in step) {
        header = step.header;
        const id = header.values.id;
        // Locks the held row (an UPDATE does on every engine), then looks: another mirror may have written it since the caller did.
        await trx.updateTable('sk_session').set({ complete: sql<number>`complete` }).where('id', '=', id).execute();
        const now = await trx.selectFrom('sk_session').select(['digest', 'complete']).where('id', '=', id).executeTakeFirst();
        const digestNow = now && Number(now.complete) === 1 ? now.digest : null;
        if (digestNow !== write.expect) throw new Moved();
        const known = cache.get(id, digestNow);
        held = known ? new Map(known) : (await storedLines(trx, t, id)).rows;
        await insertProject(t, header.header.project ?? defaultProjectRow(header.header.session['project_id']));
        await trx.deleteFrom('sk_session').where('id', '=', id).execute();
        await trx.insertInto('sk_session').values({ ...header.values, messages: 0, parts: 0, bytes: 0, digest: null, complete: 0 }).execute();
        continue;
      }
      if ('end' in step) {
        // Read now, while the source's read of this session is still open: the mark of exactly what was sent.
        mark = await write.mark();
        break;
      }
      if (!header) throw new SkError('internal', 'rows before the session row');
      const id = header.values.id;
      sent.push(step.line);
      bytes += step.bytes;
      const before = held.get(step.key);
      held.delete(step.key);
      if (before === step.line) {
        kept.set(step.key, before);
        continue;
      }
      changed.add(step.key);
      rows++;
      if (step.kind === 'message') {
        if (before !== undefined) await trx.deleteFrom('sk_message').where('id', '=', step.row.id).execute();
        await messages.add(step.row, step.json);
      } else if (step.kind === 'part') {
        if (before !== undefined) {
          const old = await trx.selectFrom('sk_part').select('attachments').where('id', '=', step.row.id).executeTakeFirst();
          for (const s of parseSpans(old?.attachments ?? null)) orphans.push(s.s);
          await trx.deleteFrom('sk_part').where('id', '=', step.row.id).execute();
        }
        for (const source of step.cut.sources) await storeAttachment(t, step.data, source);
        await parts.add(step.row, step.json);
      } else {
        if (before !== undefined) await trx.deleteFrom('sk_row').where('session_id', '=', id).where('ord', '=', step.ord).execute();
        // Consecutive new rows of one table go in together (an event log is thousands of rows).
        if (!newRows || newRows.table !== step.table || newRows.first + newRows.rows.length !== step.ord || newRows.rows.length >= 500) {
          await flushRows();
          newRows = { table: step.table, first: step.ord, rows: [] };
        }
        newRows.rows.push(step.row);
      }
    }
    await flushRows();
    if (!header) throw new SkError('internal', 'a session without its session row');
    const id = header.values.id;
    // Rows the held copy has and the local file no longer does.
    for (const key of held.keys()) {
      const [kind, rest] = [key.slice(0, 1), key.slice(2)];
      if (kind === 'm') await trx.deleteFrom('sk_message').where('id', '=', rest).execute();
      else if (kind === 'p') {
        const old = await trx.selectFrom('sk_part').select('attachments').where('id', '=', rest).executeTakeFirst();
        for (const s of parseSpans(old?.attachments ?? null)) orphans.push(s.s);
        await trx.deleteFrom('sk_part').where('id', '=', rest).execute();
      } else await trx.deleteFrom('sk_row').where('session_id', '=', id).where('ord', '=', Number(rest)).execute();
      rows++;
    }
    await messages.flush();
    await parts.flush();
    const digest = mirrorDigest(sent, sessionLine(header.values.row_json, header.values.extras_json));
    // Verified before the commit: what the server holds now, hashed by the server, is what was sent
    // (the rows written now read back; the rows kept as the server gave them under this transaction's lock).
    const readBack = await storedLines(trx, t, id, changed);
    const storedRows = new Map([...kept, ...readBack.rows]);
    const storedDigest = readBack.session === null ? '' : mirrorDigest(storedRows.values(), readBack.session);
    if (storedDigest !== digest) throw new SkError('corrupt', `session ${id} did not verify in ${store.location}: the digest read back differs from what was sent`);
    verified.value = { id, digest, lines: storedRows };
    const counted = { messages: 0, parts: 0 };
    for (const key of storedRows.keys()) {
      if (key.startsWith('m:')) counted.messages++;
      else if (key.startsWith('p:')) counted.parts++;
    }
    await trx.updateTable('sk_session').set({ complete: 1, digest, messages: counted.messages, parts: counted.parts, bytes }).where('id', '=', id).execute();
    if (mark === null) throw new SkError('internal', `session ${id} ended before its last row`);
    await recordState(trx, id, write.sourceId, { updated: header.values.time_updated, mark, digest }, true);
    return { kind: 'written', digest, updated: header.values.time_updated, mark, rows, bytes };
  });
  // Committed: the next version of this session starts from these lines.
  if (verified.value) cache.set(verified.value.id, verified.value.digest, verified.value.lines);
  return { outcome, orphans };
}

/** One session into the server, in one transaction, verified; a JSON copy the engine refuses is retried without the queryable copies. */
export async function mirrorSession(store: ExternalContext, items: () => SessionItems, write: MirrorWrite): Promise<MirrorOutcome> {
  let done: { outcome: MirrorOutcome; orphans: string[] };
  try {
    done = await writeOnce(store, items(), write, true);
  } catch (error) {
    if (error instanceof Moved) return { kind: 'moved' };
    if (error instanceof SkError) throw error;
    // A refused JSON copy aborts the whole transaction on some engines: the exact bodies are what matter.
    if (!/json/i.test(error instanceof Error ? error.message : String(error))) throw error;
    try {
      done = await writeOnce(store, items(), write, false);
    } catch (again) {
      if (again instanceof Moved) return { kind: 'moved' };
      throw again;
    }
  }
  // Attachments no row refers to any more (a replaced part's old bytes), once the new version stands.
  if (done.orphans.length) await collectAttachments(store, done.orphans).catch(() => undefined);
  return done.outcome;
}

/** The versions held of those of `ids` present, with the source whose mirror wrote each. */
export async function heldVersions(store: ExternalContext, ids: readonly string[]): Promise<Map<string, HeldVersion>> {
  const out = new Map<string, HeldVersion>();
  for (let at = 0; at < ids.length; at += 500) {
    const batch = ids.slice(at, at + 500);
    const sessions = await store.db.selectFrom('sk_session').select(['id', 'time_updated', 'digest', 'complete']).where('id', 'in', batch).execute();
    const owners = new Map(
      (await store.db.selectFrom('sk_sync_session').select(['session_id', 'source_id', 'digest']).where('session_id', 'in', batch).execute()).map((r) => [r.session_id, r]),
    );
    for (const s of sessions) {
      const digest = Number(s.complete) === 1 ? s.digest : null;
      const owner = owners.get(s.id);
      out.set(s.id, { updated: Number(s.time_updated), digest, source: owner && owner.digest === digest ? owner.source_id : null });
    }
  }
  return out;
}

export async function mirrorBases(store: ExternalContext, sourceId: string): Promise<Map<string, MirrorBase>> {
  const rows = await store.db.selectFrom('sk_sync_base').select(['session_id', 'time_updated', 'mark', 'digest']).where('source_id', '=', sourceId).execute();
  return new Map(rows.map((r) => [r.session_id, { updated: Number(r.time_updated), mark: r.mark, digest: r.digest }]));
}

export async function recordBase(store: ExternalContext, sourceId: string, sessionId: string, base: MirrorBase): Promise<void> {
  await store.db.transaction().execute(async (trx) => {
    await store.dialect.durableCommit(trx);
    await recordState(trx, sessionId, sourceId, base, false);
  });
}

export async function registerSource(store: ExternalContext, sourceId: string, name: string): Promise<void> {
  await store.db.transaction().execute(async (trx) => {
    await trx.deleteFrom('sk_sync_source').where('source_id', '=', sourceId).execute();
    await trx.insertInto('sk_sync_source').values({ source_id: sourceId, name, time_seen: Date.now() }).execute();
  });
}
