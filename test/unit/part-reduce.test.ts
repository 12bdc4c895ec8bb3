/**
 * The chunked reducer against the whole-buffer scan: for every case and every chunk size from 1
 * byte up (a boundary inside `data:`, an escape, a backslash run, the header, the padding, the
 * blanks before a colon, a preview's last character), the page value, the attachments and the
 * cut count equal `scanPartData`'s, errors included; and reading only the ranges around each
 * attachment's payload (what the part index allows) gives the same again.
 */
import { describe, expect, it } from 'vitest';
import { PartReducer, reducePartChunks } from '../../src/core/part-reduce.js';
import { findAttachments, scanPartData, type ScanOptions } from '../../src/core/part-scan.js';
import { chunkSizes, chunksOf, outcome } from '../helpers/chunks.js';

/** The ranges a reader with the attachments' spans reads: all but each payload's middle. */
function* rangesAround(buf: Buffer, size: number): Generator<{ bytes: Buffer; at: number }> {
  let from = 0;
  for (const span of findAttachments(buf, 'prt_r')) {
    // The payload's last two bytes carry its padding: they are read, the rest is left out.
    const skipTo = Math.max(span.payloadStart, span.end - 2);
    for (let at = from; at < span.payloadStart; at += size) yield { bytes: Buffer.from(buf.subarray(at, Math.min(span.payloadStart, at + size))), at };
    from = skipTo;
  }
  for (let at = from; at < buf.length; at += size) yield { bytes: Buffer.from(buf.subarray(at, Math.min(buf.length, at + size))), at };
}

function checkCase(text: string | Buffer, limits: Omit<ScanOptions, 'partId'> = { maxInlineString: 40, previewBytes: 10 }): void {
  const buf = typeof text === 'string' ? Buffer.from(text) : text;
  const options = { partId: 'prt_r', ...limits };
  const expected = outcome(() => scanPartData(buf, options));
  for (const size of chunkSizes(buf.length)) {
    expect(outcome(() => reducePartChunks(chunksOf(buf, size), options)), `chunk ${size}`).toEqual(expected);
  }
  if (!('error' in (expected as object))) {
    for (const size of [1, 3, 7, 64, buf.length]) {
      expect(outcome(() => reducePartChunks(rangesAround(buf, size), options)), `ranges, chunk ${size}`).toEqual(expected);
    }
  }
}

const b64 = (bytes: Buffer): string => bytes.toString('base64');
const bytesOf = (n: number, seed = 1): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 37 + seed * 101) & 0xff));

describe('PartReducer equals scanPartData', () => {
  it('a file part: the URL becomes a reference with its filename and decoded size', () => {
    checkCase(JSON.stringify({ type: 'file', mime: 'application/pdf', filename: 'a.pdf', url: `data:application/pdf;base64,${b64(bytesOf(301))}` }));
  });

  it('several attachments with padding 0, 1 and 2, and a filename after the URL', () => {
    checkCase(
      JSON.stringify({
        type: 'tool',
        state: {
          output: 'ok',
          attachments: [30, 31, 32].map((n, i) => ({ type: 'file', url: `data:image/png;base64,${b64(bytesOf(n, i))}`, mime: 'image/png', filename: `f${i}.png` })),
        },
      }),
    );
  });

  it('long strings cut to previews, short ones kept, escapes and unicode at every boundary', () => {
    checkCase(JSON.stringify({ type: 'text', text: 'x'.repeat(500), short: 'kept "as" is \\ here', other: `é€${'\u2028'.repeat(30)}😀`.repeat(3) }));
    checkCase(`{"type":"text","text":"${'ab\\"cd\\\\'.repeat(20)}","n":[1,2,{"k":"v"}]}`);
    checkCase(JSON.stringify({ type: 'text', text: 'é'.repeat(60) }), { maxInlineString: 40, previewBytes: 11 });
  });

  it('keys that look like data URLs, blanks before colons, and a value at the very end', () => {
    checkCase(`{"data:text/plain;base64,QUJD" \n\t : "data:text/plain;base64,REVG"  ,\r\n "k":"data:;base64,R0hJ" }`);
    checkCase(`{"a":"data:x;base64,QUJD"   \n}`);
    checkCase(`{"a": "data:no-comma-here${'z'.repeat(1100)}"}`);
    checkCase(`{"a":"data:text/plain,hello%20world","b":"data:"}`);
  });

  it('with no cuts the bytes come back as they were (the quick path of the whole scan)', () => {
    checkCase(JSON.stringify({ type: 'step-start', snapshot: 'abc' }), { maxInlineString: 1024 });
    checkCase(JSON.stringify({ type: 'text', text: 'y'.repeat(2000) }), { maxInlineString: 1024, previewBytes: 256 });
  });

  it('malformed parts fail as bad parts, as the whole scan does', () => {
    checkCase('{"type":"text","text":"unterminated');
    checkCase('[1,2]');
    checkCase(`{"type":"text","text":"${'q'.repeat(100)}"`);
  });

  it('refuses a gap anywhere but inside a payload', () => {
    const reducer = new PartReducer({ partId: 'prt_r', maxInlineString: 40 });
    reducer.write(Buffer.from('{"type":"te'));
    expect(() => reducer.write(Buffer.from('xt"}'), 50)).toThrow(/left out where they are needed/);
  });

  it('refuses a key longer than the inline limit (the one input where it differs)', () => {
    const raw = `{"${'k'.repeat(100)}":1}`;
    expect(scanPartData(Buffer.from(raw), { partId: 'prt_r', maxInlineString: 40 }).value).toEqual(JSON.parse(raw));
    expect(() => reducePartChunks([Buffer.from(raw)], { partId: 'prt_r', maxInlineString: 40 })).toThrow(/a key of more than 40 bytes/);
  });

  it('refuses a part whose kept bytes pass the cap', () => {
    const raw = JSON.stringify({ list: Array.from({ length: 200 }, (_, i) => `s${i}`) });
    expect(() => reducePartChunks(chunksOf(Buffer.from(raw), 100), { partId: 'prt_r', maxInlineString: 40, maxKeptBytes: 500 })).toThrow(/more than 500 bytes/);
  });
});
