/**
 * Sessions whose conversation lives in `session_message` (made through OpenCode 1.18's newer API,
 * and every session of 2.x): each row is a whole message, its content items inside its JSON. The
 * page builder reads them like messages; their `content` items become the view's parts.
 */
import type { MessageView } from '../../core/api.js';
import { PAGE_RULES } from '../../core/page-rules.js';
import type { ContentRow } from '../page-builder.js';
import type { SqliteConnection } from './connection.js';
import { SqliteContentSource } from './content-source.js';
import { statement } from './rows.js';

const { inlineFetchBytes } = PAGE_RULES;

/** True when the session keeps its conversation in session_message (read from there alone, never twice). */
export function usesSessionMessages(conn: SqliteConnection, sessionId: string): boolean {
  if (!conn.schema.tables.has('session_message')) return false;
  return statement(conn.db, 'SELECT 1 FROM session_message WHERE session_id = ? LIMIT 1').pluck().get(sessionId) !== undefined;
}

export class SessionMessageSource extends SqliteContentSource {
  override async messages(sessionId: string, after: readonly [number, string] | null, limit: number): Promise<ContentRow[]> {
    const columns = `rowid, id, time_created AS timeCreated, octet_length(data) AS bytes,
      CASE WHEN octet_length(data) <= ${inlineFetchBytes} THEN CAST(data AS BLOB) END AS data, type`;
    if (!after) {
      return statement(this.conn.db, `SELECT ${columns} FROM session_message WHERE session_id = ? ORDER BY time_created, id LIMIT ?`).all(sessionId, limit) as ContentRow[];
    }
    const [created, id] = after;
    return statement(
      this.conn.db,
      `SELECT ${columns} FROM session_message WHERE session_id = ? AND (time_created > ? OR (time_created = ? AND id > ?)) ORDER BY time_created, id LIMIT ?`,
    ).all(sessionId, created, created, id, limit) as ContentRow[];
  }

  /** The items are inside each message. */
  override async parts(): Promise<ContentRow[]> {
    return [];
  }

  override async payload(_table: 'message' | 'part', row: ContentRow): Promise<Buffer> {
    return super.payloadFrom('session_message', row);
  }

  /** Large messages are read in chunks from where they are (the base class's scanPayload). */
  protected override valueTable(): string {
    return 'session_message';
  }

  /** `{info: the message without its content, parts: its content items}`, as OpenCode's API shows them. */
  messageView(row: ContentRow & { type?: string }, sessionId: string, value: unknown): MessageView {
    const data: Record<string, unknown> = value && typeof value === 'object' && !Array.isArray(value) ? { ...(value as Record<string, unknown>) } : { data: value };
    const content = Array.isArray(data['content']) ? (data['content'] as unknown[]) : [];
    delete data['content'];
    const parts = content.map((item, index) => ({ ...(item && typeof item === 'object' ? (item as Record<string, unknown>) : { value: item }), index }));
    return { info: { id: row.id, sessionID: sessionId, type: row.type ?? data['type'] ?? 'message', ...data }, parts };
  }
}
