/**
 * The archive format: a JSON array of OpenCode export objects (`{info, messages: [{info, parts}]}`,
 * what `opencode export` prints and `opencode import` reads), each with a `sessionKeeper` member
 * beside the export fields holding what the API form lacks, so a restore is row-exact:
 *
 *   {"sessionKeeper": {format, project, session: <row>, todos, share, diff},
 *    "info": <Session.Info>,
 *    "messages": [{"sessionKeeper": {time: [created, updated], parts: [[created, updated], ...]},
 *                  "info": {"id", "sessionID", ...message.data},
 *                  "parts": [{"id", "sessionID", "messageID", ...part.data}, ...]}, ...],
 *    "sessionKeeperTables": [{"table": "event", "rows": [<row>, ...]}, ...]}
 *
 * Message and part objects are written as their ids followed by the row's own JSON text, byte for
 * byte, so the original `data` is recovered exactly by cutting the id prefix off again. Rows of
 * the session's other tables (every table that cascades from it, and the event log) are encoded
 * value by value (table-row.ts); `opencode import` ignores them, our restore puts them back.
 */
import { z } from 'zod';
import { SkError } from './errors.js';
import { JsonStreamScanner } from './json-stream.js';
import { jsonStringBody, jsonStringBodyChunks } from './table-row.js';
import { TRIM_TABLES, type TrimmedRows } from './trim.js';

/** 2: the session's other tables (event log, session_message, ...) under `sessionKeeperTables`. */
/** The rows an archive's session had trimmed, by table (`SessionHeader.trimmed`). */
const trimmedRowsSchema = z.partialRecord(z.enum(TRIM_TABLES), z.array(z.string().min(1)));

export const ARCHIVE_FORMAT = 2;
export const TABLES_KEY = 'sessionKeeperTables';
export const EXTRA_KEY = 'sessionKeeper';

/** Row facts the export form does not carry, for one session. */
export interface SessionExtras {
  format: number;
  /** The `project` row the session belongs to (restored when missing). */
  project: Record<string, unknown> | null;
  /** The `session` row, every column as stored. */
  session: Record<string, unknown>;
  todos: Record<string, unknown>[];
  share: Record<string, unknown> | null;
  /** `storage/session_diff/<id>.json`, parsed, when it existed. */
  diff: unknown;
  /** A trim's archive: the rows trimmed from this session, per table. */
  trimmed?: TrimmedRows;
}

/** Row facts for one message and its parts (in the order of `parts`). */
export interface MessageExtras {
  time: [number, number];
  parts: [number, number][];
}

/** `{"id":…,"sessionID":…` (and `"messageID":…` for parts): what precedes the row's own JSON. */
export function idPrefix(ids: readonly string[], names: readonly string[]): string {
  return `{${names.map((name, i) => `${JSON.stringify(name)}:${JSON.stringify(ids[i])}`).join(',')}`;
}

/** Key of the stand-in used for a row whose text is not a JSON object (kept as a string). */
export const RAW_KEY = 'sessionKeeperRaw';

/** True when `data` is one complete, well-formed JSON document. */
export function isWellFormedJson(data: Buffer): boolean {
  // Native parsing is far faster for ordinary rows; the scanner keeps big ones off the heap.
  if (data.length <= 1024 * 1024) {
    try {
      JSON.parse(data.toString('utf8'));
      return true;
    } catch {
      return false;
    }
  }
  try {
    const scanner = new JsonStreamScanner({ select: () => false, chunk: () => undefined, end: () => undefined });
    scanner.write(data);
    scanner.finish();
    return true;
  } catch {
    return false;
  }
}

/**
 * Wraps a row's JSON object text with its ids, without parsing it: `{"id":…,…` + the text after
 * its `{`, so the row's bytes appear unchanged. A row that is not a non-empty, well-formed object
 * is kept whole as a string under RAW_KEY instead, so the archive stays valid JSON. `knownValid`
 * is the caller's own check (SQLite's json_valid), when it has one.
 */
export function wrapRowJson(prefix: string, data: Buffer, knownValid?: boolean): Buffer[] {
  if (data[0] === 0x7b && data[1] !== 0x7d && (knownValid ?? isWellFormedJson(data))) {
    return [Buffer.from(`${prefix},`), data.subarray(1)];
  }
  return [Buffer.from(`${prefix},${JSON.stringify(RAW_KEY)}:"`), ...jsonStringBody(data), Buffer.from('"}')];
}

