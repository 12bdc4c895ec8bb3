/**
 * `findAttachments` for a value that arrives in chunks, plus a bounded-memory decoder for one of
 * the attachments it finds.
 *
 * The rules are part-scan's, byte for byte: every `"` outside a string opens one; a string ends at
 * the next `"` not preceded by an odd run of backslashes; a string is a key when the next
 * non-blank byte after it is `:`; a value string whose raw bytes start with `data:` is an
 * attachment, described from its first 1024 bytes (mime, `;base64`) and its length (padding from
 * its last two bytes). Spans carry absolute offsets into the whole value, so they equal
 * `findAttachments` on the concatenated chunks, including its error for an unterminated string
 * (raised only when `data:` occurs somewhere in the value).
 *
 * Whether a string is a key is known only after it ends, so the chosen attachment is decoded as
 * it streams by and its sink is told to `discard` if it turns out to be a key (`{"data:...":1}`).
 * Memory: the carried state is a few bytes (a partial base64 quad, a backslash run, up to 1024
 * header bytes); each decoded piece goes to the sink before the next chunk is read.
 */
import { SkError } from './errors.js';
import type { AttachmentSpan } from './part-scan.js';
import { BACKSLASH, closingQuote, QUOTE, trailingBackslashes } from './json-string-end.js';

/** Where the decoded bytes of the chosen attachment go, synchronously and in order. */
export interface AttachmentSink {
  write(bytes: Buffer): void;
  /** Everything written so far belonged to a string that turned out to be a key: forget it. */
  discard(): void;
}

export interface DecodeRequest {
  /** Which attachment, counted as `findAttachments` counts them. */
  index: number;
  sink: AttachmentSink;
  /** Names the attachment in errors, e.g. `part prt_x attachment 0`. */
  label: string;
}

export interface DecodedAttachment {
  span: AttachmentSpan;
  /** Bytes written to the sink. */
  bytes: number;
}

const COLON = 0x3a;
const COMMA = 0x2c;
const EQUALS = 0x3d;
const SLASH = 0x2f;
const DATA_PREFIX = Buffer.from('data:');
/** part-scan reads a data URL's header from its first this many bytes. */
const HEADER_WINDOW = 1024;
/** Percent-encoded (non-base64) data URLs are small by nature; larger ones are refused, as the attachment cache does. */
export const MAX_PLAIN_DATA_URL = 64 * 1024 * 1024;
/**
 * Base64 characters decoded per step (a multiple of 4), whatever the chunk size. Below Node's
 * external-string threshold (~1 MB) the text is an ordinary heap string, and allocating those
 * keeps the garbage collector running often enough to free spent chunks: measured on a 300 MB
 * PDF, peak RSS ~80 MB at 512 KiB against ~170 MB at 1 MiB and more, at the same speed.
 */
const DECODE_SLICE = 512 * 1024;
/** What the attachment cache accepts in a base64 payload: the standard and the URL-safe alphabet. */
const NOT_BASE64 = /[^A-Za-z0-9+/_-]/;

function isBlank(byte: number | undefined): boolean {
  return byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
}

function badBase64(label: string, char: string, payloadOffset: number): SkError {
  return new SkError('bad-attachment', `${label}: data URL is not valid base64 (${JSON.stringify(char)} at payload offset ${payloadOffset})`);
}

/** `%XX` becomes its byte, everything else its UTF-8 bytes; a `%` without two hex digits stays as it is. */
export function percentDecode(text: string): Buffer {
  const raw = Buffer.from(text, 'utf8');
  const out = Buffer.allocUnsafe(raw.length);
  const hex = (byte: number | undefined): number => {
    if (byte === undefined) return -1;
    if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
    if (byte >= 0x41 && byte <= 0x46) return byte - 0x37;
    if (byte >= 0x61 && byte <= 0x66) return byte - 0x57;
    return -1;
  };
  let written = 0;
  for (let i = 0; i < raw.length; i++) {
    const byte = raw[i] as number;
    const high = byte === 0x25 ? hex(raw[i + 1]) : -1;
    const low = high >= 0 ? hex(raw[i + 2]) : -1;
    if (low >= 0) {
      out[written++] = high * 16 + low;
      i += 2;
    } else {
      out[written++] = byte;
    }
  }
  return out.subarray(0, written);
}

interface PayloadDecoder {
  /** `bytes[from, to)` of the payload, raw JSON-string bytes; `at` is the raw payload offset of `from`. */
  write(bytes: Buffer, from: number, to: number, at: number): void;
  /** The payload ended: flushes the rest, returns the error to report if the string is a value. */
  finish(): SkError | null;
  readonly bytes: number;
}

