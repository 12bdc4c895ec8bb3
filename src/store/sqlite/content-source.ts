/** The page builder's rows from OpenCode's file: sizes first, small data inline, large values alone. */
import type { SessionRow } from '../../core/opencode-format.js';
import { cutSessionPayload, PAGE_RULES } from '../../core/page-rules.js';
import type { ContentRow, ContentSource } from '../page-builder.js';
import type { SqliteConnection } from './connection.js';
import { messagesAfter, partsOfMessages, payloadOf, statement, type PartRow } from './rows.js';

const { inlineFetchBytes, inlineTotalBytes, sessionPayloadColumns, sessionPayloadLimit } = PAGE_RULES;

export class SqliteContentSource implements ContentSource {
  /** The parts of the page being built, fetched in one query on the first message's turn. */
  private pageParts: { key: string; parts: Map<string, PartRow[]> } | null = null;

  constructor(protected readonly conn: SqliteConnection) {}

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
}
