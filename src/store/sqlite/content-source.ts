/** The page builder's rows from OpenCode's file: sizes first, small data inline, large values alone, the largest in chunks. */
import { PartReducer, reducePartChunks } from '../../core/part-reduce.js';
import type { AttachmentSpan, ScannedPart, ScanOptions } from '../../core/part-scan.js';
import type { SessionRow } from '../../core/opencode-format.js';
import { cutSessionPayload, PAGE_RULES } from '../../core/page-rules.js';
import type { ContentRow, ContentSource } from '../page-builder.js';
import type { SqliteConnection } from './connection.js';
import type { PartIndex } from './part-index.js';
import { messagesAfter, partsOfMessages, payloadOf, statement, type PartRow, type PayloadRow } from './rows.js';
import { valueChunks } from './value-chunks.js';

const { inlineFetchBytes, inlineTotalBytes, sessionPayloadColumns, sessionPayloadLimit } = PAGE_RULES;

export class SqliteContentSource implements ContentSource {
  /** The parts of the page being built, fetched in one query on the first message's turn. */
  private pageParts: { key: string; parts: Map<string, PartRow[]> } | null = null;

  /**
   * @param streamAbove values larger than this are read in chunks, never whole (with sk_chunks).
   * @param index where a part's attachments are known to lie: only the bytes around them are read.
   */
  constructor(
    protected readonly conn: SqliteConnection,
    private readonly streamAbove: number,
    private readonly index: PartIndex | null = null,
  ) {}

  get location(): string {
    return this.conn.path;
  }

  get readableLimit(): number {
    return this.conn.readableLimit;
  }

  async sessionRow(sessionId: string): Promise<SessionRow | undefined> {
    const columns = [...this.conn.schema.sessionColumns];
    // Payload columns are sized first and included only when small (octet_length reads no payload).
    const select = columns
      .map((c) =>
        (sessionPayloadColumns as readonly string[]).includes(c)
          ? `CASE WHEN octet_length("${c}") <= ${sessionPayloadLimit} THEN "${c}" END AS "${c}", octet_length("${c}") AS "${c}__bytes"`
          : `"${c}"`,
      )
      .join(', ');
    const row = statement(this.conn.db, `SELECT ${select} FROM session WHERE id = ?`).get(sessionId) as (SessionRow & Record<string, unknown>) | undefined;
    if (!row) return undefined;
    for (const c of sessionPayloadColumns) {
      const bytes = row[`${c}__bytes`];
      delete row[`${c}__bytes`];
      if (typeof bytes === 'number' && bytes > sessionPayloadLimit) row[c] = cutSessionPayload(bytes);
    }
    return row;
  }

  async messages(sessionId: string, after: readonly [number, string] | null, limit: number): Promise<ContentRow[]> {
    return messagesAfter(this.conn, sessionId, after, limit, inlineFetchBytes);
  }

  /** The whole page's parts in one query; inline data stops after 4 MB, the rest is fetched one part at a time. */
  async parts(messageId: string, pageIds: readonly string[]): Promise<ContentRow[]> {
    const key = pageIds.join('\n');
    if (this.pageParts?.key !== key) this.pageParts = { key, parts: partsOfMessages(this.conn, pageIds, inlineFetchBytes, inlineTotalBytes) };
    return this.pageParts.parts.get(messageId) ?? [];
  }

  async payload(table: 'message' | 'part', row: ContentRow): Promise<Buffer> {
    return this.payloadFrom(table, row);
  }

  protected payloadFrom(table: string, row: ContentRow): Buffer {
    return payloadOf(this.conn, table, row);
  }

  /** The table a row the page builder calls `table` is stored in (a subclass may keep messages elsewhere). */
  protected valueTable(table: 'message' | 'part'): string {
    return table;
  }

  /**
   * A large row's page view from its value in 1 MiB chunks (sk_chunks): attachments and long
   * strings are cut as they stream by, so memory holds what the page keeps, not the value. When our
   * index knows where the part's attachments lie, only the bytes around their payloads are read.
   */
  async scanPayload(table: 'message' | 'part', row: ContentRow, options: ScanOptions): Promise<ScannedPart | null> {
    const { rowid, timeUpdated } = row as Partial<PayloadRow>;
    if (this.conn.valueReads !== 'chunked' || rowid === undefined || row.bytes <= this.streamAbove || row.bytes > this.conn.readableLimit) return null;
    const stored = this.valueTable(table);
    // Our index knows parts (by rowid, checked against id, time_updated and size).
    const indexed = stored === 'part' && timeUpdated !== undefined;
    const known = indexed ? this.index?.spans(rowid, row.id, timeUpdated, row.bytes) : undefined;
    if (known && known.length > 0) {
      const scanned = this.scanAround(stored, rowid, row.bytes, known, options);
      if (scanned) return scanned;
    }
    const scanned = reducePartChunks(valueChunks(this.conn.db, stored, 'data', rowid), options);
    if (indexed) {
      this.index?.record({ row: rowid, id: row.id, timeUpdated, bytes: row.bytes, spans: scanned.attachments });
      this.index?.flush();
    }
    return scanned;
  }

  /** The view read around known payloads; null when what was read does not match what the index said. */
  private scanAround(table: string, rowid: number, bytes: number, spans: readonly AttachmentSpan[], options: ScanOptions): ScannedPart | null {
    const reducer = new PartReducer(options);
    let from = 0;
    const read = (start: number, stop: number): void => {
      let at = start;
      for (const chunk of valueChunks(this.conn.db, table, 'data', rowid, { start, stop })) {
        reducer.write(chunk, at);
        at += chunk.length;
      }
    };
    try {
      for (const span of spans) {
        read(from, span.payloadStart);
        // The payload's last two bytes carry its padding; the rest of it is left out.
        from = Math.max(span.payloadStart, span.end - 2);
      }
      read(from, bytes);
      const scanned = reducer.end();
      const same = (a: AttachmentSpan, b: AttachmentSpan | undefined): boolean =>
        !!b && a.start === b.start && a.end === b.end && a.payloadStart === b.payloadStart && a.decodedBytes === b.decodedBytes;
      return scanned.attachments.length === spans.length && spans.every((span, i) => same(span, scanned.attachments[i])) ? scanned : null;
    } catch {
      return null;
    }
  }
}
