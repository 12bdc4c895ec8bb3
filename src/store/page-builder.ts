/**
 * The one page builder: turns a backend's rows into a `show` page under the page rules (budget,
 * previews, attachments as references, values too big to read shown as `unreadable`). Backends
 * supply rows through a small ContentSource; nothing here knows which backend it talks to.
 */
import type { MessageView, PageOptions, ShowResult } from '../core/api.js';
import { decodeMessageCursor, encodeCursor } from '../core/cursor.js';
import { SkError } from '../core/errors.js';
import { toMessageInfo, toPartInfo, toSessionInfo, type SessionRow } from '../core/opencode-format.js';
import { DEFAULT_MESSAGE_PAGE, PAGE_RULES, stringLimits } from '../core/page-rules.js';
import { scanPartData, type ScannedPart, type ScanOptions } from '../core/part-scan.js';

/** One message or part row as a page sees it first: its size, and its data when small. */
export interface ContentRow {
  id: string;
  timeCreated: number;
  /** Bytes of the row's data as stored. */
  bytes: number;
  /** Bytes `payload` would bring back, when the backend keeps less than the stored row (attachments apart). */
  fetchBytes?: number;
  /** The data, when it came with the row (small values); fetched through `payload` otherwise. */
  data: Buffer | null;
  /** Decoded sizes of attachments the backend keeps apart from the data, by reference name. */
  refBytes?: ReadonlyMap<string, number>;
}

export interface ContentSource {
  /** The session row (payload columns too big for a page already cut), or undefined. */
  sessionRow(sessionId: string): Promise<SessionRow | undefined>;
  /** Up to `limit` messages after `after` (time_created, id), in that order. */
  messages(sessionId: string, after: readonly [number, string] | null, limit: number): Promise<ContentRow[]>;
  /** One message's parts in page order; `pageIds` lets a backend fetch the whole page's parts at once. */
  parts(messageId: string, pageIds: readonly string[]): Promise<ContentRow[]>;
  /** A row's whole data. */
  payload(table: 'message' | 'part', row: ContentRow): Promise<Buffer>;
  /**
   * A row's page view without its whole data in memory (read in chunks, attachments left out),
   * when the backend can do better than `payload` + `scanPartData` for this row; null otherwise.
   */
  scanPayload?(table: 'message' | 'part', row: ContentRow, options: ScanOptions): Promise<ScannedPart | null>;
  /** Largest value the backend can hand over; larger ones are listed as unreadable. */
  readonly readableLimit: number;
  /** Named in "no session" errors. */
  readonly location: string;
  /**
   * For layouts whose messages hold their items inside (OpenCode's session_message): the view of
   * one reduced message. Without it, a message is `message.data` plus ids and its parts are rows.
   */
  messageView?(row: ContentRow, sessionId: string, value: unknown): MessageView;
}

interface Reduced {
  value: Record<string, unknown>;
  /** What the page will hold for this row: the reduced JSON, not the stored bytes. */
  cost: number;
}

/** Puts the backend's own attachment sizes into the references a scan made. */
function patchRefBytes(node: unknown, bytes: ReadonlyMap<string, number>): void {
  if (Array.isArray(node)) {
    for (const item of node) patchRefBytes(item, bytes);
  } else if (node && typeof node === 'object') {
    const record = node as Record<string, unknown>;
    const ref = record['ref'];
    if (typeof ref === 'string' && typeof record['mime'] === 'string' && typeof record['bytes'] === 'number') {
      const n = bytes.get(ref);
      if (n !== undefined) record['bytes'] = n;
      return;
    }
    for (const value of Object.values(record)) patchRefBytes(value, bytes);
  }
}

/** One row's JSON, reduced; an unreadable row becomes a marked stand-in instead of failing the page. */
async function reduce(
  source: ContentSource,
  table: 'message' | 'part',
  row: ContentRow,
  budget: number,
  wrap: (value: unknown) => Record<string, unknown>,
): Promise<Reduced> {
  const { maxInlineString, previewBytes } = stringLimits(budget);
  const unreadable = (message: string): Reduced => ({ value: wrap({ type: 'unreadable', bytes: row.bytes, error: message }), cost: 256 });
  if (row.data === null && (row.fetchBytes ?? row.bytes) > source.readableLimit) {
    return unreadable(`${table} ${row.id} is ${row.fetchBytes ?? row.bytes} bytes, over the ${source.readableLimit}-byte limit this build can read`);
  }
  try {
    const options: ScanOptions = { partId: row.id, maxInlineString, previewBytes };
    const streamed = row.data === null && source.scanPayload ? await source.scanPayload(table, row, options) : null;
    const scanned = streamed ?? scanPartData(row.data ?? (await source.payload(table, row)), options);
    if (row.refBytes && scanned.attachments.length > 0) patchRefBytes(scanned.value, row.refBytes);
    const value = wrap(scanned.value);
    const cost = scanned.attachments.length === 0 && scanned.truncatedStrings === 0 ? scanned.keptBytes : JSON.stringify(value).length;
    return { value, cost };
  } catch (error) {
    if (!(error instanceof SkError) || (error.code !== 'bad-part' && error.code !== 'too-big')) throw error;
    return unreadable(error.message);
  }
}

/** A page of a session's messages and parts, never more than the page budget once reduced. */
export async function buildShowPage(source: ContentSource, sessionId: string, options: PageOptions = {}): Promise<ShowResult> {
  const row = await source.sessionRow(sessionId);
  if (!row) throw new SkError('not-found', `no session ${sessionId} in ${source.location}`);
  const limit = options.limit ?? DEFAULT_MESSAGE_PAGE;
  const after = options.cursor ? decodeMessageCursor(options.cursor) : null;
  const messages = await source.messages(sessionId, after, limit + 1);
  const page = messages.slice(0, limit);
  const pageIds = page.map((m) => m.id);

  let budget = PAGE_RULES.budgetBytes;
  const views: MessageView[] = [];
  let lastIncluded: ContentRow | undefined;
  for (const message of page) {
    if (views.length > 0 && budget <= 0) break;
    if (source.messageView) {
      const view = source.messageView.bind(source);
      let whole: MessageView | undefined;
      const reduced = await reduce(source, 'message', message, budget, (value) => {
        whole = view(message, sessionId, value);
        return whole.info;
      });
      budget -= reduced.cost;
      views.push(whole ?? { info: reduced.value, parts: [] });
      lastIncluded = message;
      continue;
    }
    const info = await reduce(source, 'message', message, budget, (value) => toMessageInfo(message.id, sessionId, value));
    budget -= info.cost;
    const parts: Record<string, unknown>[] = [];
    for (const part of await source.parts(message.id, pageIds)) {
      const view = await reduce(source, 'part', part, budget, (value) => toPartInfo(part.id, sessionId, message.id, value));
      budget -= view.cost;
      parts.push(view.value);
    }
    views.push({ info: info.value, parts });
    lastIncluded = message;
  }
  const more = messages.length > views.length;
  return {
    session: toSessionInfo(row) as unknown as Record<string, unknown>,
    messages: views,
    nextCursor: more && lastIncluded ? encodeCursor([lastIncluded.timeCreated, lastIncluded.id]) : null,
  };
}
