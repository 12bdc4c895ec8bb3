/**
 * Parts in and out of the external schema. Going in, every `data:` URL's payload is cut out of
 * the part's JSON by byte offset (part-scan's spans; nothing is parsed) and stored as
 * content-addressed chunks; the body keeps the URL's header. Coming out, the body and the chunks
 * are put back together into exactly the bytes OpenCode wrote.
 */
import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import { findAttachmentsInChunks } from '../../core/attachment-stream.js';
import { findAttachments, type AttachmentSpan } from '../../core/part-scan.js';
import type { StreamedValue } from './dialect.js';

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
  /** what the spans' chunks are made from, in span order; `decoded`: a base64 payload of one chunk, decoded once already */
  sources: { span: AttachmentSpan; sha256: string; kind: 'b' | 'r'; decoded?: Buffer }[];
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
    const text = buf.toString('latin1', at, end);
    const decoded = Buffer.from(text, 'base64');
    // Compared as strings: no Buffer of the re-encoded text is made.
    if (decoded.toString('base64') !== text) throw new NotCanonical();
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

/** The stored chunks of a span, decoded at most once: `decoded` when the cut already holds them. */
export function sourceChunks(buf: Buffer, source: CutPart['sources'][number]): Buffer {
  if (source.decoded) return source.decoded;
  const chunks = [...attachmentChunks(buf, source.span, source.kind)];
  return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
}

function hashSpan(buf: Buffer, span: AttachmentSpan): { sha256: string; kind: 'b' | 'r'; bytes: number; decoded?: Buffer } {
  if (span.base64) {
    try {
      const hash = createHash('sha256');
      let bytes = 0;
      let first: Buffer | undefined;
      let count = 0;
      for (const chunk of canonicalChunks(buf, span)) {
        hash.update(chunk);
        bytes += chunk.length;
        first ??= chunk;
        count++;
      }
      // A one-chunk payload is kept decoded so storing it does not decode it again.
      return { sha256: hash.digest('hex'), kind: 'b', bytes, ...(count === 1 && first ? { decoded: first } : {}) };
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
    const { sha256, kind, decoded } = hashSpan(buf, span);
    pieces.push(buf.subarray(last, span.payloadStart));
    bodyLength += span.payloadStart - last;
    result.spans.push({ i: span.index, o: bodyLength, s: sha256, k: kind, n: span.decodedBytes, e: span.end - span.payloadStart });
    result.sources.push(decoded ? { span, sha256, kind, decoded } : { span, sha256, kind });
    last = span.end;
  }
  if (result.spans.length > 0) {
    pieces.push(buf.subarray(last));
    result.body = Buffer.concat(pieces);
  }
  return result;
}

/**
 * Bytes `[start, end)` of a value read in chunks, as pieces of `pieceBytes` (the last one
 * shorter); the value's chunks are read only as far as `end`.
 */
function* rangePieces(value: StreamedValue, start: number, end: number, pieceBytes: number): Generator<Buffer> {
  let offset = 0;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for (const chunk of value.chunks()) {
    const from = Math.max(start, offset);
    const to = Math.min(end, offset + chunk.length);
    offset += chunk.length;
    for (let at = from; at < to; ) {
      const take = Math.min(to - at, pieceBytes - pendingBytes);
      const base = offset - chunk.length;
      pending.push(chunk.subarray(at - base, at - base + take));
      pendingBytes += take;
      at += take;
      if (pendingBytes === pieceBytes) {
        yield pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending);
        pending = [];
        pendingBytes = 0;
      }
    }
    if (offset >= end) break;
  }
  if (pendingBytes > 0) yield pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending);
}

/** `canonicalChunks` over a value read in chunks: the same pieces, decoded. */
function* canonicalStreamedChunks(value: StreamedValue, span: AttachmentSpan): Generator<Buffer> {
  for (const piece of rangePieces(value, span.payloadStart, span.end, CHUNK_CHARS)) {
    const text = piece.toString('latin1');
    const decoded = Buffer.from(text, 'base64');
    if (decoded.toString('base64') !== text) throw new NotCanonical();
    yield decoded;
  }
}

