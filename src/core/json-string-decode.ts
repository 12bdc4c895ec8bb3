/**
 * The bytes a JSON string stands for, from its escaped text arriving in chunks: an archived value
 * of hundreds of megabytes that is not JSON (kept as a JSON string) goes back without ever being
 * one JS string. Each piece is cut where no escape, surrogate pair or UTF-8 sequence is split and
 * decoded by JSON.parse, so the result is exactly what parsing the whole string would give.
 */
import { SkError } from './errors.js';
import { BACKSLASH, QUOTE } from './json-string-end.js';

const LOW_U = 0x75;

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

/** Whether the 4 hex digits at `at` name a UTF-16 high surrogate (the first half of a pair). */
function isHighSurrogate(bytes: Buffer, at: number): boolean {
  const code = Number.parseInt(bytes.toString('latin1', at, at + 4), 16);
  return code >= 0xd800 && code <= 0xdbff;
}

export class JsonStringDecoder {
  private carry: Buffer = Buffer.alloc(0);
  private started = false;

  /**
   * `quoted`: the input is the whole JSON string, its quotes included (as a scanner hands out a
   * member's value); otherwise only the text between them.
   */
  constructor(
    private readonly where: string,
    private readonly quoted = false,
  ) {}

  /** Takes the next bytes of the string; returns the decoded bytes that are complete so far. */
  write(chunk: Buffer): Buffer {
    let bytes = this.carry.length > 0 ? Buffer.concat([this.carry, chunk]) : chunk;
    if (this.quoted && !this.started && bytes.length > 0) {
      if (bytes[0] !== QUOTE) throw new SkError('archive', `${this.where}: a string value that does not start with a quote`);
      bytes = bytes.subarray(1);
      this.started = true;
    }
    // In a quoted string the last byte may be the closing quote: it waits for end().
    const cut = this.safeCut(bytes, this.quoted ? bytes.length - 1 : bytes.length);
    this.carry = Buffer.from(bytes.subarray(cut));
    return this.decode(bytes.subarray(0, cut));
  }

  /** The rest of the string; throws when it ends inside an escape (or, quoted, without its quote). */
  end(): Buffer {
    let rest = this.carry;
    this.carry = Buffer.alloc(0);
    if (this.quoted) {
      if (!this.started || rest[rest.length - 1] !== QUOTE) throw new SkError('archive', `${this.where}: a string value without its closing quote`);
      rest = rest.subarray(0, rest.length - 1);
    }
    return this.decode(rest);
  }

  /** The largest length up to `limit` that ends on a whole escape, surrogate pair and UTF-8 sequence. */
  private safeCut(bytes: Buffer, limit: number): number {
    let cut = Math.max(0, Math.min(limit, wholeUtf8Length(bytes.subarray(0, Math.max(0, limit)))));
    for (let at = bytes.indexOf(BACKSLASH); at >= 0 && at < cut; ) {
      const unicode = bytes[at + 1] === LOW_U;
      let length = unicode ? 6 : 2;
      // A high surrogate's escape and the low one after it must be decoded together.
      if (unicode && at + 6 <= cut && isHighSurrogate(bytes, at + 2)) length = 12;
      if (at + length > cut) return at;
      at = bytes.indexOf(BACKSLASH, at + (unicode ? 6 : 2));
    }
    return cut;
  }

  private decode(body: Buffer): Buffer {
    if (body.length === 0) return Buffer.alloc(0);
    let text: unknown;
    try {
      text = JSON.parse(`"${body.toString('utf8')}"`);
    } catch (error) {
      throw new SkError('archive', `${this.where}: a string value that does not parse (${(error as Error).message})`);
    }
    return Buffer.from(text as string, 'utf8');
  }
}