/**
 * A base64 payload, decoded a whole number of quads at a time. `\/` (JSON's escaped slash) is
 * read as `/`; any other escape, a byte outside the alphabets, or a `=` not among the last two is
 * an error, reported as the attachment cache reports it: a truncated payload first, else the raw
 * offset of the first bad byte. After an error nothing more reaches the sink, but the payload is
 * still counted, so which error is reported does not depend on where the chunks were cut.
 */
class Base64Decoder implements PayloadDecoder {
  /** Up to 3 characters of an incomplete quad and their raw offsets. */
  private readonly quad = Buffer.alloc(4);
  private readonly quadOffsets = [0, 0, 0, 0];
  private quadLength = 0;
  /** Payload characters seen (an escape counts once when valid, twice when not), `=` included. */
  private characters = 0;
  /** Valid `\/` escapes among them: one character each, two raw bytes. */
  private escapes = 0;
  /** The trailing run of `=`: its raw offset and length (0: none). */
  private equalsAt = 0;
  private equalsRun = 0;
  /** Raw offset of a backslash whose escaped byte is in the next piece, or -1. */
  private backslashAt = -1;
  private error: SkError | null = null;
  bytes = 0;

  constructor(
    private readonly sink: AttachmentSink,
    private readonly label: string,
  ) {}

  write(bytes: Buffer, from: number, to: number, at: number): void {
    let i = from;
    while (i < to) {
      if (this.backslashAt >= 0) {
        const escapedAt = this.backslashAt;
        this.backslashAt = -1;
        if (bytes[i] === SLASH) {
          this.unescaped(SLASH_CHARACTER, 0, 1, escapedAt);
          this.escapes++;
        } else {
          // Counted as the raw bytes they are, so a truncated payload is reported as the cache would.
          if (this.equalsRun > 0) this.fail(badBase64(this.label, '=', this.equalsAt));
          this.equalsRun = 0;
          this.fail(badBase64(this.label, '\\', escapedAt));
          this.characters += 2;
        }
        i++;
        continue;
      }
      const found = bytes.subarray(i, to).indexOf(BACKSLASH);
      const stop = found < 0 ? to : i + found;
      if (stop > i) this.unescaped(bytes, i, stop, at + (i - from));
      if (stop < to) this.backslashAt = at + (stop - from);
      i = stop + 1;
    }
  }

  /** Characters without escapes, raw offsets contiguous from `at`. */
  private unescaped(bytes: Buffer, from: number, to: number, at: number): void {
    let i = from;
    while (i < to) {
      if (this.equalsRun > 0) {
        if (bytes[i] === EQUALS) {
          this.equalsRun++;
          this.characters++;
          i++;
          continue;
        }
        this.fail(badBase64(this.label, '=', this.equalsAt));
        this.equalsRun = 0;
      }
      const found = bytes.subarray(i, to).indexOf(EQUALS);
      const stop = found < 0 ? to : i + found;
      if (stop > i) this.alphabet(bytes, i, stop, at + (i - from));
      if (stop < to) {
        this.equalsAt = at + (stop - from);
        this.equalsRun = 1;
        this.characters++;
      }
      i = stop + 1;
    }
  }

  /** Characters meant to be base64 digits (no `=`), raw offsets contiguous from `at`. */
  private alphabet(bytes: Buffer, from: number, to: number, at: number): void {
    this.characters += to - from;
    if (this.error) return;
    let i = from;
    while (this.quadLength > 0 && i < to) {
      this.quad[this.quadLength] = bytes[i] as number;
      this.quadOffsets[this.quadLength] = at + (i - from);
      this.quadLength++;
      i++;
      if (this.quadLength === 4) this.flushQuad();
    }
    const whole = i + Math.floor((to - i) / 4) * 4;
    if (whole > i) this.decode(bytes, i, whole, at + (i - from));
    for (let k = whole; k < to; k++) {
      this.quad[this.quadLength] = bytes[k] as number;
      this.quadOffsets[this.quadLength] = at + (k - from);
      this.quadLength++;
    }
  }

  private decode(bytes: Buffer, from: number, to: number, at: number): void {
    for (let piece = from; piece < to && !this.error; piece += DECODE_SLICE) {
      this.decodeSlice(bytes, piece, Math.min(to, piece + DECODE_SLICE), at + (piece - from));
    }
  }

