/** Keyset cursors: opaque to callers, validated when they come back. */
import { SkError } from './errors.js';

/** (sort key, id): a whole number and an id of 1 to 128 characters. */
export type SessionCursor = [number, string];
export type MessageCursor = [number, string];

export function encodeCursor(key: readonly [number, string]): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

// Checked by hand rather than with a schema: `list` decodes one on every page and loads no validator.
function isKey(value: unknown): value is [number, string] {
  if (!Array.isArray(value) || value.length !== 2) return false;
  const [key, id] = value as unknown[];
  return Number.isSafeInteger(key) && typeof id === 'string' && id.length >= 1 && id.length <= 128;
}

function decode(cursor: string): [number, string] {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    value = undefined;
  }
  if (!isKey(value)) throw new SkError('usage', `invalid cursor: ${JSON.stringify(cursor.slice(0, 40))}`);
  return [value[0], value[1]];
}

/** (time_updated, id) of the last session on the previous page. */
export const decodeSessionCursor = (cursor: string): SessionCursor => decode(cursor);
/** (time_created, id) of the last message on the previous page. */
export const decodeMessageCursor = (cursor: string): MessageCursor => decode(cursor);
