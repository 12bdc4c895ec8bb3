/**
 * One row of a table, as archives and servers carry it: every value with its own type, byte for
 * byte. As JSON: numbers and nulls as themselves; TEXT that is a JSON object or array embedded
 * raw (its exact bytes, no escaping, and none parsed on the way back); other UTF-8 TEXT as a JSON
 * string; BLOBs and TEXT that is not UTF-8 in base64 under the row's "$binary" member.
 */
import { isUtf8 } from 'node:buffer';
import { SkError } from './errors.js';
import { JsonStreamScanner } from './json-stream.js';

/** A BLOB value as stored (a TEXT value is a plain Buffer of its bytes). */
export class BlobValue {
  constructor(readonly bytes: Buffer) {}
}

/**
 * A value too big to hold whole, handed on as chunks (the store reads it through sk_chunks, an
 * archive being restored from a spill file). It is readable until the consumer asks for the next
 * item; `chunks()` may be called more than once (a check pass, then a write pass).
 */
export class ChunkedValue {
  constructor(
    /** Bytes of the whole value. */
    readonly bytes: number,
    private readonly read: () => Iterable<Buffer>,
    /** Where the bytes lie in a file of ours, whole and in order, when they do (a writer may load them from there). */
    readonly file: { path: string; offset: number } | null = null,
  ) {}

  chunks(): Iterable<Buffer> {
    return this.read();
  }
}

/** A column value as stored: payload columns arrive as Buffers, a large TEXT value as a ChunkedValue. */
export type RowValue = string | number | bigint | Buffer | BlobValue | ChunkedValue | null;
export type Row = Record<string, RowValue>;

const BINARY_KEY = '$binary';

/** Bytes of a row's TEXT and BLOB values (SQLite's octet_length of each): what it occupies beyond its numbers. */
export function rowPayloadBytes(row: Row): number {
  let bytes = 0;
  for (const value of Object.values(row)) {
    if (Buffer.isBuffer(value)) bytes += value.length;
    else if (value instanceof BlobValue) bytes += value.bytes.length;
    else if (value instanceof ChunkedValue) bytes += value.bytes;
    else if (typeof value === 'string') bytes += Buffer.byteLength(value);
  }
  return bytes;
}

/** True when `text` can stand in JSON as itself: an object or array, well-formed, nothing around it. */
function isRawJsonContainer(text: Buffer, knownValid: boolean | undefined): boolean {
  const first = text[0];
  const last = text[text.length - 1];
  if (!((first === 0x7b && last === 0x7d) || (first === 0x5b && last === 0x5d))) return false;
  if (knownValid !== undefined) return knownValid;
  try {
    const scanner = new JsonStreamScanner({ select: () => false, chunk: () => undefined, end: () => undefined });
    scanner.write(text);
    scanner.finish();
    return true;
  } catch {
    return false;
  }
}

/** A Buffer of UTF-8 text as the body of a JSON string, escaped in chunks (never one big string). */
export function* jsonStringBody(data: Buffer, chunkBytes = 1024 * 1024): Generator<Buffer> {
  let at = 0;
  while (at < data.length) {
    let end = Math.min(data.length, at + chunkBytes);
    // Never split a UTF-8 sequence: step back over continuation bytes.
    while (end < data.length && end > at && ((data[end] as number) & 0xc0) === 0x80) end--;
    yield Buffer.from(JSON.stringify(data.toString('utf8', at, end)).slice(1, -1));
    at = end;
  }
}

/** Length of the longest head of `bytes` that ends on a whole UTF-8 sequence. */
export function wholeUtf8Length(bytes: Buffer): number {
  let end = bytes.length;
  let back = 0;
  while (end > 0 && back < 3 && ((bytes[end - 1] as number) & 0xc0) === 0x80) {
    end--;
    back++;
  }
  if (end === 0) return bytes.length;
  const lead = bytes[end - 1] as number;
  const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return need > back + 1 ? end - 1 : bytes.length;
}

/** The chunks as the body of a JSON string, never splitting a UTF-8 sequence (what jsonStringBody does for a whole value). */
export function* jsonStringBodyChunks(chunks: Iterable<Buffer>): Generator<Buffer> {
  let carry: Buffer = Buffer.alloc(0);
  for (const chunk of chunks) {
    const bytes = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk;
    const cut = wholeUtf8Length(bytes);
    if (cut > 0) yield* jsonStringBody(bytes.subarray(0, cut));
    carry = Buffer.from(bytes.subarray(cut));
  }
  if (carry.length > 0) yield* jsonStringBody(carry);
}