  private decodeSlice(bytes: Buffer, from: number, to: number, at: number): void {
    const text = bytes.toString('latin1', from, to);
    const decoded = Buffer.from(text, 'base64');
    // Node's decoder skips bytes outside the alphabets: a short result means there was one.
    if (decoded.length !== Math.floor(((to - from) * 3) / 4)) {
      const bad = Math.max(0, text.search(NOT_BASE64));
      this.fail(badBase64(this.label, text[bad] ?? '?', at + bad));
      return;
    }
    this.bytes += decoded.length;
    this.sink.write(decoded);
  }

  /** Decodes the carried characters (a whole quad, or the 2-3 left at the end). */
  private flushQuad(): void {
    const length = this.quadLength;
    this.quadLength = 0;
    const text = this.quad.toString('latin1', 0, length);
    const bad = text.search(NOT_BASE64);
    if (bad >= 0) {
      this.fail(badBase64(this.label, text[bad] as string, this.quadOffsets[bad] as number));
      return;
    }
    const decoded = Buffer.from(text, 'base64');
    this.bytes += decoded.length;
    this.sink.write(decoded);
  }

  /** Keeps the first error; carried characters come before whatever raised it, so they are checked first. */
  private fail(error: SkError): void {
    if (this.error) return;
    const text = this.quad.toString('latin1', 0, this.quadLength);
    const bad = text.search(NOT_BASE64);
    this.error = bad >= 0 ? badBase64(this.label, text[bad] as string, this.quadOffsets[bad] as number) : error;
  }

  finish(): SkError | null {
    if (this.backslashAt >= 0) this.fail(badBase64(this.label, '\\', this.backslashAt));
    const padding = Math.min(this.equalsRun, 2);
    // A payload that fails is judged on its raw bytes, as the attachment cache judges it.
    const counted = this.error ? this.characters + this.escapes : this.characters;
    if ((counted - padding) % 4 === 1) {
      return new SkError('bad-attachment', `${this.label}: data URL is not valid base64 (truncated payload)`);
    }
    if (this.error) return this.error;
    if (this.quadLength > 0) this.flushQuad();
    if (!this.error && this.equalsRun > 2) this.fail(badBase64(this.label, '=', this.equalsAt));
    return this.error;
  }
}

const SLASH_CHARACTER = Buffer.from('/');

/** A percent-encoded payload: kept (up to 64 MB, as the attachment cache allows) and decoded at its end. */
class PlainDecoder implements PayloadDecoder {
  private readonly pieces: Buffer[] = [];
  private length = 0;
  bytes = 0;

  constructor(
    private readonly sink: AttachmentSink,
    private readonly label: string,
  ) {}

  write(bytes: Buffer, from: number, to: number): void {
    this.length += to - from;
    // A copy: the chunk it came in is not kept alive for a few bytes of it.
    if (this.length <= MAX_PLAIN_DATA_URL) this.pieces.push(Buffer.from(bytes.subarray(from, to)));
  }

  finish(): SkError | null {
    if (this.length > MAX_PLAIN_DATA_URL) {
      return new SkError('too-big', `${this.label}: a percent-encoded data URL of ${this.length} bytes is over the ${MAX_PLAIN_DATA_URL}-byte limit`);
    }
    let text: string;
    try {
      text = JSON.parse(`"${Buffer.concat(this.pieces).toString('utf8')}"`) as string;
    } catch {
      return new SkError('bad-attachment', `${this.label}: data URL is not a valid JSON string`);
    } finally {
      this.pieces.length = 0;
    }
    const decoded = percentDecode(text);
    this.bytes = decoded.length;
    if (decoded.length > 0) this.sink.write(decoded);
    return null;
  }
}

/** What is known of the string being read, as far as data URLs are concerned. */
const enum StringKind {
  /** Fewer than 5 bytes seen: not yet known whether it starts with `data:`. */
  Unknown,
  /** Not a data URL: its bytes are skipped. */
  Plain,
  /** A data URL whose comma has not been seen within the header window yet. */
  Header,
  /** A data URL past its comma. */
  Payload,
  /** A data URL without a comma in its first 1024 bytes (part-scan: no payload). */
  NoComma,
}

/** A data URL string that has ended; the next non-blank byte says whether it was a key. */
interface EndedUrl {
  span: AttachmentSpan;
  decoder: PayloadDecoder | null;
  targeted: boolean;
  error: SkError | null;
}