/** `attachmentChunks` of a value read in chunks. */
export function* streamedAttachmentChunks(value: StreamedValue, span: AttachmentSpan, kind: 'b' | 'r'): Generator<Buffer> {
  if (kind === 'b') yield* canonicalStreamedChunks(value, span);
  else yield* rangePieces(value, span.payloadStart, span.end, CHUNK_BYTES);
}

function hashStreamedSpan(value: StreamedValue, span: AttachmentSpan): { sha256: string; kind: 'b' | 'r'; decoded?: Buffer } {
  if (span.base64) {
    try {
      const hash = createHash('sha256');
      let first: Buffer | undefined;
      let count = 0;
      for (const chunk of canonicalStreamedChunks(value, span)) {
        hash.update(chunk);
        first ??= chunk;
        count++;
      }
      // As in hashSpan: a one-chunk payload is kept decoded (storing it would read and decode it again).
      return { sha256: hash.digest('hex'), kind: 'b', ...(count === 1 && first ? { decoded: first } : {}) };
    } catch (error) {
      if (!(error instanceof NotCanonical)) throw error;
    }
  }
  const hash = createHash('sha256');
  for (const piece of rangePieces(value, span.payloadStart, span.end, CHUNK_BYTES)) hash.update(piece);
  return { sha256: hash.digest('hex'), kind: 'r' };
}

/** `cutPart` of a value read in chunks: its body is the value with the payloads left out, read again on demand. */
export interface StreamedCutPart extends Omit<CutPart, 'body'> {
  body: StreamedValue;
}

/**
 * Cuts a part's attachments out of a value too big to hold (exactly what `cutPart` makes of the
 * same bytes): one pass finds the spans, one per attachment hashes it; the body is a view that
 * skips the payloads when read. A part that cannot be scanned is kept whole, with no spans.
 */
export function cutStreamedPart(value: StreamedValue, partId: string): StreamedCutPart {
  let found: AttachmentSpan[] = [];
  try {
    found = findAttachmentsInChunks(value.chunks(), partId);
  } catch {
    // malformed JSON: kept as it is, as cutPart keeps it
  }
  const result: StreamedCutPart = { body: value, spans: [], sources: [], attachmentCount: 0, attachmentBytes: 0, encodedBytes: 0 };
  const cuts: [number, number][] = [];
  let bodyLength = 0;
  let last = 0;
  for (const span of found) {
    result.attachmentCount++;
    result.attachmentBytes += span.decodedBytes;
    result.encodedBytes += span.end - span.start;
    if (span.end <= span.payloadStart) continue;
    const { sha256, kind, decoded } = hashStreamedSpan(value, span);
    bodyLength += span.payloadStart - last;
    result.spans.push({ i: span.index, o: bodyLength, s: sha256, k: kind, n: span.decodedBytes, e: span.end - span.payloadStart });
    result.sources.push(decoded ? { span, sha256, kind, decoded } : { span, sha256, kind });
    cuts.push([span.payloadStart, span.end]);
    last = span.end;
  }
  if (cuts.length > 0) result.body = { bytes: bodyLength + (value.bytes - last), chunks: () => outside(value, cuts) };
  return result;
}

/** The value's bytes outside the sorted, disjoint ranges `cuts`, chunk by chunk. */
function* outside(value: StreamedValue, cuts: readonly [number, number][]): Generator<Buffer> {
  let offset = 0;
  let next = 0;
  for (const chunk of value.chunks()) {
    const end = offset + chunk.length;
    let at = offset;
    while (at < end) {
      const cut = cuts[next];
      if (!cut || cut[0] >= end) {
        yield chunk.subarray(at - offset);
        break;
      }
      if (cut[0] > at) yield chunk.subarray(at - offset, cut[0] - offset);
      if (cut[1] > end) break;
      at = Math.max(at, cut[1]);
      next++;
    }
    offset = end;
  }
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
