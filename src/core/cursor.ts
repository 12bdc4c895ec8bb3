/** Keyset cursors: opaque to callers, validated when they come back. */
import { z } from 'zod';
import { SkError } from './errors.js';

const sessionCursor = z.tuple([z.number().int(), z.string().min(1).max(128)]);
const messageCursor = z.tuple([z.number().int(), z.string().min(1).max(128)]);

export type SessionCursor = z.infer<typeof sessionCursor>;
export type MessageCursor = z.infer<typeof messageCursor>;

export function encodeCursor(key: readonly [number, string]): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

function decode<T>(schema: z.ZodType<T>, cursor: string): T {
  try {
    return schema.parse(JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')));
  } catch {
    throw new SkError('usage', `invalid cursor: ${JSON.stringify(cursor.slice(0, 40))}`);
  }
}

/** (time_updated, id) of the last session on the previous page. */
export const decodeSessionCursor = (cursor: string): SessionCursor => decode(sessionCursor, cursor);
/** (time_created, id) of the last message on the previous page. */
export const decodeMessageCursor = (cursor: string): MessageCursor => decode(messageCursor, cursor);