export class AttachmentScanner {
  private readonly spans: AttachmentSpan[] = [];
  /** Absolute offset of the first byte of the chunk being read. */
  private offset = 0;
  private inString = false;
  /** Absolute offset of the current string's first content byte. */
  private stringStart = 0;
  /** Backslashes ending the current string's content in earlier chunks. */
  private backslashRun = 0;
  private kind = StringKind.Plain;
  /** The current string's first bytes (the header window of a data URL). */
  private readonly head = Buffer.alloc(HEADER_WINDOW);
  private headLength = 0;
  /** Index in `head` of the data URL's comma. */
  private commaAt = -1;
  private mime = '';
  private base64 = false;
  /** Last two content bytes of the current data URL (for its padding). */
  private lastByte = -1;
  private secondLastByte = -1;
  private targeted = false;
  private decoder: PayloadDecoder | null = null;
  private ended: EndedUrl | null = null;
  /** Whether `data:` occurs anywhere (part-scan reports malformed JSON only then). */
  private sawPrefix = false;
  private readonly prefixTail = Buffer.alloc(DATA_PREFIX.length - 1);
  private prefixTailLength = 0;
  private result: DecodedAttachment | null = null;

  constructor(
    private readonly partId: string,
    private readonly request?: DecodeRequest,
  ) {}

  /** The requested attachment, once it has been decoded and is known to be a value. */
  get decoded(): DecodedAttachment | null {
    return this.result;
  }

