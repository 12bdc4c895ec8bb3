/**
 * The chunked scanner against the whole-buffer one: for every case, every chunk size from 1 byte
 * up (so a boundary falls at every awkward place: inside `data:`, an escape, a backslash run, a
 * quote, the header, a base64 quad, the padding, the blanks before a colon), the spans equal
 * `findAttachments`, and each attachment decodes to exactly what the attachment cache writes
 * (or fails with the same message).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  AttachmentScanner,
  decodeAttachmentFromChunks,
  findAttachmentsInChunks,
  percentDecode,
  type AttachmentSink,
} from '../../src/core/attachment-stream.js';
import { findAttachments } from '../../src/core/part-scan.js';
import { AttachmentCache } from '../../src/store/attachment-cache.js';
import { chunkSizes, chunksOf, outcome } from '../helpers/chunks.js';

const dir = mkdtempSync(join(tmpdir(), 'sk-attachment-stream-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cache = new AttachmentCache(join(dir, 'cache'));

/** A sink that keeps what it is given, as the tests' stand-in for a file. */
function memorySink(): AttachmentSink & { bytes(): Buffer; discards: number } {
  let pieces: Buffer[] = [];
  const sink = {
    discards: 0,
    write: (bytes: Buffer): void => {
      pieces.push(Buffer.from(bytes));
    },
    discard: (): void => {
      pieces = [];
      sink.discards++;
    },
    bytes: (): Buffer => Buffer.concat(pieces),
  };
  return sink;
}

type Outcome = { ok: true; sha: string; bytes: Buffer } | { ok: false; message: string };

/** What the attachment cache writes for attachment `index` of `buf` (the reference). */
let serial = 0;
function expectedDecode(buf: Buffer, index: number): Outcome {
  const span = findAttachments(buf, 'prt_t')[index];
  if (!span) throw new Error('no such span');
  const target = join(dir, `ref-${serial++}`);
  try {
    const file = cache.writeSpan(buf, span, `prt_t.${index}`, `part prt_t attachment ${index}`, target);
    const bytes = readFileSync(target);
    rmSync(target);
    return { ok: true, sha: file.sha256, bytes };
  } catch (error) {
    return { ok: false, message: (error as Error).message };
  }
}

function streamedDecode(buf: Buffer, index: number, size: number): Outcome {
  const sink = memorySink();
  try {
    const result = decodeAttachmentFromChunks(chunksOf(buf, size), 'prt_t', { index, sink, label: `part prt_t attachment ${index}` });
    const bytes = sink.bytes();
    expect(result.bytes).toBe(bytes.length);
    expect(result.span).toEqual(findAttachments(buf, 'prt_t')[index]);
    return { ok: true, sha: '', bytes };
  } catch (error) {
    return { ok: false, message: (error as Error).message };
  }
}

/** Checks spans and every decode at every chunk size. */
function checkCase(text: string | Buffer): void {
  const buf = typeof text === 'string' ? Buffer.from(text) : text;
  const expectedSpans = outcome(() => findAttachments(buf, 'prt_t'));
  const count = Array.isArray(expectedSpans) ? expectedSpans.length : 0;
  const expectedDecodes = Array.from({ length: count }, (_, i) => expectedDecode(buf, i));
  for (const size of chunkSizes(buf.length)) {
    expect(outcome(() => findAttachmentsInChunks(chunksOf(buf, size), 'prt_t')), `spans, chunk ${size}`).toEqual(expectedSpans);
    for (let i = 0; i < count; i++) {
      const want = expectedDecodes[i] as Outcome;
      const got = streamedDecode(buf, i, size);
      if (want.ok && got.ok) expect(got.bytes.equals(want.bytes), `decode ${i}, chunk ${size}`).toBe(true);
      else expect(got, `decode ${i}, chunk ${size}`).toEqual(want);
    }
  }
}

const b64 = (bytes: Buffer): string => bytes.toString('base64');
const bytesOf = (n: number, seed = 1): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 37 + seed * 101) & 0xff));

