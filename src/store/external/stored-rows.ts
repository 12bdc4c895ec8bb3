/** Rows of our server schema (schema.ts) made from OpenCode's rows, for inserts. */
import { SkError } from '../../core/errors.js';
import type { Row } from '../session-items.js';
import type { CutPart } from './codec.js';
import type { EngineDialect } from './dialect.js';
import type { SkTables } from './schema.js';

export type MessageRow = SkTables['sk_message'];
export type PartRow = SkTables['sk_part'];

export interface MessageInput {
  id: string;
  sessionId: string;
  timeCreated: number;
  timeUpdated: number;
  /** `message.data`: JSON text (a Buffer keeps big ones off the heap). */
  data: Buffer | string;
}

export interface PartInput extends MessageInput {
  messageId: string;
}

/** Row facts beside the session row, for an exact restore into SQLite. */
export interface StoredSessionExtras {
  todos: Row[];
  share: Row | null;
  /** `storage/session_diff/<id>.json` as text, when it existed. */
  diff: string | null;
}

/** A session row's values as stored here (its counters and verification marks set by the caller). */
export function sessionValues(row: Row, extras: StoredSessionExtras | null): Omit<SkTables['sk_session'], 'messages' | 'parts' | 'bytes' | 'digest' | 'complete'> {
  const id = row['id'];
  if (typeof id !== 'string' || !id) throw new SkError('usage', 'a session needs an id');
  return {
    id,
    project_id: String(row['project_id'] ?? 'global'),
    parent_id: typeof row['parent_id'] === 'string' ? row['parent_id'] : null,
    title: String(row['title'] ?? ''),
    time_created: Number(row['time_created'] ?? 0),
    time_updated: Number(row['time_updated'] ?? 0),
    time_archived: typeof row['time_archived'] === 'number' ? row['time_archived'] : null,
    row_json: JSON.stringify(row),
    extras_json: extras ? JSON.stringify({ todos: extras.todos, share: extras.share, diff: extras.diff }) : null,
  };
}

/** With `serverJson`, the JSON copy is left to the server (built from the body in the INSERT). */
export function messageRow(input: MessageInput, dialect: EngineDialect, serverJson = false): MessageRow {
  const body = typeof input.data === 'string' ? Buffer.from(input.data) : input.data;
  return {
    id: input.id,
    session_id: input.sessionId,
    time_created: input.timeCreated,
    time_updated: input.timeUpdated,
    bytes: body.length,
    body,
    data: serverJson ? null : dialect.jsonCopy(body),
  };
}

export function partRow(input: PartInput, bytes: number, cut: CutPart, dialect: EngineDialect, serverJson = false): PartRow {
  return {
    id: input.id,
    message_id: input.messageId,
    session_id: input.sessionId,
    time_created: input.timeCreated,
    time_updated: input.timeUpdated,
    bytes,
    body: cut.body,
    data: serverJson ? null : dialect.jsonCopy(cut.body),
    attachments: cut.spans.length > 0 ? JSON.stringify(cut.spans) : null,
    att_count: cut.attachmentCount,
    att_bytes: cut.attachmentBytes,
    att_encoded: cut.encodedBytes,
  };
}