  write(chunk: Buffer): void {
    if (!this.sawPrefix) this.lookForPrefix(chunk);
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      if (this.inString) {
        // Where the string's own bytes begin in this chunk (0 when it began in an earlier one).
        const low = Math.max(0, this.stringStart - this.offset);
        const close = closingQuote(chunk, i, low, this.backslashRun);
        const to = close < 0 ? n : close;
        if (to > i && this.kind !== StringKind.Plain) this.content(chunk, i, to);
        if (close < 0) {
          this.backslashRun = trailingBackslashes(chunk, low, this.backslashRun);
          break;
        }
        this.inString = false;
        this.endString(this.offset + close);
        i = close + 1;
        continue;
      }
      if (this.ended) {
        while (i < n && isBlank(chunk[i])) i++;
        if (i === n) break;
        this.settle(chunk[i] === COLON);
      }
      const open = chunk.indexOf(QUOTE, i);
      if (open < 0) break;
      this.beginString(this.offset + open + 1);
      i = open + 1;
    }
    this.offset += n;
  }

  /** The value ended: every attachment, in document order. */
  end(): AttachmentSpan[] {
    if (this.inString) {
      if (this.sawPrefix) throw new SkError('bad-part', `part ${this.partId}: malformed JSON (unterminated string)`);
      return this.spans;
    }
    if (this.ended) this.settle(false);
    return this.spans;
  }

  private lookForPrefix(chunk: Buffer): void {
    const keep = this.prefixTail.length;
    if (chunk.indexOf(DATA_PREFIX) >= 0) {
      this.sawPrefix = true;
      return;
    }
    const joined = Buffer.concat([this.prefixTail.subarray(0, this.prefixTailLength), chunk.subarray(0, keep)]);
    if (joined.indexOf(DATA_PREFIX) >= 0) {
      this.sawPrefix = true;
      return;
    }
    const source = chunk.length >= keep ? chunk : Buffer.concat([this.prefixTail.subarray(0, this.prefixTailLength), chunk]);
    this.prefixTailLength = Math.min(keep, source.length);
    source.copy(this.prefixTail, 0, source.length - this.prefixTailLength);
  }


  private beginString(start: number): void {
    this.inString = true;
    this.stringStart = start;
    this.backslashRun = 0;
    this.kind = StringKind.Unknown;
    this.headLength = 0;
    this.commaAt = -1;
    this.lastByte = this.secondLastByte = -1;
    this.targeted = false;
    this.decoder = null;
  }

  /** Content bytes `chunk[from, to)` of a string that is or may be a data URL. */
  private content(chunk: Buffer, from: number, to: number): void {
    if (this.kind === StringKind.Payload) {
      this.payload(chunk, from, to);
      return;
    }
    if (this.kind === StringKind.NoComma) return;
    const before = this.headLength;
    const take = Math.min(to - from, HEADER_WINDOW - before);
    chunk.copy(this.head, before, from, from + take);
    this.headLength += take;
    if (this.kind === StringKind.Unknown) {
      if (this.headLength < DATA_PREFIX.length) return;
      if (this.head.compare(DATA_PREFIX, 0, DATA_PREFIX.length, 0, DATA_PREFIX.length) !== 0) {
        this.kind = StringKind.Plain;
        return;
      }
      this.kind = StringKind.Header;
      // Earlier strings are all settled by now: this one would be attachment number spans.length.
      this.targeted = this.request !== undefined && this.result === null && this.spans.length === this.request.index;
    }
    const comma = this.head.subarray(0, this.headLength).indexOf(COMMA, before);
    if (comma < 0) {
      if (this.headLength === HEADER_WINDOW) this.kind = StringKind.NoComma;
      return;
    }
    this.commaAt = comma;
    const header = this.head.toString('latin1', DATA_PREFIX.length, comma);
    const params = header.split(';');
    this.base64 = params.slice(1).some((p) => p.trim().toLowerCase() === 'base64');
    this.mime = (params[0] ?? '').trim().toLowerCase() || 'text/plain';
    this.kind = StringKind.Payload;
    if (this.targeted && this.request) {
      this.decoder = this.base64
        ? new Base64Decoder(this.request.sink, this.request.label)
        : new PlainDecoder(this.request.sink, this.request.label);
    }
    const payloadFrom = from + (comma - before) + 1;
    if (payloadFrom < to) this.payload(chunk, payloadFrom, to);
  }

  private payload(chunk: Buffer, from: number, to: number): void {
    if (to - from >= 2) {
      this.secondLastByte = chunk[to - 2] as number;
      this.lastByte = chunk[to - 1] as number;
    } else {
      this.secondLastByte = this.lastByte;
      this.lastByte = chunk[from] as number;
    }
    this.decoder?.write(chunk, from, to, this.offset + from - this.payloadStart());
  }

  private payloadStart(): number {
    return this.stringStart + this.commaAt + 1;
  }

  private endString(end: number): void {
    if (this.kind === StringKind.Unknown || this.kind === StringKind.Plain) return;
    const start = this.stringStart;
    let span: AttachmentSpan;
    if (this.kind === StringKind.Payload) {
      const payloadStart = this.payloadStart();
      const length = end - payloadStart;
      let decodedBytes = length;
      if (this.base64) {
        let padding = 0;
        if (length > 0 && this.lastByte === EQUALS) padding++;
        if (length > 1 && this.secondLastByte === EQUALS) padding++;
        decodedBytes = length % 4 === 0 ? (length / 4) * 3 - padding : Math.floor((length * 3) / 4);
      }
      span = { index: -1, start, end, payloadStart, mime: this.mime, base64: this.base64, decodedBytes };
    } else {
      span = { index: -1, start, end, payloadStart: end, mime: 'application/octet-stream', base64: false, decodedBytes: 0 };
    }
    const error = this.decoder ? this.decoder.finish() : null;
    this.ended = { span, decoder: this.decoder, targeted: this.targeted, error };
    this.decoder = null;
  }

  /** The ended data URL was a key (followed by `:`) or a value. */
  private settle(isKey: boolean): void {
    const ended = this.ended as EndedUrl;
    this.ended = null;
    if (isKey) {
      if (ended.targeted) this.request?.sink.discard();
      return;
    }
    ended.span.index = this.spans.length;
    this.spans.push(ended.span);
    if (!ended.targeted) return;
    if (ended.error) throw ended.error;
    this.result = { span: ended.span, bytes: ended.decoder?.bytes ?? 0 };
  }
}

/** `findAttachments` over a value given in chunks. */
export function findAttachmentsInChunks(chunks: Iterable<Buffer>, partId: string): AttachmentSpan[] {
  const scanner = new AttachmentScanner(partId);
  for (const chunk of chunks) scanner.write(chunk);
  return scanner.end();
}

/**
 * Decodes attachment `request.index` of a value given in chunks into `request.sink`, and stops
 * reading as soon as it is done (the rest of the value is not read). Throws SkError('not-found')
 * when the value has fewer attachments, 'bad-attachment' or 'too-big' for a payload the
 * attachment cache would refuse, 'bad-part' for malformed JSON before it.
 */
export function decodeAttachmentFromChunks(chunks: Iterable<Buffer>, partId: string, request: DecodeRequest): DecodedAttachment {
  const scanner = new AttachmentScanner(partId, request);
  for (const chunk of chunks) {
    scanner.write(chunk);
    if (scanner.decoded) return scanner.decoded; // leaving the loop closes the iterator (and its statement)
  }
  const spans = scanner.end();
  if (scanner.decoded) return scanner.decoded;
  throw new SkError('not-found', `part ${partId} has ${spans.length} attachment${spans.length === 1 ? '' : 's'}, no number ${request.index}`);
}