describe('findAttachmentsInChunks equals findAttachments, decodes equal the attachment cache', () => {
  it('a file part', () => {
    checkCase(JSON.stringify({ type: 'file', mime: 'application/pdf', filename: 'a.pdf', url: `data:application/pdf;base64,${b64(bytesOf(301))}` }));
  });

  it('a read tool part with several attachments, padding 0, 1 and 2', () => {
    checkCase(
      JSON.stringify({
        type: 'tool',
        state: {
          status: 'completed',
          output: 'ok',
          attachments: [30, 31, 32].map((n, i) => ({ type: 'file', mime: 'image/png', url: `data:image/png;base64,${b64(bytesOf(n, i))}` })),
        },
      }),
    );
  });

  it('keys that look like data URLs, blanks before colons and commas', () => {
    checkCase(`{"data:text/plain;base64,QUJD" \n\t : "data:text/plain;base64,REVG"  ,\r\n "k":"data:;base64,R0hJ" }`);
    checkCase(`{"a":"data:x;base64,QUJD"   \n}`);
    checkCase(`{"data:a;base64,QUJD"`); // key-like string at the very end: a value (nothing follows)
    checkCase(`["data:a;base64,QUJD"  :  "data:b;base64,REVG"]`);
  });

  it('escaped quotes and backslash runs around "data:"', () => {
    checkCase(JSON.stringify({ text: 'he wrote "data:x" here \\"data:y', t2: 'a\\\\', u: 'data:text/plain;base64,aGVsbG8=' }));
    checkCase(`{"t":"\\\\\\"data:not,QUJD\\\\","u":"data:z;base64,QUJD"}`);
    checkCase(`{"t":"\\\\\\\\","u":"data:z;base64,QUJDRA=="}`);
  });

  it('headers: empty mime, parameters, case, blanks, no comma, comma past 1024 bytes', () => {
    checkCase(`{"u":"data:;base64,QUJD"}`);
    checkCase(`{"u":"data:Image/PNG ; charset=x ; BASE64 ,QUJD"}`);
    checkCase(`{"u":"data:image/png;name=a.png;base64,QUJD"}`);
    checkCase(`{"u":"data:image/png"}`);
    checkCase(`{"u":"data:"}`);
    checkCase(`{"u":"data"}`);
    checkCase(`{"u":"data:${'x'.repeat(1030)},QUJD","v":"data:a;base64,QUJD"}`);
    checkCase(`{"u":"data:${'x'.repeat(1018)};base64,QUJD"}`); // comma at byte 1026 of the URL: past the window
    checkCase(`{"u":"data:${'x'.repeat(1010)};base64,QUJD"}`); // comma at 1018: inside
  });

  it('payload shapes: empty, unpadded, truncated, bad characters, misplaced and extra padding', () => {
    for (const payload of ['', 'QQ', 'QUI', 'QUJD', 'QUJDR', 'QUJDRA', 'QUJDRA=', 'QUJDRA==', 'QUJDRA===', 'QUJDRA====',
      'QU=JD', 'Q===', '=', '==', '===', 'QUJ$RA==', 'QU JD', 'QUJD\\n', 'Q$JDR', '$', 'QUJD-_==', 'QUJDR=A=',
      'QUJD\u00e9QUJD', 'Q$=BC', 'Q$\\/QQ', 'Q$\\nQQ', 'QU$', 'QUJ$', 'QU=\\/A', 'QU=\\nA', 'QUJD\\\\==', 'AAAA'.repeat(40) + '$', 'AAAA'.repeat(40) + 'A']) {
      checkCase(`{"url":"data:application/octet-stream;base64,${payload}"}`);
    }
  });

  it('percent-encoded data URLs', () => {
    checkCase(`{"u":"data:text/plain,hello%20world%ZZ%4"}`);
    checkCase(`{"u":"data:text/plain;charset=utf-8,caf%C3%A9 \\u00e9 \\"q\\""}`);
    checkCase(`{"u":"data:text/plain,"}`);
    checkCase(`{"u":"data:text/plain,bad \\x escape"}`);
  });

  it('malformed JSON: unterminated strings throw only where part-scan throws', () => {
    checkCase(`{"u":"data:a;base64,QUJD`);
    checkCase(`{"a":"b","c":"d`);
    checkCase(`{"a":"data:`);
    checkCase(`{"a":"dat`);
    checkCase(`{"a":"x"} data:`);
    checkCase(`{"a":"x\\"}`);
  });

  it('other UTF-8 and values that are not objects', () => {
    checkCase(`"data:a;base64,QUJD"`);
    checkCase(`{"t":"héllo ☃ 😀","u":"data:image/png;base64,${b64(bytesOf(40))}"}`);
    checkCase(``);
    checkCase(`   `);
  });

  it('random documents (seeded): strings with escapes, keys, blanks and data URLs mixed', () => {
    let state = 12345;
    const random = (n: number): number => {
      state = (state * 1103515245 + 12345) & 0x7fffffff;
      return state % n;
    };
    const pieces = ['\\"', '\\\\', 'data:', 'x', ',', ':', ' ', '=', 'é', '\\/'];
    const str = (): string => {
      const kind = random(4);
      if (kind === 0) return `"data:${['image/png', '', 'a;b'][random(3)]}${random(2) ? ';base64' : ''},${b64(bytesOf(random(20), random(9)))}${'='.repeat(random(2))}"`;
      return `"${Array.from({ length: random(6) }, () => pieces[random(pieces.length)]).join('')}"`;
    };
    const blank = (): string => [' ', '', '\n', '\t '][random(4)] as string;
    for (let doc = 0; doc < 60; doc++) {
      const members = Array.from({ length: 1 + random(5) }, () => `${blank()}${str()}${blank()}:${blank()}${str()}${blank()}`);
      checkCase(`{${members.join(',')}}`);
    }
  });
});