/** A large value that can be read more than once, in chunks, in order. */
export interface ChunkSource {
  chunks(): Iterable<Buffer>;
}

/** True when the chunks together are one complete, well-formed JSON document (read once, never whole). */
export function isWellFormedJsonChunks(source: ChunkSource): boolean {
  const scanner = new JsonStreamScanner({ select: () => false, chunk: () => undefined, end: () => undefined });
  try {
    for (const chunk of source.chunks()) scanner.write(chunk);
    scanner.finish();
    return true;
  } catch (error) {
    if (error instanceof SkError && /^malformed JSON/.test(error.message)) return false;
    throw error; // a read error of the store is not a verdict on the JSON
  }
}

/**
 * wrapRowJson for a value read in chunks: the same bytes, as pieces in order. The value is read
 * twice, once to check it is a JSON object, once to write it; neither pass holds it whole.
 */
export function* wrapRowJsonChunks(prefix: string, source: ChunkSource): Generator<Buffer> {
  let head: Buffer | undefined;
  for (const chunk of source.chunks()) {
    head = chunk.subarray(0, 2);
    break;
  }
  if (head && head[0] === 0x7b && head.length === 2 && head[1] !== 0x7d && isWellFormedJsonChunks(source)) {
    yield Buffer.from(`${prefix},`);
    let first = true;
    for (const chunk of source.chunks()) {
      yield first ? chunk.subarray(1) : chunk;
      first = false;
    }
    return;
  }
  yield Buffer.from(`${prefix},${JSON.stringify(RAW_KEY)}:"`);
  yield* jsonStringBodyChunks(source.chunks());
  yield Buffer.from('"}');
}

/**
 * The row's own JSON text back from a wrapped object, or null when the object does not start
 * with exactly our prefix (an archive made by something else).
 */
export function unwrapRowJson(prefix: string, wrapped: Buffer): Buffer | null {
  const head = Buffer.from(`${prefix},`);
  if (wrapped.length <= head.length || wrapped.compare(head, 0, head.length, 0, head.length) !== 0) return null;
  const raw = Buffer.from(`${JSON.stringify(RAW_KEY)}:`);
  if (wrapped.compare(raw, 0, raw.length, head.length, head.length + raw.length) === 0) {
    const text = JSON.parse(wrapped.toString('utf8', head.length + raw.length, wrapped.length - 1)) as unknown;
    return typeof text === 'string' ? Buffer.from(text, 'utf8') : null;
  }
  return Buffer.concat([Buffer.from('{'), wrapped.subarray(head.length)]);
}

export const MESSAGE_ID_KEYS = ['id', 'sessionID'] as const;
export const PART_ID_KEYS = ['id', 'sessionID', 'messageID'] as const;

/** What a restore needs of an archived session; anything less is refused with where it is wrong. */
export const sessionExtrasSchema = z.object({
  format: z.number().int().min(1),
  project: z.record(z.string(), z.unknown()).nullable(),
  session: z
    .object({ id: z.string().min(1), project_id: z.string().min(1), title: z.string(), directory: z.string(), time_created: z.number(), time_updated: z.number() })
    .passthrough(),
  todos: z.array(z.record(z.string(), z.unknown())).default([]),
  share: z.record(z.string(), z.unknown()).nullable().default(null),
  diff: z.unknown().optional(),
  trimmed: trimmedRowsSchema.optional(),
});

/** An `opencode export` session (no extras of ours): what OpenCode's own Session.Info must have. */
export const exportInfoSchema = z
  .object({
    id: z.string().min(1),
    projectID: z.string().min(1).optional(),
    directory: z.string(),
    title: z.string(),
    time: z.object({ created: z.number(), updated: z.number().optional() }).passthrough(),
  })
  .passthrough();

export const messageExtrasSchema = z.object({
  time: z.tuple([z.number(), z.number()]),
  parts: z.array(z.tuple([z.number(), z.number()])),
});

/** The first problem of a failed validation, in words: `info.time.created: expected a number`. */
export function describeArchiveIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'not what an archive holds';
  const where = issue.path.filter((p) => typeof p !== 'symbol').join('.');
  const message = issue.code === 'invalid_type' && issue.input === undefined ? 'missing' : issue.message.replace(/^Invalid input: /, '');
  return `${where || 'value'}: ${message}`;
}
