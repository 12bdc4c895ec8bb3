/**
 * A streaming JSON scanner that hands out the raw bytes of chosen values.
 *
 * Archives hold parts of hundreds of megabytes and must be read back byte-exactly (a restored
 * row equals the archived one), so parsing into JS values is out. The scanner walks the bytes,
 * tracks the path (keys and indexes), and for every value the caller selects streams that value's
 * exact bytes out in chunks. Inside strings it jumps with native `indexOf`, so base64 payloads
 * cost little.
 */
import { SkError } from './errors.js';
import { BACKSLASH, QUOTE } from './json-string-end.js';

export type PathItem = string | number;

export interface JsonStreamHandler {
  /** Called when a value starts: return true to receive its raw bytes. */
  select(path: readonly PathItem[]): boolean;
  /** A piece of a selected value's raw bytes, in order. */
  chunk(path: readonly PathItem[], bytes: Buffer): void;
  /** The selected value ended. */
  end(path: readonly PathItem[]): void;
}

const enum Expect {
  Value,
  KeyOrClose,
  Key,
  Colon,
  CommaOrClose,
  /** Just after a `[` inside a selected value: a value or the end of the (empty) array. */
  ValueOrClose,
}

/** Kinds of the containers open inside a selected value (no path is kept there). */
const INNER_OBJECT = 0;
const INNER_ARRAY = 1;

interface Frame {
  kind: 'object' | 'array';
  key: PathItem;
  index: number;
}

const MAX_KEY_BYTES = 4096;

/** A byte a number, true, false or null may go on with (the literal's spelling is not checked here). */
function isLiteralByte(byte: number): boolean {
  return (byte >= 0x30 && byte <= 0x39) || (byte >= 0x61 && byte <= 0x7a) || (byte >= 0x41 && byte <= 0x5a) || byte === 0x2e || byte === 0x2b || byte === 0x2d;
}

/**
 * Index of the quote that ends a string whose bytes go on at `from` in `buf` (no escape pending at
 * `from`), or -1 when it goes on past the chunk. A quote closes it after an even run of
 * backslashes, counted back to `from`: one native search per quote, however many escapes lie between.
 */
function closingQuoteFrom(buf: Buffer, from: number): number {
  let at = buf.indexOf(QUOTE, from);
  while (at >= 0 && oddBackslashRun(buf, from, at)) at = buf.indexOf(QUOTE, at + 1);
  return at;
}

/** Whether the backslashes just before `end`, back to `low` at most, are an odd run (the byte at `end` escaped). */
function oddBackslashRun(buf: Buffer, low: number, end: number): boolean {
  let k = end - 1;
  while (k >= low && buf[k] === BACKSLASH) k--;
  return (end - 1 - k) % 2 === 1;
}

function isSpace(byte: number): boolean {
  return byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
}

export class JsonStreamScanner {
  private readonly stack: Frame[] = [];
  private readonly innerKinds: number[] = [];
  private expect: Expect = Expect.Value;
  /** Inside a string: whether the previous byte was an unconsumed backslash. */
  private inString = false;
  private escaped = false;
  private stringIsKey = false;
  private keyBytes: Buffer[] = [];
  private keyLength = 0;
  private pendingKey: string | null = null;
  /** A number/true/false/null in progress. */
  private inLiteral = false;
  /** Depth (stack length) at which the selected value started; -1 when none. */
  private captureDepth = -1;
  private capturePath: PathItem[] = [];
  private captureScalar = false;
  private offset = 0;
  private done = false;

  constructor(private readonly handler: JsonStreamHandler) {}

  private fail(what: string): never {
    throw new SkError('archive', `malformed JSON at byte ${this.offset}: ${what}`);
  }

  private path(): PathItem[] {
    const path: PathItem[] = [];
    for (let i = 1; i < this.stack.length; i++) path.push((this.stack[i] as Frame).key);
    return path;
  }

  /** Path of a value about to start inside the current container. */
  private childPath(): PathItem[] {
    const path = this.path();
    const top = this.stack[this.stack.length - 1];
    if (top) path.push(top.kind === 'array' ? top.index : (this.pendingKey as string));
    return path;
  }

