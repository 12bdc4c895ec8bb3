/**
 * Parts in and out of the external schema. Going in, every `data:` URL's payload is cut out of
 * the part's JSON by byte offset (part-scan's spans; nothing is parsed) and stored as
 * content-addressed chunks; the body keeps the URL's header. Coming out, the body and the chunks
 * are put back together into exactly the bytes OpenCode wrote.
 */
import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import { findAttachments, type AttachmentSpan } from '../../core/part-scan.js';

/** Decoded bytes per stored chunk: a multiple of 3, so chunks base64-encode independently. */
export const CHUNK_BYTES = 3 * 349_525;
/** Base64 characters per chunk (CHUNK_BYTES decoded). */
const CHUNK_CHARS = (CHUNK_BYTES / 3) * 4;

/** One cut attachment: see schema.ts for the field names. */
export interface StoredSpan {
  /** index among the part's data URLs */
  i: number;
  /** byte offset in the body where the payload goes back */
  o: number;
  s: string;
  /** `b`: stored decoded, base64 re-encoded on the way out; `r`: the payload bytes as written */
  k: 'b' | 'r';
  n: number;
  e: number;
}

export interface CutPart {
  body: Buffer;
  spans: StoredSpan[];
  /** what the spans' chunks are made from, in span order */
  sources: { span: AttachmentSpan; sha256: string; kind: 'b' | 'r' }[];
  attachmentCount: number;
  attachmentBytes: number;
  encodedBytes: number;
}

/**
 * The payload of a base64 span as decoded chunks, or null when re-encoding them would not give
 * back the same characters (whitespace, missing padding, url-safe alphabet, stray bits): such a
 * payload is stored as it was written instead.
 */
function* canonicalChunks(buf: Buffer, span: AttachmentSpan): Generator<Buffer> {
  for (let at = span.payloadStart; at < span.end; at += CHUNK_CHARS) {
    const end = Math.min(span.end, at + CHUNK_CHARS);
    const decoded = Buffer.from(buf.toString('latin1', at, end), 'base64');
    if (!Buffer.from(decoded.toString('base64'), 'latin1').equals(buf.subarray(at, end))) throw new NotCanonical();
    yield decoded;
  }
}

class NotCanonical extends Error {}

/** The chunks an attachment is stored as. */
export function* attachmentChunks(buf: Buffer, span: AttachmentSpan, kind: 'b' | 'r'): Generator<Buffer> {
  if (kind === 'b') {
    yield* canonicalChunks(buf, span);
    return;
  }
  for (let at = span.payloadStart; at < span.end; at += CHUNK_BYTES) yield buf.subarray(at, Math.min(span.end, at + CHUNK_BYTES));
}

function hashSpan(buf: Buffer, span: AttachmentSpan): { sha256: string; kind: 'b' | 'r'; bytes: number } {
  if (span.base64) {
    try {
      const hash = createHash('sha256');
      let bytes = 0;
      for (const chunk of canonicalChunks(buf, span)) {
        hash.update(chunk);
        bytes += chunk.length;
      }
      return { sha256: hash.digest('hex'), kind: 'b', bytes };
    } catch (error) {
      if (!(error instanceof NotCanonical)) throw error;
    }
  }
  return { sha256: createHash('sha256').update(buf.subarray(span.payloadStart, span.end)).digest('hex'), kind: 'r', bytes: span.end - span.payloadStart };
}

/** Cuts a part's attachments out. A part that cannot be scanned is kept whole, with no spans. */
export function cutPart(buf: Buffer, partId: string): CutPart {
  let found: AttachmentSpan[] = [];
  try {
    found = findAttachments(buf, partId);
  } catch {
    // malformed JSON: kept as it is, shown as `unreadable` exactly as the SQLite store does
  }
  const result: CutPart = { body: buf, spans: [], sources: [], attachmentCount: 0, attachmentBytes: 0, encodedBytes: 0 };
  const pieces: Buffer[] = [];
  let last = 0;
  let bodyLength = 0;
  for (const span of found) {
    result.attachmentCount++;
    result.attachmentBytes += span.decodedBytes;
    result.encodedBytes += span.end - span.start;
    if (span.end <= span.payloadStart) continue;
    const { sha256, kind } = hashSpan(buf, span);
    pieces.push(buf.subarray(last, span.payloadStart));
    bodyLength += span.payloadStart - last;
    result.spans.push({ i: span.index, o: bodyLength, s: sha256, k: kind, n: span.decodedBytes, e: span.end - span.payloadStart });
    result.sources.push({ span, sha256, kind });
    last = span.end;
  }
  if (result.spans.length > 0) {
    pieces.push(buf.subarray(last));
    result.body = Buffer.concat(pieces);
  }
  return result;
}

/** Reads an attachment's chunks, in order. */
export type ChunkReader = (sha256: string) => AsyncIterable<Buffer>;

/** The part's original bytes as a sequence of pieces (body slices and payload chunks). */
export async function* rebuildPart(body: Buffer, spans: readonly StoredSpan[], readChunks: ChunkReader): AsyncGenerator<Buffer> {
  let last = 0;
  for (const span of spans) {
    yield body.subarray(last, span.o);
    last = span.o;
    for await (const chunk of readChunks(span.s)) yield span.k === 'b' ? Buffer.from(chunk.toString('base64'), 'latin1') : chunk;
  }
  yield body.subarray(last);
}

export function parseSpans(text: string | null): StoredSpan[] {
  if (!text) return [];
  return JSON.parse(text) as StoredSpan[];
}

/** Bodies above this size get no JSON copy: the JSON column is for queries, and parsing costs heap. */
export const MAX_JSON_COPY_BYTES = 1024 * 1024;

/** The body as JSON text when it is a JSON object or array small enough to copy, else null. */
export function jsonObjectText(body: Buffer): string | null {
  if (body.length > MAX_JSON_COPY_BYTES) return null;
  const text = body.toString('utf8');
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object' ? text : null;
  } catch {
    return null;
  }
}

const BACKSLASH_U = Buffer.from('\\u');

/** True when the text has an escape that strict JSON types refuse (`\u0000`, surrogate escapes: conservatively). */
export function hasRefusedEscape(body: Buffer): boolean {
  for (let at = body.indexOf(BACKSLASH_U); at !== -1; at = body.indexOf(BACKSLASH_U, at + 2)) {
    const c = body[at + 2];
    const d = body[at + 3];
    if (c === 0x30 && d === 0x30 && body[at + 4] === 0x30 && body[at + 5] === 0x30) return true;
    if ((c === 0x64 || c === 0x44) && d !== undefined && ((d >= 0x38 && d <= 0x39) || (d >= 0x61 && d <= 0x66) || (d >= 0x41 && d <= 0x46))) return true;
  }
  return false;
}

/**
 * A check of the bytes, no string made: not too big, valid UTF-8, starts as an object or array,
 * no refused escape. For bodies too big to parse here, where the server has the final word.
 */
export function jsonPlausible(body: Buffer): boolean {
  if (body.length > MAX_JSON_COPY_BYTES || !isUtf8(body)) return false;
  let i = 0;
  while (i < body.length && (body[i] === 0x20 || body[i] === 0x09 || body[i] === 0x0a || body[i] === 0x0d)) i++;
  if (body[i] !== 0x7b && body[i] !== 0x5b) return false;
  return !hasRefusedEscape(body);
}
