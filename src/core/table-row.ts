/**
 * One row of a table, as archives and servers carry it: every value with its own type, byte for
 * byte. As JSON: numbers and nulls as themselves; TEXT that is a JSON object or array embedded
 * raw (its exact bytes, no escaping, and none parsed on the way back); other UTF-8 TEXT as a JSON
 * string; BLOBs and TEXT that is not UTF-8 in base64 under the row's "$binary" member.
 */
import { isUtf8 } from 'node:buffer';
import { SkError } from './errors.js';
import { JsonStreamScanner, type PathItem } from './json-stream.js';
import { JsonStringDecoder, wholeUtf8Length } from './json-string-decode.js';

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
    /** The value's SQLite type: TEXT unless it was a BLOB. */
    readonly type: 'text' | 'blob' = 'text',
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

const NO_VALIDITY: ReadonlyMap<string, boolean> = new Map();
const QUOTE_PIECE = Buffer.from('"');
/** `{"name":` and `,"name":` per column name: a table has few columns and an export many rows. */
const keyPieces = new Map<string, [Buffer, Buffer]>();

function keyPiece(name: string, first: boolean): Buffer {
  let pair = keyPieces.get(name);
  if (!pair) {
    const quoted = JSON.stringify(name);
    pair = [Buffer.from(`{${quoted}:`), Buffer.from(`,${quoted}:`)];
    // Names come from schemas (few) but also from archives being read: remember a bounded number.
    if (keyPieces.size < 1024) keyPieces.set(name, pair);
  }
  return first ? pair[0] : pair[1];
}

/** True when JSON.stringify of the (UTF-8) text would escape nothing: no `"`, `\\` or byte below 0x20. */
function needsNoEscape(text: Buffer): boolean {
  for (let i = 0; i < text.length; i++) {
    const byte = text[i] as number;
    if (byte < 0x20 || byte === 0x22 || byte === 0x5c) return false;
  }
  return true;
}