  private valueStarts(isContainer: boolean): void {
    if (this.captureDepth >= 0) return;
    const path = this.childPath();
    if (this.handler.select(path)) {
      this.captureDepth = this.stack.length;
      this.capturePath = path;
      this.captureScalar = !isContainer;
    }
  }

  /** After any complete value: the container expects a comma or its end. */
  private valueEnded(): void {
    if (this.stack.length === 0) {
      this.done = true;
      this.expect = Expect.Value;
    } else {
      this.expect = Expect.CommaOrClose;
    }
  }

  private endCapture(buf: Buffer, from: number, to: number): void {
    if (to > from) this.handler.chunk(this.capturePath, buf.subarray(from, to));
    this.handler.end(this.capturePath);
    this.captureDepth = -1;
  }

  write(buf: Buffer): void {
    let i = 0;
    // Where the selected value's bytes in this chunk begin (or -1).
    let captureFrom = this.captureDepth >= 0 ? 0 : -1;
    const n = buf.length;
    while (i < n) {
      if (this.captureDepth >= 0 && !this.captureScalar) {
        i = this.scanSelected(buf, i, captureFrom);
        if (this.captureDepth < 0) captureFrom = -1;
        continue;
      }
      if (this.inString) {
        const q = this.stringEnd(buf, i);
        if (q < 0) {
          if (this.stringIsKey) this.keyPiece(buf, i, n);
          i = n;
          break;
        }
        if (this.stringIsKey) this.keyPiece(buf, i, q);
        this.inString = false;
        i = q + 1;
        if (this.stringIsKey) {
          this.pendingKey = this.decodeKey();
          this.expect = Expect.Colon;
        } else if (this.expect === Expect.Key || this.expect === Expect.KeyOrClose) {
          this.expect = Expect.Colon;
        } else {
          if (this.captureDepth >= 0 && this.captureScalar && this.captureDepth === this.stack.length) {
            this.endCapture(buf, captureFrom, i);
            captureFrom = -1;
          }
          this.valueEnded();
        }
        continue;
      }
      const byte = buf[i] as number;
      if (this.inLiteral) {
        if (isLiteralByte(byte)) {
          i++;
          while (i < n && isLiteralByte(buf[i] as number)) i++;
          continue;
        }
        this.inLiteral = false;
        if (this.captureDepth >= 0 && this.captureScalar && this.captureDepth === this.stack.length) {
          this.endCapture(buf, captureFrom, i);
          captureFrom = -1;
        }
        this.valueEnded();
        continue;
      }
      if (isSpace(byte)) {
        i++;
        continue;
      }
      if (this.done) this.fail('data after the end of the document');
      switch (this.expect) {
        case Expect.Value:
        case Expect.KeyOrClose:
          if (this.expect === Expect.KeyOrClose) {
            if (byte === 0x7d) {
              i = this.close(buf, i, 'object', captureFrom);
              if (this.captureDepth < 0) captureFrom = -1;
              continue;
            }
            if (byte !== QUOTE) this.fail('expected a key');
            this.startKey();
            i++;
            continue;
          }
          if (byte === 0x5d && this.stack[this.stack.length - 1]?.kind === 'array' && this.stack[this.stack.length - 1]?.index === 0) {
            i = this.close(buf, i, 'array', captureFrom);
            if (this.captureDepth < 0) captureFrom = -1;
            continue;
          }
          if (byte === 0x7b || byte === 0x5b) {
            const hadCapture = this.captureDepth >= 0;
            this.valueStarts(true);
            if (!hadCapture && this.captureDepth >= 0) captureFrom = i;
            const top = this.stack[this.stack.length - 1];
            const key: PathItem = top ? (top.kind === 'array' ? top.index : (this.pendingKey as string)) : 0;
            this.stack.push({ kind: byte === 0x7b ? 'object' : 'array', key, index: 0 });
            this.expect = byte === 0x7b ? Expect.KeyOrClose : Expect.Value;
            i++;
            continue;
          }
          if (byte === QUOTE || byte === 0x2d || (byte >= 0x30 && byte <= 0x39) || byte === 0x74 || byte === 0x66 || byte === 0x6e) {
            const hadCapture = this.captureDepth >= 0;
            this.valueStarts(false);
            if (!hadCapture && this.captureDepth >= 0) captureFrom = i;
            if (byte === QUOTE) {
              this.inString = true;
              this.stringIsKey = false;
            } else {
              this.inLiteral = true;
            }
            i++;
            continue;
          }
          this.fail(`unexpected ${JSON.stringify(String.fromCharCode(byte))}`);
          break;
        case Expect.Key:
          if (byte !== QUOTE) this.fail('expected a key');
          this.startKey();
          i++;
          continue;
        case Expect.Colon:
          if (byte !== 0x3a) this.fail('expected ":"');
          this.expect = Expect.Value;
          i++;
          continue;
        case Expect.CommaOrClose: {
          const top = this.stack[this.stack.length - 1] as Frame;
          if (byte === 0x2c) {
            if (top.kind === 'array') {
              top.index++;
              this.expect = Expect.Value;
            } else {
              this.expect = Expect.Key;
            }
            i++;
            continue;
          }
          if ((byte === 0x7d && top.kind === 'object') || (byte === 0x5d && top.kind === 'array')) {
            i = this.close(buf, i, top.kind, captureFrom);
            if (this.captureDepth < 0) captureFrom = -1;
            continue;
          }
          this.fail(`expected "," or the end of the ${top.kind}`);
        }
      }
    }
    if (this.captureDepth >= 0 && captureFrom >= 0 && n > captureFrom) {
      this.handler.chunk(this.capturePath, buf.subarray(captureFrom, n));
    }
    this.offset += n;
  }

