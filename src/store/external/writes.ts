/**
 * Writes into our server schema, shared by the store's own methods and the bulk import: session
 * rows, content-addressed attachments, counters, deletes. Each takes the store's context.
 */
import { sql, type Kysely } from 'kysely';
import { SkError } from '../../core/errors.js';
import { defaultProjectRow } from '../../core/opencode-format.js';
import { decodeTableRow, encodeTableRow } from '../../core/table-row.js';
import { wholePayload, type Row, type SessionItem, type TableCounts } from '../session-items.js';
import type { SessionState } from '../writer.js';
import { attachmentChunks, CHUNK_BYTES, cutPart, cutStreamedPart, parseSpans, sourceChunks, streamedAttachmentChunks, type CutPart } from './codec.js';
import type { ExternalContext } from './context.js';
import { COPY_COLUMNS } from './copy-columns.js';
import type { CopyCell, StreamedValue } from './dialect.js';
import { sha256Hex, tableRowLine } from './digest.js';
import { partRow, sessionValues, type PartInput, type PartRow, type StoredSessionExtras } from './stored-rows.js';
import type { SkTables } from './tables.js';

/** An attachment small enough for one chunk, inserted with a batch of part rows. */
export interface SmallAttachment {
  sha256: string;
  data: Buffer;
}

/** Rows of `sk_session` for `ids`, in batches the engines' parameter limits allow. */
export async function sessionRowsIn<K extends keyof SkTables['sk_session'] & string>(ctx: ExternalContext, ids: readonly string[], columns: readonly K[]): Promise<Pick<SkTables['sk_session'], K>[]> {
  const out: Pick<SkTables['sk_session'], K>[] = [];
  for (let at = 0; at < ids.length; at += 500) {
    const batch = ids.slice(at, at + 500);
    const rows = await ctx.db.selectFrom('sk_session').select(columns as readonly K[]).where('id', 'in', batch).execute();
    for (const row of rows) out.push(row as unknown as Pick<SkTables['sk_session'], K>);
  }
  return out;
}

/**
 * Stores one attachment's chunks unless a complete copy is already there (content-addressed:
 * stored once however often referenced). An interrupted earlier copy is replaced.
 */
export async function storeAttachment(ctx: ExternalContext, buf: Buffer, source: CutPart['sources'][number]): Promise<void> {
  await storeAttachmentChunks(ctx, source.sha256, () => (source.decoded ? [source.decoded] : attachmentChunks(buf, source.span, source.kind)));
}


/**
 * `storeAttachment` from chunks made on demand (a value read in chunks gives them one at a
 * time): the attachment row is marked complete only after every chunk is stored.
 */
export async function storeAttachmentChunks(ctx: ExternalContext, sha256: string, chunks: () => Iterable<Buffer>): Promise<void> {
  const existing = await ctx.db.selectFrom('sk_attachment').select('complete').where('sha256', '=', sha256).executeTakeFirst();
  if (existing && Number(existing.complete) === 1) return;
  if (existing) {
    await ctx.db.deleteFrom('sk_attachment_chunk').where('sha256', '=', sha256).execute();
    await ctx.db.deleteFrom('sk_attachment').where('sha256', '=', sha256).execute();
  }
  await ctx.db.insertInto('sk_attachment').values({ sha256, bytes: 0, chunks: 0, complete: 0 }).execute();
  let seq = 0;
  let bytes = 0;
  if (ctx.copyIn) {
    // One COPY streams every chunk as it is made; it stores all of them or none.
    const rows = function* (): Generator<CopyCell[]> {
      for (const chunk of chunks()) {
        bytes += chunk.length;
        yield [sha256, seq++, chunk];
      }
    };
    const stored = await ctx.copyIn.load('sk_attachment_chunk', COPY_COLUMNS.sk_attachment_chunk, rows());
    if (stored !== seq) throw new SkError('corrupt', `attachment ${sha256}: ${seq} chunks sent, ${stored} stored in ${ctx.location}`);
  } else {
    let batch: SkTables['sk_attachment_chunk'][] = [];
    const flush = async (): Promise<void> => {
      if (batch.length > 0) await ctx.db.insertInto('sk_attachment_chunk').values(batch).execute();
      batch = [];
    };
    for (const chunk of chunks()) {
      batch.push({ sha256, seq: seq++, data: chunk });
      bytes += chunk.length;
      if (batch.length >= ctx.dialect.chunksPerStatement) await flush();
    }
    await flush();
  }
  await ctx.db.updateTable('sk_attachment').set({ bytes, chunks: seq, complete: 1 }).where('sha256', '=', sha256).execute();
}

