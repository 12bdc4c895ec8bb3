/**
 * `scanPartData` for a value that arrives in chunks, or in ranges with the attachment payloads
 * left out: what a page needs of a large part (its JSON with data URLs cut out and long strings
 * previewed) without the whole value ever being in memory.
 *
 * The rules are part-scan's, byte for byte (strings found by their quotes, a string is a key when
 * the next non-blank byte is `:`, data URLs and value strings over `maxInlineString` cut), and the
 * result is assembled by the same `assembleScan`, so a page is the same whichever path built it.
 * Memory: the bytes kept (what the page will hold anyway), the string being read while it is
 * short enough to be kept, and a few header bytes of a data URL.
 *
 * One difference, for input no writer produces: part-scan keeps a key of any length whole; here a
 * key longer than `maxInlineString` has been dropped by the time its colon shows it was a key,
 * and the part is refused as malformed ('bad-part', shown as unreadable in its page).
 */
import { SkError } from './errors.js';
import { assembleScan, scanPartData, type AttachmentSpan, type PartCut, type ScannedPart, type ScanOptions } from './part-scan.js';
import { closingQuote, QUOTE, trailingBackslashes } from './json-string-end.js';

const COLON = 0x3a;
const COMMA = 0x2c;
const EQUALS = 0x3d;
const DATA_PREFIX = Buffer.from('data:');
/** part-scan reads a data URL's header from its first this many bytes. */
const HEADER_WINDOW = 1024;

function isBlank(byte: number | undefined): boolean {
  return byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
}

export interface ReduceOptions extends ScanOptions {
  /** Refuse ('too-big') a part whose kept bytes would pass this; default 64 MiB. */
  maxKeptBytes?: number;
}

/** A string that has ended; the next non-blank byte says whether it was a key. */
interface EndedString {
  /** Its bytes with both quotes, while it was short enough to keep; null once dropped. */
  bytes: Buffer | null;
  cut: PartCut | null;
}

export class PartReducer {
  private readonly partId: string;
  private readonly maxInlineString: number;
  private readonly previewBytes: number;
  private readonly maxKeptBytes: number;
  private readonly pieces: Buffer[] = [];
  private readonly cuts: PartCut[] = [];
  /** Kept bytes since the last cut, as copies (a chunk is never kept alive for a few bytes of it). */
  private current: Buffer[] = [];
  private kept = 0;
  private attachments = 0;
  /** Absolute offset of the next byte expected. */
  private offset = 0;
  private inString = false;
  private stringStart = 0;
  /** Content bytes of the current string so far (gaps included). */
  private stringLength = 0;
  /** The current string's bytes (opening quote first) while it may still be kept whole. */
  private stringBytes: Buffer[] | null = null;
  private backslashRun = 0;
  /** The string's first bytes: its preview and, for a data URL, the header window. */
  private readonly head: Buffer;
  private headLength = 0;
  private dataUrl: boolean | null = null;
  private commaAt = -1;
  private lastByte = -1;
  private secondLastByte = -1;
  private ended: EndedString | null = null;
  /** Blanks after an ended string, kept once it is settled. */
  private blanks: Buffer[] = [];
  /** Every byte while the value is no longer than the inline limit: such a value is scanned whole. */
  private small: Buffer[] | null = [];

  constructor(options: ReduceOptions) {
    this.partId = options.partId;
    this.maxInlineString = options.maxInlineString;
    this.previewBytes = options.previewBytes ?? 4096;
    this.maxKeptBytes = options.maxKeptBytes ?? 64 * 1024 * 1024;
    this.head = Buffer.alloc(Math.max(HEADER_WINDOW, this.previewBytes));
  }