  /**
   * Where the string this chunk resumes at `i` closes, or -1 when it goes on past the chunk (then
   * `escaped` says whether the chunk ended on an odd run of backslashes, escaping the next byte).
   */
  private stringEnd(buf: Buffer, i: number): number {
    let from = i;
    if (this.escaped) {
      this.escaped = false;
      from = i + 1;
    }
    const q = closingQuoteFrom(buf, from);
    if (q < 0) this.escaped = oddBackslashRun(buf, from, buf.length);
    return q;
  }

  /**
   * Inside a selected object or array, from `start`: the same checks as the loop in `write`, with
   * the state in locals and no path kept (nothing inside is asked for). Returns the index after the
   * selected value's end, having closed it, or the chunk's length when the value goes on.
   */
  private scanSelected(buf: Buffer, start: number, captureFrom: number): number {
    const n = buf.length;
    const inner = this.innerKinds;
    const own = this.stack[this.stack.length - 1] as Frame;
    let expect = this.expect;
    let inLiteral = this.inLiteral;
    let i = start;
    if (this.inString) {
      const q = this.stringEnd(buf, i);
      if (q < 0) return n;
      this.inString = false;
      i = q + 1;
      expect = expect === Expect.Key || expect === Expect.KeyOrClose ? Expect.Colon : Expect.CommaOrClose;
    }
    while (i < n) {
      const byte = buf[i] as number;
      if (inLiteral) {
        if (isLiteralByte(byte)) {
          i++;
          continue;
        }
        inLiteral = false;
        expect = Expect.CommaOrClose;
        continue;
      }
      if (isSpace(byte)) {
        i++;
        continue;
      }
      let string = false;
      switch (expect) {
        case Expect.KeyOrClose:
          if (byte === 0x7d) {
            if (inner.length === 0) return this.closeSelected(buf, i, 'object', captureFrom);
            inner.pop();
            expect = Expect.CommaOrClose;
            i++;
            continue;
          }
          if (byte !== QUOTE) this.fail('expected a key');
          string = true;
          break;
        case Expect.Key:
          if (byte !== QUOTE) this.fail('expected a key');
          string = true;
          break;
        case Expect.Colon:
          if (byte !== 0x3a) this.fail('expected ":"');
          expect = Expect.Value;
          i++;
          continue;
        case Expect.Value:
        case Expect.ValueOrClose:
          if (byte === 0x5d && (inner.length > 0 ? expect === Expect.ValueOrClose : own.kind === 'array' && own.index === 0)) {
            if (inner.length === 0) return this.closeSelected(buf, i, 'array', captureFrom);
            inner.pop();
            expect = Expect.CommaOrClose;
            i++;
            continue;
          }
          if (byte === 0x7b || byte === 0x5b) {
            inner.push(byte === 0x7b ? INNER_OBJECT : INNER_ARRAY);
            expect = byte === 0x7b ? Expect.KeyOrClose : Expect.ValueOrClose;
            i++;
            continue;
          }
          if (byte === QUOTE) {
            string = true;
            break;
          }
          if (byte === 0x2d || (byte >= 0x30 && byte <= 0x39) || byte === 0x74 || byte === 0x66 || byte === 0x6e) {
            inLiteral = true;
            i++;
            continue;
          }
          this.fail(`unexpected ${JSON.stringify(String.fromCharCode(byte))}`);
          break;
        case Expect.CommaOrClose: {
          const array = inner.length > 0 ? inner[inner.length - 1] === INNER_ARRAY : own.kind === 'array';
          if (byte === 0x2c) {
            if (inner.length === 0 && array) own.index++;
            expect = array ? Expect.Value : Expect.Key;
            i++;
            continue;
          }
          if (byte === (array ? 0x5d : 0x7d)) {
            if (inner.length === 0) return this.closeSelected(buf, i, array ? 'array' : 'object', captureFrom);
            inner.pop();
            i++;
            continue;
          }
          this.fail(`expected "," or the end of the ${array ? 'array' : 'object'}`);
        }
      }
      if (string) {
        const q = closingQuoteFrom(buf, i + 1);
        if (q < 0) {
          this.inString = true;
          this.stringIsKey = false;
          this.escaped = oddBackslashRun(buf, i + 1, n);
          this.expect = expect;
          this.inLiteral = false;
          return n;
        }
        expect = expect === Expect.Key || expect === Expect.KeyOrClose ? Expect.Colon : Expect.CommaOrClose;
        i = q + 1;
      }
    }
    this.expect = expect;
    this.inLiteral = inLiteral;
    return n;
  }