/** A part cut for a bulk copy: its row, the attachments inserted with its batch, and those to store before it. */
export interface BatchedPart {
  row: PartRow;
  small: SmallAttachment[];
  json: boolean;
  /** Attachments over one chunk (or where the engine batches none): `storeLargeAttachments` stores them. */
  large: { data: Buffer; sources: CutPart['sources'] } | null;
}

/**
 * A part row ready to insert, for bulk copies: attachments that fit in one chunk come back to be
 * inserted with the row batch (one statement for many); larger ones are named, to be stored first.
 * Synchronous: most parts need no round trip before their batch.
 */
export function preparePartBatched(ctx: ExternalContext, input: PartInput): BatchedPart {
  const data = typeof input.data === 'string' ? Buffer.from(input.data) : input.data;
  const cut = cutPart(data, input.id);
  const small: SmallAttachment[] = [];
  let large: CutPart['sources'] | null = null;
  for (const source of cut.sources) {
    const encoded = source.span.end - source.span.payloadStart;
    if (ctx.dialect.batchesSmallAttachments && encoded <= CHUNK_BYTES) {
      small.push({ sha256: source.sha256, data: sourceChunks(data, source) });
    } else (large ??= []).push(source);
  }
  // With a server-built JSON copy only whether it can be made is decided here.
  const serverJson = ctx.dialect.serverJson;
  const row = partRow(input, data.length, cut, ctx.dialect, serverJson !== null);
  return { row, small, json: serverJudgesJson(ctx, row.body), large: large ? { data, sources: large } : null };
}

/** Stores the attachments of a prepared part that do not go with its batch. */
export async function storeLargeAttachments(ctx: ExternalContext, large: NonNullable<BatchedPart['large']>): Promise<void> {
  for (const source of large.sources) await storeAttachment(ctx, large.data, source);
}

/**
 * Whether a bulk copy asks the server to build the body's JSON copy: checked on the bytes alone
 * when a refusal only costs its batch a retry in halves (COPY), else parsed here first.
 */
export function serverJudgesJson(ctx: ExternalContext, body: Buffer): boolean {
  const serverJson = ctx.dialect.serverJson;
  if (!serverJson) return false;
  return ctx.copyIn ? serverJson.plausible(body) : serverJson.acceptable(body);
}

/** A part row whose body is still a value read in chunks (too big to gather). */
export type StreamedPartRow = Omit<PartRow, 'body'> & { body: StreamedValue };

/** Cut bodies up to this size are gathered into a Buffer and go with the batches like any other row. */
export const GATHERED_BODY_BYTES = 8 * 1024 * 1024;

/**
 * `preparePartBatched` for a value read in chunks: its attachments are cut out and stored chunk
 * by chunk (single-chunk ones come back for the batch); the body left is gathered when it is at
 * most GATHERED_BODY_BYTES or when `stream` is false (engines without a bulk load bind one
 * Buffer), else it stays a view of the value to be streamed.
 */
export async function preparePartStreamed(
  ctx: ExternalContext,
  input: Omit<PartInput, 'data'> & { data: StreamedValue },
  stream: boolean,
): Promise<{ streamed: false; row: PartRow; small: SmallAttachment[]; json: boolean } | { streamed: true; row: StreamedPartRow; small: SmallAttachment[] }> {
  const cut = cutStreamedPart(input.data, input.id);
  const small: SmallAttachment[] = [];
  for (const source of cut.sources) {
    const encoded = source.span.end - source.span.payloadStart;
    if (ctx.dialect.batchesSmallAttachments && encoded <= CHUNK_BYTES) {
      const chunks = source.decoded ? [source.decoded] : [...streamedAttachmentChunks(input.data, source.span, source.kind)];
      small.push({ sha256: source.sha256, data: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks) });
    } else {
      await storeAttachmentChunks(ctx, source.sha256, () => (source.decoded ? [source.decoded] : streamedAttachmentChunks(input.data, source.span, source.kind)));
    }
  }
  const whole = { ...input, data: Buffer.alloc(0) };
  if (!stream || cut.body.bytes <= GATHERED_BODY_BYTES) {
    const body = wholePayload(cut.body);
    const serverJson = ctx.dialect.serverJson;
    const row = partRow(whole, input.data.bytes, { ...cut, body }, ctx.dialect, serverJson !== null);
    return { streamed: false, row, small, json: serverJudgesJson(ctx, body) };
  }
  // Too big for a JSON copy (jsonCopy stops at 1 MB): the body alone is streamed.
  const row = { ...partRow(whole, input.data.bytes, { ...cut, body: Buffer.alloc(0) }, ctx.dialect, true), body: cut.body, data: null };
  return { streamed: true, row, small };
}