  /**
   * The next bytes of the value, starting at absolute offset `at` (default: right after the last
   * ones). A gap is allowed only inside a data URL's payload, past its comma: the bytes left out
   * are counted, not read, so the last two payload bytes (its padding) must be given.
   */
  write(chunk: Buffer, at: number = this.offset): void {
    if (at !== this.offset) this.skip(at);
    const n = chunk.length;
    if (this.small) this.small = this.offset + n <= this.maxInlineString ? [...this.small, Buffer.from(chunk)] : null;
    let i = 0;
    while (i < n) {
      if (this.inString) {
        // Where the string's own bytes begin in this chunk (0 when it began in an earlier one).
        const low = Math.max(0, this.stringStart - this.offset);
        const close = closingQuote(chunk, i, low, this.backslashRun);
        const to = close < 0 ? n : close;
        if (to > i) this.content(chunk, i, to);
        if (close < 0) {
          this.backslashRun = trailingBackslashes(chunk, low, this.backslashRun);
          break;
        }
        this.endString();
        i = close + 1;
        continue;
      }
      if (this.ended) {
        const from = i;
        while (i < n && isBlank(chunk[i])) i++;
        if (i > from) this.blanks.push(Buffer.from(chunk.subarray(from, i)));
        if (i === n) break;
        this.settle(chunk[i] === COLON);
      }
      const open = chunk.indexOf(QUOTE, i);
      if (open < 0) {
        this.keep(chunk, i, n);
        break;
      }
      this.keep(chunk, i, open);
      this.beginString(this.offset + open + 1);
      i = open + 1;
    }
    this.offset += n;
  }

  /** The value ended: the page's view of it. */
  end(): ScannedPart {
    // As short as a string part-scan keeps whole: its quick path (errors too) is taken as it is.
    if (this.small) return scanPartData(Buffer.concat(this.small), { partId: this.partId, maxInlineString: this.maxInlineString, previewBytes: this.previewBytes });
    if (this.inString) throw new SkError('bad-part', `part ${this.partId}: malformed JSON (unterminated string)`);
    if (this.ended) this.settle(false);
    this.pieces.push(Buffer.concat(this.current));
    this.current = [];
    return assembleScan({ pieces: this.pieces, cuts: this.cuts }, this.partId);
  }

  /** The attachments found so far, in document order (those whose key-or-value question is settled). */
  get spans(): AttachmentSpan[] {
    return this.cuts.flatMap((cut) => (cut.kind === 'attachment' ? [cut.span] : []));
  }

  private skip(at: number): void {
    if (at < this.offset || !this.inString || this.dataUrl !== true || this.commaAt < 0) {
      throw new SkError('internal', `part ${this.partId}: bytes ${this.offset}-${at} left out where they are needed (only a data URL's payload may be)`);
    }
    this.stringLength += at - this.offset;
    this.small = null;
    // What was left out is base64 or percent-encoded payload: it is not kept and ends no string.
    this.stringBytes = null;
    this.backslashRun = 0;
    this.lastByte = this.secondLastByte = -1;
    this.offset = at;
  }

  private keep(chunk: Buffer, from: number, to: number): void {
    if (to <= from) return;
    this.kept += to - from;
    if (this.kept > this.maxKeptBytes) {
      throw new SkError('too-big', `part ${this.partId}: more than ${this.maxKeptBytes} bytes would stay in the page once attachments and long strings are cut`);
    }
    this.current.push(Buffer.from(chunk.subarray(from, to)));
  }


  private beginString(start: number): void {
    this.inString = true;
    this.stringStart = start;
    this.stringLength = 0;
    this.stringBytes = [Buffer.from('"')];
    this.backslashRun = 0;
    this.headLength = 0;
    this.dataUrl = null;
    this.commaAt = -1;
    this.lastByte = this.secondLastByte = -1;
  }

  /** Content bytes `chunk[from, to)` of the current string. */
  private content(chunk: Buffer, from: number, to: number): void {
    const length = to - from;
    this.stringLength += length;
    if (this.headLength < this.head.length) {
      const take = Math.min(length, this.head.length - this.headLength);
      chunk.copy(this.head, this.headLength, from, from + take);
      this.headLength += take;
    }
    if (this.dataUrl === null && this.headLength >= DATA_PREFIX.length) {
      this.dataUrl = this.head.compare(DATA_PREFIX, 0, DATA_PREFIX.length, 0, DATA_PREFIX.length) === 0;
    }
    if (this.dataUrl === true && this.commaAt < 0) {
      const comma = this.head.subarray(0, Math.min(this.headLength, HEADER_WINDOW)).indexOf(COMMA);
      if (comma >= 0) this.commaAt = comma;
    }
    if (length >= 2) {
      this.secondLastByte = chunk[to - 2] as number;
      this.lastByte = chunk[to - 1] as number;
    } else {
      this.secondLastByte = this.lastByte;
      this.lastByte = chunk[from] as number;
    }
    if (this.stringBytes) {
      // A string longer than the inline limit is cut if it is a value; its bytes are not kept.
      if (this.stringLength > this.maxInlineString) this.stringBytes = null;
      else this.stringBytes.push(Buffer.from(chunk.subarray(from, to)));
    }
  }