/** How a large TEXT value is encoded, found in one pass over its chunks. */
function classifyChunked(value: ChunkedValue): 'raw' | 'string' | 'binary' {
  const scanner = new JsonStreamScanner({ select: () => false, chunk: () => undefined, end: () => undefined });
  let json = true;
  let utf8 = true;
  let first: number | undefined;
  let last: number | undefined;
  let carry: Buffer = Buffer.alloc(0);
  for (const chunk of value.chunks()) {
    if (chunk.length === 0) continue;
    first ??= chunk[0];
    last = chunk[chunk.length - 1];
    if (json) {
      try {
        scanner.write(chunk);
      } catch {
        json = false;
      }
    }
    if (utf8) {
      const bytes = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk;
      const cut = wholeUtf8Length(bytes);
      utf8 = isUtf8(bytes.subarray(0, cut));
      carry = Buffer.from(bytes.subarray(cut));
    }
  }
  if (json) {
    try {
      scanner.finish();
    } catch {
      json = false;
    }
  }
  if (json && ((first === 0x7b && last === 0x7d) || (first === 0x5b && last === 0x5d))) return 'raw';
  return utf8 && (carry.length === 0 || isUtf8(carry)) ? 'string' : 'binary';
}

/** The whole bytes of a chunked value (the encoding that needs them: base64 of text that is not UTF-8). */
function gather(value: ChunkedValue): Buffer {
  return Buffer.concat([...value.chunks()]);
}

/**
 * The row as JSON pieces (written out in order, they are the row's encoding). `jsonValid` names
 * columns the caller already knows to be valid JSON text (SQLite's json_valid), to skip a scan.
 */
export function encodeTableRow(row: Row, jsonValid: ReadonlyMap<string, boolean> = new Map()): Buffer[] {
  return [...encodeTableRowPieces(row, jsonValid)];
}

/** encodeTableRow as it goes: a large value's chunks are read (twice: checked, then written) and handed out one by one. */
export function* encodeTableRowPieces(row: Row, jsonValid: ReadonlyMap<string, boolean> = new Map()): Generator<Buffer> {
  const pieces: Buffer[] = [];
  const binary: [string, 'text' | 'blob', string][] = [];
  let first = true;
  const key = (name: string): void => {
    pieces.push(Buffer.from(`${first ? '{' : ','}${JSON.stringify(name)}:`));
    first = false;
  };
  for (const [name, value] of Object.entries(row)) {
    if (value === null || typeof value === 'number') {
      key(name);
      pieces.push(Buffer.from(value === null || Number.isFinite(value) ? JSON.stringify(value) : 'null'));
    } else if (typeof value === 'bigint') {
      key(name);
      pieces.push(Buffer.from(value.toString()));
    } else if (typeof value === 'string') {
      key(name);
      pieces.push(Buffer.from(JSON.stringify(value)));
    } else if (value instanceof BlobValue) {
      binary.push([name, 'blob', value.bytes.toString('base64')]);
    } else if (value instanceof ChunkedValue) {
      const kind = classifyChunked(value);
      if (kind === 'binary') {
        binary.push([name, 'text', gather(value).toString('base64')]);
        continue;
      }
      key(name);
      yield* pieces.splice(0);
      if (kind === 'raw') yield* value.chunks();
      else {
        yield Buffer.from('"');
        yield* jsonStringBodyChunks(value.chunks());
        yield Buffer.from('"');
      }
    } else if (isRawJsonContainer(value, jsonValid.get(name))) {
      key(name);
      pieces.push(value);
    } else if (isUtf8(value)) {
      key(name);
      pieces.push(Buffer.from('"'), ...jsonStringBody(value), Buffer.from('"'));
    } else {
      binary.push([name, 'text', value.toString('base64')]);
    }
  }
  if (binary.length > 0) {
    key(BINARY_KEY);
    pieces.push(Buffer.from(JSON.stringify(Object.fromEntries(binary.map(([n, t, b]) => [n, [t, b]])))));
  }
  pieces.push(Buffer.from(first ? '{}' : '}'));
  yield* pieces;
}