/**
 * Inserts single-chunk attachments in two statements, skipping any already stored: the chunk
 * first, then the attachment row marked complete, so a row never exists without its bytes.
 */
export async function insertSmallAttachments(ctx: ExternalContext, list: readonly SmallAttachment[]): Promise<void> {
  const unique = [...new Map(list.map((a) => [a.sha256, a])).values()];
  if (unique.length === 0) return;
  const chunks = unique.filter((a) => a.data.length > 0).map((a) => ({ sha256: a.sha256, seq: 0, data: a.data }));
  const rows = unique.map((a) => ({ sha256: a.sha256, bytes: a.data.length, chunks: a.data.length > 0 ? 1 : 0, complete: 1 }));
  if (chunks.length) await ctx.dialect.insertIgnoring(ctx.db, 'sk_attachment_chunk', chunks);
  await ctx.dialect.insertIgnoring(ctx.db, 'sk_attachment', rows);
}

/** A part row ready to insert, its attachments stored first. */
export async function preparePart(ctx: ExternalContext, input: PartInput): Promise<PartRow> {
  const data = typeof input.data === 'string' ? Buffer.from(input.data) : input.data;
  const cut = cutPart(data, input.id);
  for (const source of cut.sources) await storeAttachment(ctx, data, source);
  return partRow(input, data.length, cut, ctx.dialect);
}

export async function insertProject(ctx: ExternalContext, row: Row): Promise<void> {
  const id = String(row['id']);
  const have = await ctx.db.selectFrom('sk_project').select('id').where('id', '=', id).executeTakeFirst();
  if (have) return;
  try {
    await ctx.db.insertInto('sk_project').values({ id, row_json: JSON.stringify(row) }).execute();
  } catch (error) {
    const again = await ctx.db.selectFrom('sk_project').select('id').where('id', '=', id).executeTakeFirst();
    if (!again) throw error;
  }
}

/** A session row known to be absent, for `insertNewSessions`. */
export interface NewSession {
  row: Row;
  extras: StoredSessionExtras;
  project: Row | null;
}

/**
 * For bulk copies: inserts session rows known to be absent, marked incomplete, several to a
 * statement (their projects once per copy: `projects` holds the ids already stored).
 */
export async function insertNewSessions(ctx: ExternalContext, sessions: readonly NewSession[], projects: Set<string>): Promise<void> {
  const rows: SkTables['sk_session'][] = [];
  for (const { row, extras, project } of sessions) {
    const projectRow = project ?? defaultProjectRow(row['project_id']);
    const projectId = String(projectRow['id']);
    if (!projects.has(projectId)) {
      await insertProject(ctx, projectRow);
      projects.add(projectId);
    }
    rows.push({ ...sessionValues(row, extras), messages: 0, parts: 0, bytes: 0, digest: null, complete: 0 });
  }
  // Fourteen values a row: within SQL Server's 2,100 parameters.
  const perStatement = Math.max(1, Math.floor(ctx.dialect.batchRows / 2));
  for (let at = 0; at < rows.length; at += perStatement) await ctx.db.insertInto('sk_session').values(rows.slice(at, at + perStatement)).execute();
}