  /** The selected container ends at `i`: the state goes back to the loop in `write`. */
  private closeSelected(buf: Buffer, i: number, kind: Frame['kind'], captureFrom: number): number {
    this.inLiteral = false;
    return this.close(buf, i, kind, captureFrom);
  }

  /** Closes the container at `i`; returns the next index. */
  private close(buf: Buffer, i: number, kind: Frame['kind'], captureFrom: number): number {
    const top = this.stack.pop();
    if (!top || top.kind !== kind) this.fail(`unexpected end of ${kind}`);
    if (this.captureDepth >= 0 && this.captureDepth === this.stack.length) this.endCapture(buf, captureFrom, i + 1);
    this.valueEnded();
    return i + 1;
  }

  private startKey(): void {
    this.inString = true;
    // Inside a selected value no path is asked for, so its keys are skipped like strings, never decoded.
    this.stringIsKey = this.captureDepth < 0;
    this.keyBytes = [];
    this.keyLength = 0;
  }

  private keyPiece(buf: Buffer, from: number, to: number): void {
    if (to <= from) return;
    this.keyLength += to - from;
    if (this.keyLength > MAX_KEY_BYTES) this.fail('a key longer than 4096 bytes');
    this.keyBytes.push(Buffer.from(buf.subarray(from, to)));
  }

  private decodeKey(): string {
    const raw = this.keyBytes.length === 1 ? (this.keyBytes[0] as Buffer) : Buffer.concat(this.keyBytes);
    // Most keys have no escapes: their bytes are their text.
    if (raw.indexOf(BACKSLASH) < 0) return raw.toString('utf8');
    try {
      return JSON.parse(`"${raw.toString('utf8')}"`) as string;
    } catch {
      return this.fail('a malformed key');
    }
  }

  /** Call after the last chunk: the document must be complete. */
  finish(): void {
    if (this.inLiteral && this.stack.length === 0) {
      this.inLiteral = false;
      if (this.captureDepth >= 0) {
        this.handler.end(this.capturePath);
        this.captureDepth = -1;
      }
      this.done = true;
    }
    if (!this.done) this.fail('the document ends early (truncated?)');
  }
}
