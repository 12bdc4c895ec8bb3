/**
 * Cutting a part's attachments out of a value read in chunks gives exactly what cutting the whole
 * value gives: the same spans (offsets, hashes, kinds), the same body bytes, the same attachment
 * chunks, however the value is cut into chunks, edges inside escapes, data-URL headers and
 * base64 pieces included.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { attachmentChunks, CHUNK_BYTES, cutPart, cutStreamedPart, streamedAttachmentChunks } from '../../src/store/external/codec.js';
import type { StreamedValue } from '../../src/store/external/dialect.js';

/** The value as chunks of `size` bytes (a fresh Buffer each, as SQLite hands them). */
function chunked(value: Buffer, size: number): StreamedValue & { reads: number } {
  const streamed = {
    bytes: value.length,
    reads: 0,
    *chunks(): Generator<Buffer> {
      streamed.reads++;
      for (let at = 0; at < value.length; at += size) yield Buffer.from(value.subarray(at, Math.min(value.length, at + size)));
    },
  };
  return streamed;
}

const gather = (chunks: Iterable<Buffer>): Buffer => Buffer.concat([...chunks]);
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Base64 of `n` bytes, deterministic. */
const base64Of = (n: number, seed: number): string => Buffer.from(Array.from({ length: n }, (_, i) => (i * 131 + seed * 7) & 0xff)).toString('base64');

const ESCAPES = 'a\\"b\\\\c\\u00e9\\n\\t\\/\\\\\\"';

const VALUES: Record<string, Buffer> = {
  'no attachment, escapes everywhere': Buffer.from(`{"type":"text","text":"${ESCAPES.repeat(500)}"}`),
  'one small PDF between escaped text': Buffer.from(`{"type":"file","text":"${ESCAPES.repeat(40)}","url":"data:application/pdf;base64,${base64Of(5000, 1)}","after":"${ESCAPES.repeat(40)}"}`),
  // Over CHUNK_CHARS: hashed and stored in several pieces.
  'one big image over several stored chunks': Buffer.from(`{"url":"data:image/png;base64,${base64Of(CHUNK_BYTES * 2 + 1234, 2)}","x":"\\\\"}`),
  'several attachments, a key that looks like one, percent-encoded and non-canonical payloads': Buffer.from(
    `{"data:not/an;base64,AAAA":1,"a":"data:text/plain;base64,${base64Of(300, 3)}","b":"data:text/plain,hello%20world%0A","c":"data:image/gif;base64,AAA","d":"data:;base64,${base64Of(90, 4).replace(/=+$/, '')}","e":"data:image/png;base64,${base64Of(999, 5)}"}`,
  ),
  'escaped slash inside a payload (kept as written)': Buffer.from(`{"url":"data:image/png;base64,${base64Of(600, 6).replaceAll('/', '\\/')}"}`),
  'malformed (unterminated) with data:': Buffer.from(`{"url":"data:image/png;base64,${base64Of(600, 7)}`),
};

describe('cutStreamedPart equals cutPart', () => {
  for (const [name, value] of Object.entries(VALUES)) {
    it(name, () => {
      const whole = cutPart(value, 'prt_x');
      for (const size of [1, 2, 3, 5, 64, 1021, 65_536, value.length]) {
        const streamed = chunked(value, size);
        const cut = cutStreamedPart(streamed, 'prt_x');
        expect(cut.spans, `chunks of ${size}`).toEqual(whole.spans);
        expect(cut.sources.map((s) => [s.sha256, s.kind, s.span])).toEqual(whole.sources.map((s) => [s.sha256, s.kind, s.span]));
        expect([cut.attachmentCount, cut.attachmentBytes, cut.encodedBytes]).toEqual([whole.attachmentCount, whole.attachmentBytes, whole.encodedBytes]);
        expect(cut.body.bytes).toBe(whole.body.length);
        const body = gather(cut.body.chunks());
        expect(sha(body), `chunks of ${size}`).toBe(sha(whole.body));
        for (const [i, source] of cut.sources.entries()) {
          const want = [...attachmentChunks(value, source.span, source.kind)];
          const got = [...streamedAttachmentChunks(streamed, source.span, source.kind)];
          expect(got.map((c) => c.length)).toEqual(want.map((c) => c.length));
          expect(sha(Buffer.concat(got)), `attachment ${i}`).toBe(sha(Buffer.concat(want)));
          expect(sha(Buffer.concat(got))).toBe(source.kind === 'b' ? source.sha256 : sha(value.subarray(source.span.payloadStart, source.span.end)));
        }
      }
    });
  }

  it('a value without attachments is its own body, read once to scan', () => {
    const value = VALUES['no attachment, escapes everywhere'] as Buffer;
    const streamed = chunked(value, 7);
    const cut = cutStreamedPart(streamed, 'prt_x');
    expect(cut.body).toBe(streamed);
    expect(streamed.reads).toBe(1);
  });
});