  /** The current string closed; what it becomes waits for the next non-blank byte. */
  private endString(): void {
    this.inString = false;
    const bytes = this.stringBytes ? Buffer.concat([...this.stringBytes, Buffer.from('"')]) : null;
    let cut: PartCut | null = null;
    if (this.dataUrl === true) {
      cut = { kind: 'attachment', span: this.dataUrlSpan() };
    } else if (this.stringLength > this.maxInlineString) {
      cut = { kind: 'text', preview: this.preview(), length: this.stringLength };
    }
    this.ended = { bytes, cut };
    this.stringBytes = null;
  }

  /** The span part-scan's describeDataUrl gives this URL (index set when it is known to be a value). */
  private dataUrlSpan(): AttachmentSpan {
    const start = this.stringStart;
    const end = this.stringStart + this.stringLength;
    if (this.commaAt < 0) {
      return { index: -1, start, end, payloadStart: end, mime: 'application/octet-stream', base64: false, decodedBytes: 0 };
    }
    const header = this.head.toString('latin1', DATA_PREFIX.length, this.commaAt);
    const params = header.split(';');
    const base64 = params.slice(1).some((p) => p.trim().toLowerCase() === 'base64');
    const mime = (params[0] ?? '').trim().toLowerCase() || 'text/plain';
    const payloadStart = start + this.commaAt + 1;
    const length = end - payloadStart;
    let decodedBytes = length;
    if (base64) {
      let padding = 0;
      if (length > 0 && this.lastByte === EQUALS) padding++;
      if (length > 1 && this.secondLastByte === EQUALS) padding++;
      decodedBytes = length % 4 === 0 ? (length / 4) * 3 - padding : Math.floor((length * 3) / 4);
    }
    return { index: -1, start, end, payloadStart, mime, base64, decodedBytes };
  }

  /** part-scan's previewOf: the first `previewBytes` bytes, decoded, never splitting an escape. */
  private preview(): string {
    let cut = Math.min(this.headLength, this.previewBytes);
    for (let attempt = 0; attempt < 8 && cut > 0; attempt++, cut--) {
      try {
        return JSON.parse(`"${this.head.toString('utf8', 0, cut)}"`) as string;
      } catch {
        // cut landed inside an escape sequence: step back a byte
      }
    }
    return '';
  }

  /** The ended string was a key (followed by `:`) or a value: keep it, or cut it. */
  private settle(isKey: boolean): void {
    const ended = this.ended as EndedString;
    this.ended = null;
    const cut = isKey ? null : ended.cut;
    if (cut) {
      if (cut.kind === 'attachment') cut.span.index = this.attachments++;
      this.pieces.push(Buffer.concat(this.current));
      this.current = [];
      this.cuts.push(cut);
    } else {
      if (!ended.bytes) throw new SkError('bad-part', `part ${this.partId}: malformed JSON (a key of more than ${this.maxInlineString} bytes)`);
      this.keep(ended.bytes, 0, ended.bytes.length);
    }
    for (const blank of this.blanks) this.keep(blank, 0, blank.length);
    this.blanks = [];
  }
}

/** `scanPartData` over a value given in chunks (or ranges, see `PartReducer.write`). */
export function reducePartChunks(chunks: Iterable<Buffer | { bytes: Buffer; at: number }>, options: ReduceOptions): ScannedPart {
  const reducer = new PartReducer(options);
  for (const chunk of chunks) {
    if (Buffer.isBuffer(chunk)) reducer.write(chunk);
    else reducer.write(chunk.bytes, chunk.at);
  }
  return reducer.end();
}
