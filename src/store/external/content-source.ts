/** The page builder's rows from a server: sizes from stored counters, small bodies in batched queries. */
import { sql } from 'kysely';
import { SkError } from '../../core/errors.js';
import type { SessionRow } from '../../core/opencode-format.js';
import { cutSessionPayload, PAGE_RULES } from '../../core/page-rules.js';
import { attachmentRefName } from '../../core/part-scan.js';
import type { ContentRow, ContentSource } from '../page-builder.js';
import { parseSpans } from './codec.js';
import type { ExternalContext } from './context.js';

const { inlineFetchBytes, inlineTotalBytes, sessionPayloadColumns, sessionPayloadLimit } = PAGE_RULES;
/** Inline bodies fetched in one query: drivers may carry binary columns as text first (bytea as hex). */
const INLINE_BATCH_BYTES = 1024 * 1024;

interface BodyRow {
  id: string;
  time_created: number;
  bytes: number;
  body: Buffer | null;
  body_bytes: number;
  attachments?: string | null;
}

function contentRow(row: BodyRow): ContentRow {
  const spans = parseSpans(row.attachments ?? null);
  const content: ContentRow = { id: row.id, timeCreated: Number(row.time_created), bytes: Number(row.bytes), fetchBytes: Number(row.body_bytes), data: row.body };
  if (spans.length > 0) content.refBytes = new Map(spans.map((s) => [attachmentRefName(row.id, s.i), s.n]));
  return content;
}

export class ExternalContentSource implements ContentSource {
  constructor(private readonly store: ExternalContext) {}

  get location(): string {
    return this.store.location;
  }

  get readableLimit(): number {
    return this.store.dialect.readableLimit;
  }

  async sessionRow(sessionId: string): Promise<SessionRow | undefined> {
    // A session an interrupted copy left unfinished is not shown (the next copy replaces it).
    const stored = await this.store.db.selectFrom('sk_session').select('row_json').where('id', '=', sessionId).where('complete', '=', 1).executeTakeFirst();
    if (!stored) return undefined;
    // jsonb comes back parsed from pg; text columns come back as strings.
    const row = (typeof stored.row_json === 'string' ? JSON.parse(stored.row_json) : stored.row_json) as SessionRow & Record<string, unknown>;
    for (const c of sessionPayloadColumns) {
      const value = row[c];
      if (typeof value === 'string' && Buffer.byteLength(value) > sessionPayloadLimit) row[c] = cutSessionPayload(Buffer.byteLength(value));
    }
    return row;
  }

  async messages(sessionId: string, after: readonly [number, string] | null, limit: number): Promise<ContentRow[]> {
    const { db, dialect } = this.store;
    let query = db
      .selectFrom('sk_message')
      .select([
        'id',
        'time_created',
        'bytes',
        dialect.byteLength('body').as('body_bytes'),
        sql<Buffer | null>`CASE WHEN ${dialect.byteLength('body')} <= ${sql.lit(inlineFetchBytes)} THEN body END`.as('body'),
      ])
      .where('session_id', '=', sessionId)
      .orderBy('time_created')
      .orderBy('id');
    if (after) {
      const [created, id] = after;
      query = query.where((eb) => eb.or([eb('time_created', '>', created), eb.and([eb('time_created', '=', created), eb('id', '>', id)])]));
    }
    return ((await dialect.limit(query, limit).execute()) as BodyRow[]).map(contentRow);
  }

  /** The page's parts, by message: fetched once for the whole page (this source serves one page). */
  private pageParts: { key: string; parts: Map<string, ContentRow[]> } | null = null;

  /**
   * A message's parts in page order. The whole page's parts come in one query, sizes first; bodies
   * come inline (batched queries) while they are small and their total over the page stays under
   * the page rules' inline total, as the SQLite store does, so a page never arrives as one huge
   * result. The rest are fetched one at a time. Two round trips per page, not per message.
   */
  async parts(messageId: string, pageIds: readonly string[]): Promise<ContentRow[]> {
    const ids = pageIds.includes(messageId) ? pageIds : [messageId];
    const key = ids.join('\n');
    let page = this.pageParts;
    if (page?.key !== key) {
      page = { key, parts: await this.partsOf(ids) };
      this.pageParts = page;
    }
    return page.parts.get(messageId) ?? [];
  }

  private async partsOf(messageIds: readonly string[]): Promise<Map<string, ContentRow[]>> {
    const { db, dialect } = this.store;
    const rows = (await db
      .selectFrom('sk_part')
      .select(['id', 'message_id', 'time_created', 'bytes', 'attachments', dialect.byteLength('body').as('body_bytes'), sql<null>`NULL`.as('body')])
      .where('message_id', 'in', messageIds)
      .orderBy('message_id')
      .orderBy('time_created')
      .orderBy('id')
      .execute()) as (BodyRow & { message_id: string })[];
    const byMessage = new Map<string, (BodyRow & { message_id: string })[]>(messageIds.map((id) => [id, []]));
    for (const row of rows) byMessage.get(row.message_id)?.push(row);
    const inline: BodyRow[] = [];
    let total = 0;
    for (const id of messageIds) {
      for (const row of byMessage.get(id) ?? []) {
        const size = Number(row.body_bytes);
        if (size > inlineFetchBytes || total + size > inlineTotalBytes) continue;
        total += size;
        inline.push(row);
      }
    }
    const byId = new Map(inline.map((row) => [row.id, row]));
    for (let at = 0; at < inline.length; ) {
      const ids: string[] = [];
      for (let bytes = 0; at < inline.length && (ids.length === 0 || bytes < INLINE_BATCH_BYTES); at++) {
        const row = inline[at] as BodyRow;
        ids.push(row.id);
        bytes += Number(row.body_bytes);
      }
      for (const fetched of await db.selectFrom('sk_part').select(['id', 'body']).where('id', 'in', ids).execute()) {
        const row = byId.get(fetched.id);
        if (row) row.body = fetched.body;
      }
    }
    return new Map([...byMessage].map(([id, parts]) => [id, parts.map(contentRow)]));
  }

  async payload(table: 'message' | 'part', row: ContentRow): Promise<Buffer> {
    const fetched = await this.store.db.selectFrom(table === 'part' ? 'sk_part' : 'sk_message').select('body').where('id', '=', row.id).executeTakeFirst();
    if (!fetched) throw new SkError('not-found', `${table} ${row.id} disappeared while reading`);
    return fetched.body;
  }
}