describe('decoding', () => {
  it('reads \\/ escapes as slashes (JSON allows them; the whole-buffer path refuses them)', () => {
    const payload = Buffer.from([0xff, 0xff, 0xfe, 0xfb, 0xff, 0xbf, 0x00, 0x01]); // base64 with several '/'
    const encoded = b64(payload);
    expect(encoded).toContain('/');
    const json = Buffer.from(`{"url":"data:application/octet-stream;base64,${encoded.replaceAll('/', '\\/')}"}`);
    for (const size of chunkSizes(json.length)) {
      const sink = memorySink();
      const result = decodeAttachmentFromChunks(chunksOf(json, size), 'prt_t', { index: 0, sink, label: 'x' });
      expect(sink.bytes().equals(payload), `chunk ${size}`).toBe(true);
      expect(result.bytes).toBe(payload.length);
    }
  });

  it('discards what it wrote for a key that looked like the requested attachment', () => {
    const json = Buffer.from(`{"data:a;base64,QUJD" : "data:b;base64,REVG"}`);
    for (const size of chunkSizes(json.length)) {
      const sink = memorySink();
      const result = decodeAttachmentFromChunks(chunksOf(json, size), 'prt_t', { index: 0, sink, label: 'x' });
      expect(sink.bytes().toString()).toBe('DEF');
      expect(sink.discards).toBe(1);
      expect(result.span.mime).toBe('b');
    }
  });

  it('says how many attachments there are when the number asked for is past them', () => {
    const json = Buffer.from(`{"u":"data:a;base64,QUJD"}`);
    expect(() => decodeAttachmentFromChunks(chunksOf(json, 3), 'prt_t', { index: 1, sink: memorySink(), label: 'x' })).toThrow(
      'part prt_t has 1 attachment, no number 1',
    );
  });

  it('stops reading once the attachment is decoded', () => {
    const json = Buffer.from(`{"u":"data:a;base64,QUJD","rest":"${'x'.repeat(1000)}`); // unterminated after it
    let read = 0;
    function* counted(): Generator<Buffer> {
      for (const chunk of chunksOf(json, 10)) {
        read += chunk.length;
        yield chunk;
      }
    }
    const sink = memorySink();
    decodeAttachmentFromChunks(counted(), 'prt_t', { index: 0, sink, label: 'x' });
    expect(sink.bytes().toString()).toBe('ABC');
    expect(read).toBeLessThan(60);
  });

  it('holds no chunk: a 40 MB payload in 1 MB chunks keeps only a few bytes between writes', () => {
    const decoded = Buffer.alloc(30 * 1024 * 1024, 7);
    const json = Buffer.concat([Buffer.from('{"url":"data:application/pdf;base64,'), Buffer.from(b64(decoded)), Buffer.from('"}')]);
    let written = 0;
    const scanner = new AttachmentScanner('prt_t', {
      index: 0,
      label: 'x',
      sink: { write: (bytes) => (written += bytes.length), discard: () => (written = 0) },
    });
    for (const chunk of chunksOf(json, 1024 * 1024)) scanner.write(chunk);
    expect(scanner.end()).toEqual(findAttachments(json, 'prt_t'));
    expect(written).toBe(decoded.length);
    expect(scanner.decoded?.bytes).toBe(decoded.length);
  });

  it('percentDecode keeps a lone % and encodes other characters as UTF-8', () => {
    expect(percentDecode('a%20b%zz%4é%C3%A9').equals(Buffer.from('a b%zz%4éé'))).toBe(true);
  });
});
