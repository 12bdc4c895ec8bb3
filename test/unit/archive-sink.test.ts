/**
 * The archive sink stages small pieces and strings before it writes, and digests gather small
 * pieces before they hash: the file holds exactly the bytes written, in order, plain or gzipped,
 * and each digest is the XXH64 of its own bytes however digests interleave.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import xxhash from 'xxhash-wasm';
import { ArchiveSink, loadSessionDigests, SessionDigest } from '../../src/store/archive/archive-sink.js';
import { tempDir } from '../helpers/env.js';

/** Pieces of every size class: tiny strings (some multi-byte), small Buffers, pieces past the staging size. */
function pieces(): (Buffer | string)[] {
  const out: (Buffer | string)[] = [];
  for (let i = 0; i < 3000; i++) {
    out.push(i % 7 === 0 ? `é€${i}😀` : `,${i}`);
    out.push(Buffer.alloc(1 + ((i * 37) % 3000), 0x61 + (i % 26)));
    if (i % 500 === 0) out.push(Buffer.alloc(3 * 1024 * 1024 + i, 0x30 + (i % 10)), '');
  }
  return out;
}

describe('ArchiveSink', () => {
  for (const name of ['out.json', 'out.json.gz']) {
    it(`writes every piece in order (${name})`, async () => {
      const path = join(tempDir('sk-archive-sink-'), name);
      const sink = new ArchiveSink(path);
      const all = pieces();
      for (let i = 0; i < all.length; i += 3) await sink.write(...all.slice(i, i + 3));
      await sink.commit();
      const expected = Buffer.concat(all.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)));
      const written = readFileSync(path);
      expect((name.endsWith('.gz') ? gunzipSync(written) : written).equals(expected)).toBe(true);
      expect(sink.bytes).toBe(expected.length);
    });
  }
});

describe('SessionDigest', () => {
  // First in the file: the hash is loaded once per thread, and nothing before this loaded it.
  it('refuses to be fed before its hash is loaded, and may be made before', () => {
    const early = new SessionDigest();
    early.update(Buffer.from('x'));
    expect(() => early.finish('ses_early')).toThrow(/before loadSessionDigests/);
  });

  it('is the XXH64 of its own marks and bytes, two digests fed in turn', async () => {
    await loadSessionDigests();
    const { create64 } = await xxhash();
    const [a, b] = [new SessionDigest(), new SessionDigest()];
    const [ha, hb] = [create64(), create64()];
    const all = pieces().map((p) => (typeof p === 'string' ? Buffer.from(p) : p));
    all.forEach((bytes, i) => {
      const [digest, hash] = i % 3 === 0 ? [b, hb] : [a, ha];
      if (i % 5 === 0) {
        digest.begin('part');
        hash.update('\u0002');
      } else if (i % 11 === 0) {
        digest.beginRow('event');
        hash.update('\u0003event\u0000');
      }
      digest.update(bytes);
      hash.update(bytes);
    });
    const hex = (h: { digest(): bigint }): string => h.digest().toString(16).padStart(16, '0');
    expect(a.finish('ses_a').digest).toBe(hex(ha));
    expect(b.finish('ses_b').digest).toBe(hex(hb));
    expect(a.finish('ses_a').digest).not.toBe(b.finish('ses_b').digest);
  });
});