/** encodeTableRow as it goes: a large value's chunks are read (twice: checked, then written) and handed out one by one. */
export function* encodeTableRowPieces(row: Row, jsonValid: ReadonlyMap<string, boolean> = NO_VALIDITY): Generator<Buffer> {
  const pieces: Buffer[] = [];
  const binary: [string, 'text' | 'blob', string][] = [];
  let first = true;
  const key = (name: string): void => {
    pieces.push(keyPiece(name, first));
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
    } else if (value instanceof ChunkedValue && value.type === 'blob') {
      binary.push([name, 'blob', gather(value).toString('base64')]);
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
      // UTF-8 with nothing JSON escapes (no quote, backslash or control byte) is its own string body.
      pieces.push(QUOTE_PIECE, ...(value.length <= 4096 && needsNoEscape(value) ? [value] : jsonStringBody(value)), QUOTE_PIECE);
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

/** Decodes one member of an encoded row (its whole JSON bytes, not `$binary`'s) into `row`. */
function decodeRowMember(row: Row, name: string, raw: Buffer): void {
  const head = raw[0];
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

/** A file of ours that a large value is decoded into as it streams by (a restore's spill file). */
export interface ValueSink {
  readonly path: string;
  /** Bytes appended so far. */
  readonly bytes: number;
  append(bytes: Buffer): void;
  /** The bytes from `offset` on, in chunks. */
  chunks(offset: number): Iterable<Buffer>;
}

/** Base64 text in chunks to its bytes, a quad never split (the payload of a `$binary` value). */
class Base64Decoder {
  private readonly text: JsonStringDecoder;
  private carry = '';

  constructor(where: string) {
    this.text = new JsonStringDecoder(where, true);
  }

  write(chunk: Buffer): Buffer {
    return this.decode(this.text.write(chunk), false);
  }

  end(): Buffer {
    return this.decode(this.text.end(), true);
  }

  private decode(bytes: Buffer, last: boolean): Buffer {
    const text = this.carry + bytes.toString('latin1');
    const whole = last ? text.length : text.length - (text.length % 4);
    this.carry = text.slice(whole);
    return Buffer.from(text.slice(0, whole), 'base64');
  }
}

/** What the decoding of one member has come to: collected, left in the file, or decoded into a sink. */
interface MemberState {
  collected: Buffer[];
  collectedBytes: number;
  /** A large raw member: where it starts in the file and how far it has come, contiguously. */
  large: { offset: number; end: number } | null;
  /** A large string member (or `$binary` payload) decoded into a file of ours as it comes. */
  decoding: { decoder: JsonStringDecoder | Base64Decoder; sink: ValueSink } | null;
}

/**
 * decodeTableRow over the pieces of a row. With `file` (the pieces are that file's bytes, and
 * `reread` gives them again from an offset), a member embedded raw (a JSON object or array) of at least
 * `largeBytes` is not collected: it becomes a ChunkedValue read back from the file. With `spill`
 * too, a string member or a `$binary` payload that large is decoded chunk by chunk into a file
 * `spill` gives, and becomes a ChunkedValue of that file.
 */
export function decodeTableRowPieces(
  pieces: Iterable<RowPiece>,
  where: string,
  file?: { path: string; reread: (from: number) => Iterable<RowPiece>; largeBytes: number; spill?: () => ValueSink },
): Row {
  const row: Row = {};
  const state: MemberState = { collected: [], collectedBytes: 0, large: null, decoding: null };
  /** `$binary`'s type per column (its [type, base64] pairs are read one member at a time). */
  const binaryTypes = new Map<string, 'text' | 'blob'>();
  let current: { offset: number; bytes: Buffer } | null = null;
  const whole = (): Buffer => (state.collected.length === 1 ? (state.collected[0] as Buffer) : Buffer.concat(state.collected));
  const decoded = (sink: ValueSink, type: 'text' | 'blob'): ChunkedValue => new ChunkedValue(sink.bytes, () => sink.chunks(0), { path: sink.path, offset: 0 }, type);

  const endBinary = (path: readonly PathItem[]): void => {
    const column = String(path[1]);
    if (path[2] === 0) {
      const type = JSON.parse(whole().toString('utf8')) as unknown;
      if (type !== 'text' && type !== 'blob') throw new SkError('archive', `${where}: column ${column} has a binary value of no known type`);
      binaryTypes.set(column, type);
      return;
    }
    const type = binaryTypes.get(column);
    if (path[2] !== 1 || type === undefined) throw new SkError('archive', `${where}: column ${column} has a binary value that is not [type, base64]`);
    if (state.decoding) {
      state.decoding.sink.append(state.decoding.decoder.end());
      row[column] = decoded(state.decoding.sink, type);
      return;
    }
    const value = Buffer.from(JSON.parse(whole().toString('utf8')) as string, 'base64');
    row[column] = type === 'blob' ? new BlobValue(value) : value;
  };

  const scanner = new JsonStreamScanner({
    select: (path) => {
      state.collected = [];
      state.collectedBytes = 0;
      state.large = null;
      state.decoding = null;
      // `$binary` is read a [type, base64] member at a time, so a large payload can stream.
      if (path[0] === BINARY_KEY) return path.length === 3;
      return path.length === 1;
    },
    chunk: (path, chunk) => {
      const at = current && chunk.buffer === current.bytes.buffer ? current.offset + (chunk.byteOffset - current.bytes.byteOffset) : -1;
      if (state.large) {
        if (at === state.large.end) {
          state.large.end += chunk.length;
          return;
        }
        throw new SkError('internal', `${where}: a large value did not come contiguously`);
      }
      if (state.decoding) {
        state.decoding.sink.append(state.decoding.decoder.write(chunk));
        return;
      }
      state.collected.push(chunk);
      state.collectedBytes += chunk.length;
      const first = state.collected[0] as Buffer;
      if (!file || state.collectedBytes < file.largeBytes) return;
      const payload = path[0] === BINARY_KEY;
      if (!payload && at >= 0 && (first[0] === 0x7b || first[0] === 0x5b)) {
        const start = at + chunk.length - state.collectedBytes;
        state.large = { offset: start, end: at + chunk.length };
        state.collected = [];
      } else if (file.spill && first[0] === 0x22 && (!payload || path[2] === 1)) {
        const label = `${where}, column ${String(payload ? path[1] : path[0])}`;
        const decoding = { decoder: payload ? new Base64Decoder(label) : new JsonStringDecoder(label, true), sink: file.spill() };
        for (const piece of state.collected) decoding.sink.append(decoding.decoder.write(piece));
        state.decoding = decoding;
        state.collected = [];
      }
    },
    end: (path) => {
      if (path[0] === BINARY_KEY) endBinary(path);
      else {
        const name = String(path[0]);
        if (state.large && file) {
          const { offset, end } = state.large;
          const source = file;
          row[name] = new ChunkedValue(end - offset, () => rangeOf(source.reread(offset), offset, end), { path: source.path, offset });
        } else if (state.decoding) {
          state.decoding.sink.append(state.decoding.decoder.end());
          row[name] = decoded(state.decoding.sink, 'text');
        } else decodeRowMember(row, name, whole());
      }
      state.collected = [];
      state.large = null;
      state.decoding = null;
    },
  });
  try {
    for (const piece of pieces) {
      current = piece;
      scanner.write(piece.bytes);
    }
    scanner.finish();
  } catch (error) {
    // The scanner's own complaints are about this row's text; anything else (a decoder's, a full disk's) says itself.
    if (error instanceof SkError && (error.code !== 'archive' || error.message.startsWith(where))) throw error;
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