/** Recomputes a session's counters from its rows. */
export async function recount(exec: Kysely<SkTables>, sessionId: string): Promise<void> {
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

export async function requireSession(ctx: ExternalContext, sessionId: string): Promise<void> {
  const have = await ctx.db.selectFrom('sk_session').select('id').where('id', '=', sessionId).executeTakeFirst();
  if (!have) throw new SkError('not-found', `no session ${sessionId} in ${ctx.conn.display}`);
}

/** Removes one session's rows (and, with `withSession`, the session itself); returns the part ids removed. */
export async function deleteSessionRows(ctx: ExternalContext, sessionId: string, withSession: boolean): Promise<string[]> {
  const shas = new Set<string>();
  const partIds: string[] = [];
  for (;;) {
    // Parts are removed in pages: a session can have very many, each with its attachment list.
    const rows = await ctx.dialect.limit(ctx.db.selectFrom('sk_part').select(['id', 'attachments']).where('session_id', '=', sessionId).orderBy('id'), 1000).execute();
    if (rows.length === 0) break;
    for (const r of rows) {
      partIds.push(r.id);
      for (const s of parseSpans(r.attachments)) shas.add(s.s);
    }
    await ctx.db.deleteFrom('sk_part').where('id', 'in', rows.map((r) => r.id)).execute();
  }
  for (const r of await ctx.db.selectFrom('sk_row').select('attachments').where('session_id', '=', sessionId).where('att_count', '>', 0).execute()) {
    for (const s of parseSpans(r.attachments)) shas.add(s.s);
  }
  await ctx.db.transaction().execute(async (trx) => {
    await trx.deleteFrom('sk_part').where('session_id', '=', sessionId).execute();
    await trx.deleteFrom('sk_message').where('session_id', '=', sessionId).execute();
    await trx.deleteFrom('sk_row').where('session_id', '=', sessionId).execute();
    if (withSession) await trx.deleteFrom('sk_session').where('id', '=', sessionId).execute();
  });
  await collectAttachments(ctx, [...shas]);
  return partIds;
}

/** Drops attachments no part refers to any more. */
export async function collectAttachments(ctx: ExternalContext, shas: readonly string[]): Promise<void> {
  for (const sha of new Set(shas)) {
    const used = await ctx.dialect.limit(ctx.db.selectFrom('sk_part').select('id').where('att_count', '>', 0).where('attachments', 'like', `%${sha}%`), 1).execute();
    if (used.length > 0) continue;
    const usedByRow = await ctx.dialect.limit(ctx.db.selectFrom('sk_row').select('ord').where('att_count', '>', 0).where('attachments', 'like', `%${sha}%`), 1).execute();
    if (usedByRow.length > 0) continue;
    await ctx.db.deleteFrom('sk_attachment_chunk').where('sha256', '=', sha).execute();
    await ctx.db.deleteFrom('sk_attachment').where('sha256', '=', sha).execute();
  }
}

/** Inserts (or replaces) a session row; its messages and parts are left as they are. */
export async function putSessionRow(ctx: ExternalContext, row: Row, extras: StoredSessionExtras | null, project: Row | null, complete: boolean): Promise<void> {
  const values = sessionValues(row, extras);
  await insertProject(ctx, project ?? defaultProjectRow(row['project_id']));
  await ctx.db.transaction().execute(async (trx) => {
    const had = await trx.deleteFrom('sk_session').where('id', '=', values.id).executeTakeFirst();
    await trx.insertInto('sk_session').values({ ...values, messages: 0, parts: 0, bytes: 0, digest: null, complete: complete ? 1 : 0 }).execute();
    if (Number(had.numDeletedRows) > 0) await recount(trx, values.id);
  });
}

/** Sessions held here; `whole` when their copy finished and was verified. */
export async function sessionStates(ctx: ExternalContext, ids: readonly string[]): Promise<Map<string, SessionState>> {
  const rows = await sessionRowsIn(ctx, ids, ['id', 'time_updated', 'complete', 'digest', 'messages', 'parts']);
  return new Map(
    rows.map((r) => [r.id, { updated: Number(r.time_updated), whole: Number(r.complete) === 1 && r.digest !== null, messages: Number(r.messages), parts: Number(r.parts) }]),
  );
}

/**
 * Stores rows of one of a session's other tables, each encoded value by value, its attachments
 * cut out into the content-addressed table like a part's; returns their digest lines.
 */
export async function storeTableRows(
  ctx: ExternalContext,
  sessionId: string,
  table: string,
  rows: readonly Row[],
  firstOrd: number,
  options: { bulk?: boolean } = {},
): Promise<{ lines: string[] }> {
  const stored: SkTables['sk_row'][] = [];
  const small: SmallAttachment[] = [];
  const lines: string[] = [];
  for (const [i, row] of rows.entries()) {
    const body = Buffer.concat(encodeTableRow(row));
    const cut = cutPart(body, `${sessionId}/${table}/${firstOrd + i}`);
    for (const source of cut.sources) {
      if (ctx.dialect.batchesSmallAttachments && source.span.end - source.span.payloadStart <= CHUNK_BYTES) {
        small.push({ sha256: source.sha256, data: sourceChunks(body, source) });
      } else await storeAttachment(ctx, body, source);
    }
    const attachments = cut.spans.length > 0 ? JSON.stringify(cut.spans) : null;
    stored.push({
      session_id: sessionId,
      table_name: table,
      ord: firstOrd + i,
      bytes: body.length,
      body: cut.body,
      attachments,
      att_count: cut.attachmentCount,
      att_bytes: cut.attachmentBytes,
      att_encoded: cut.encodedBytes,
    });
    lines.push(tableRowLine(table, firstOrd + i, cut.body.length, sha256Hex(cut.body), attachments));
  }
  await insertSmallAttachments(ctx, small);
  // `bulk`: outside any transaction of ctx.db, so the engine's bulk load (its own pooled connection) may take them.
  if (options.bulk && ctx.copyIn) {
    const cells = stored.map((row) => COPY_COLUMNS.sk_row.map(({ name }): CopyCell => (row as unknown as Record<string, CopyCell>)[name] ?? null));
    const loaded = await ctx.copyIn.load('sk_row', COPY_COLUMNS.sk_row, cells);
    if (loaded !== stored.length) throw new SkError('corrupt', `sk_row: ${stored.length} rows of session ${sessionId} sent, ${loaded} stored in ${ctx.location}`);
    return { lines };
  }
  // Bounded batches: SQL Server allows 2,100 parameters in a statement, MySQL 16 MB packets.
  for (let at = 0; at < stored.length; ) {
    const batch: SkTables['sk_row'][] = [];
    for (let size = 0; at < stored.length && batch.length < Math.floor(ctx.dialect.batchRows / 2) && (batch.length === 0 || size < 4 * 1024 * 1024); at++) {
      const row = stored[at] as SkTables['sk_row'];
      batch.push(row);
      size += row.body.length;
    }
    await ctx.db.insertInto('sk_row').values(batch).execute();
  }
  return { lines };
}

/** A session's stored rows of other tables back as items, table by table, in the order they were stored. */
export async function* storedTableRows(ctx: ExternalContext, sessionId: string, rebuild: (body: Buffer, spans: ReturnType<typeof parseSpans>) => Promise<Buffer>, counts: TableCounts): AsyncGenerator<SessionItem> {
  let next = 0;
  let batch: { table: string; rows: Row[] } | null = null;
  for (;;) {
    const page = await ctx.dialect
      .limit(ctx.db.selectFrom('sk_row').select(['table_name', 'ord', 'body', 'attachments']).where('session_id', '=', sessionId).where('ord', '>=', next).orderBy('ord'), 200)
      .execute();
    for (const r of page) {
      const spans = parseSpans(r.attachments);
      const body = spans.length > 0 ? await rebuild(r.body, spans) : r.body;
      const row = decodeTableRow(body, `${ctx.location}: session ${sessionId}, ${r.table_name}`);
      if (batch && batch.table !== r.table_name) {
        yield { kind: 'rows', table: batch.table, rows: batch.rows };
        batch = null;
      }
      batch ??= { table: r.table_name, rows: [] };
      batch.rows.push(row);
      counts[r.table_name] = (counts[r.table_name] ?? 0) + 1;
      next = Number(r.ord) + 1;
    }
    if (page.length < 200) break;
  }
  if (batch) yield { kind: 'rows', table: batch.table, rows: batch.rows };
}

/** Rows per table a stored session holds. */
export async function storedCounts(ctx: ExternalContext, sessionId: string): Promise<TableCounts> {
  const session = await ctx.db.selectFrom('sk_session').select(['messages', 'parts', 'extras_json']).where('id', '=', sessionId).executeTakeFirst();
  const counts: TableCounts = {};
  if (!session) return counts;
  counts['message'] = Number(session.messages);
  counts['part'] = Number(session.parts);
  const extras = (session.extras_json ? JSON.parse(session.extras_json) : null) as Pick<StoredSessionExtras, 'todos' | 'share'> | null;
  if (extras) {
    counts['todo'] = extras.todos.length;
    counts['session_share'] = extras.share ? 1 : 0;
  }
  const rows = await ctx.db.selectFrom('sk_row').select((eb) => ['table_name', eb.fn.countAll<number>().as('n')]).where('session_id', '=', sessionId).groupBy('table_name').execute();
  for (const r of rows) counts[r.table_name] = Number(r.n);
  return counts;
}
