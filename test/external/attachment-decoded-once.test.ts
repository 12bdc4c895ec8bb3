/**
 * A one-chunk base64 payload is decoded once on the way in: the cut (of a Buffer or of a value read
 * in chunks) keeps the decoded chunk its hash was taken from, and the stored chunk is that one. A payload that does not re-encode to the
 * same characters stays raw and keeps nothing decoded.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { attachmentChunks, cutPart, cutStreamedPart, sourceChunks } from '../../src/store/external/codec.js';

/** Deterministic bytes, so a failure can be rerun. */
function bytes(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = (seed = (seed * 1103515245 + 12345) % 2147483648) % 256;
  return out;
}

describe('attachments decoded once', () => {
  it('keeps a canonical payload decoded, the same bytes its hash names and the chunks it would be stored as', () => {
    const payload = bytes(3000, 1);
    const part = Buffer.from(`{"url":"data:image/png;base64,${payload.toString('base64')}"}`);
    const cut = cutPart(part, 'prt_a');
    const source = cut.sources[0];
    expect(cut.spans[0]?.k).toBe('b');
    expect(source?.decoded?.equals(payload)).toBe(true);
    expect(cut.spans[0]?.s).toBe(createHash('sha256').update(payload).digest('hex'));
    if (!source) throw new Error('no source');
    expect(sourceChunks(part, source).equals(Buffer.concat([...attachmentChunks(part, source.span, source.kind)]))).toBe(true);
  });

  it('keeps the same decoded chunk when the part is read in chunks', () => {
    const payload = bytes(5000, 3);
    const part = Buffer.from(`{"a":"data:image/png;base64,${payload.toString('base64')}","b":"data:image/png;base64,QR=="}`);
    const value = {
      bytes: part.length,
      *chunks(): Generator<Buffer> {
        for (let at = 0; at < part.length; at += 777) yield Buffer.from(part.subarray(at, at + 777));
      },
    };
    const cut = cutStreamedPart(value, 'prt_s');
    expect(cut.sources.map((s) => s.kind)).toEqual(['b', 'r']);
    expect(cut.sources[0]?.decoded?.equals(payload)).toBe(true);
    expect(cut.sources[1]?.decoded).toBeUndefined();
    expect(cut.sources[0]?.decoded?.equals(cutPart(part, 'prt_s').sources[0]?.decoded ?? Buffer.alloc(0))).toBe(true);
  });

  it('keeps a payload that does not round-trip raw, with nothing decoded', () => {
    for (const text of [bytes(2999, 2).toString('base64').replace(/=+$/, ''), 'QR==', 'QUJD-_8=']) {
      const part = Buffer.from(`{"url":"data:image/png;base64,${text}"}`);
      const cut = cutPart(part, 'prt_b');
      expect(cut.spans[0]?.k, text).toBe('r');
      expect(cut.sources[0]?.decoded, text).toBeUndefined();
      const source = cut.sources[0];
      if (!source) throw new Error('no source');
      expect(sourceChunks(part, source).toString('latin1')).toBe(text);
    }
  });
});