/** Decodes one member of an encoded row (its whole JSON bytes) into `row`. */
function decodeRowMember(row: Row, name: string, raw: Buffer): void {
  const head = raw[0];
  if (name === BINARY_KEY) {
    const entries = JSON.parse(raw.toString('utf8')) as Record<string, ['text' | 'blob', string]>;
    for (const [column, [type, base64]] of Object.entries(entries)) {
      const value = Buffer.from(base64, 'base64');
      row[column] = type === 'blob' ? new BlobValue(value) : value;
    }
    return;
  }
  // Sliced out of a larger buffer, the raw text must not keep it alive or shared.
  if (head === 0x7b || head === 0x5b) row[name] = Buffer.from(raw);
  else if (head === 0x22) row[name] = Buffer.from(JSON.parse(raw.toString('utf8')) as string, 'utf8');
  else row[name] = JSON.parse(raw.toString('latin1')) as number | null;
}

/** Decodes one encoded row (its whole JSON bytes) back into values of the types they had. */
export function decodeTableRow(bytes: Buffer, where: string): Row {
  return decodeTableRowPieces([{ offset: 0, bytes }], where);
}

/** A piece of an encoded row with its offset in the file that holds the row. */
export interface RowPiece {
  offset: number;
  bytes: Buffer;
}

/**
 * decodeTableRow over the pieces of a row. With `file` (the pieces are that file's bytes, and
 * `reread` gives them again from an offset), a member embedded raw (a JSON object or array) of at least
 * `largeBytes` is not collected: it becomes a ChunkedValue read back from the file.
 */
export function decodeTableRowPieces(pieces: Iterable<RowPiece>, where: string, file?: { path: string; reread: (from: number) => Iterable<RowPiece>; largeBytes: number }): Row {
  const row: Row = {};
  let collected: Buffer[] = [];
  let collectedBytes = 0;
  /** A large raw member: where it starts in the file and how far it has come, contiguously. */
  let large: { offset: number; end: number } | null = null;
  let current: { offset: number; bytes: Buffer } | null = null;
  const scanner = new JsonStreamScanner({
    select: (path) => {
      if (path.length !== 1) return false;
      collected = [];
      collectedBytes = 0;
      large = null;
      return true;
    },
    chunk: (_path, chunk) => {
      const at = current && chunk.buffer === current.bytes.buffer ? current.offset + (chunk.byteOffset - current.bytes.byteOffset) : -1;
      if (large) {
        if (at === large.end) {
          large.end += chunk.length;
          return;
        }
        throw new SkError('internal', `${where}: a large value did not come contiguously`);
      }
      collected.push(chunk);
      collectedBytes += chunk.length;
      const first = collected[0] as Buffer;
      if (file && at >= 0 && collectedBytes >= file.largeBytes && (first[0] === 0x7b || first[0] === 0x5b)) {
        const start = at + chunk.length - collectedBytes;
        large = { offset: start, end: at + chunk.length };
        collected = [];
      }
    },
    end: (path) => {
      const name = String(path[0]);
      const span = large as { offset: number; end: number } | null;
      if (span && file) {
        const { offset, end } = span;
        const source = file;
        row[name] = new ChunkedValue(end - offset, () => rangeOf(source.reread(offset), offset, end), { path: source.path, offset });
      } else decodeRowMember(row, name, collected.length === 1 ? (collected[0] as Buffer) : Buffer.concat(collected));
      collected = [];
      large = null;
    },
  });
  try {
    for (const piece of pieces) {
      current = piece;
      scanner.write(piece.bytes);
    }
    scanner.finish();
  } catch (error) {
    if (error instanceof SkError && error.code === 'internal') throw error;
    throw new SkError('archive', `${where}: a table row that does not parse (${(error as Error).message})`);
  }
  return row;
}

/** The bytes from `start` to `end` of chunks that carry their offsets. */
function* rangeOf(pieces: Iterable<RowPiece>, start: number, end: number): Generator<Buffer> {
  for (const { offset, bytes } of pieces) {
    const from = Math.max(start, offset);
    const to = Math.min(end, offset + bytes.length);
    if (to > from) yield bytes.subarray(from - offset, to - offset);
    if (offset + bytes.length >= end) return;
  }
}
