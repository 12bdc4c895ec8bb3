/**
 * The chunked JSON string decoder against JSON.parse of the whole string: at every chunk size (a
 * boundary inside an escape, a \u escape, a surrogate pair's two escapes, a UTF-8 sequence, before
 * the closing quote) the bytes equal the whole parse's, and a string cut short is refused.
 */
import { describe, expect, it } from 'vitest';
import { JsonStringDecoder } from '../../src/core/json-string-decode.js';
import { chunkSizes, chunksOf, outcome } from '../helpers/chunks.js';

const TEXTS = [
  'plain ascii',
  'quote " backslash \\ slash / newline \n tab \t nul \u0000 bell \u0007',
  'euro € snowman ☃ and an emoji 😀 and a CJK 漢字',
  '\\\\\\\\"\\"',
  'x'.repeat(100) + '€'.repeat(30),
];

/** The JSON texts a string can have: as JSON.stringify writes it, and with every non-ASCII character as \u escapes (as other writers do). */
function encodings(text: string): string[] {
  const escaped = JSON.stringify(text).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return [JSON.stringify(text), escaped];
}

function decodeInChunks(json: Buffer, size: number, quoted: boolean): Buffer {
  const decoder = new JsonStringDecoder('test', quoted);
  const out = [...chunksOf(quoted ? json : json.subarray(1, json.length - 1), size)].map((c) => decoder.write(c));
  out.push(decoder.end());
  return Buffer.concat(out);
}

describe('JsonStringDecoder', () => {
  for (const text of TEXTS) {
    for (const json of encodings(text)) {
      it(`decodes ${JSON.stringify(json.slice(0, 40))} at every chunk size, quoted and not`, () => {
        const bytes = Buffer.from(json);
        const want = Buffer.from(JSON.parse(json) as string, 'utf8');
        for (const size of chunkSizes(bytes.length)) {
          expect(decodeInChunks(bytes, size, true).equals(want), `quoted, chunk ${size}`).toBe(true);
          expect(decodeInChunks(bytes, size, false).equals(want), `body, chunk ${size}`).toBe(true);
        }
      });
    }
  }

  it('refuses a string cut inside an escape, without its closing quote, or with a quote inside', () => {
    for (const size of [1, 2, 3, 100]) {
      expect(outcome(() => decodeInChunks(Buffer.from('"abc\\u20"'), size, false))).toMatchObject({ error: expect.stringMatching(/^archive: test: a string value that does not parse/) });
      expect(outcome(() => decodeInChunks(Buffer.from('"abc'), size, true))).toEqual({ error: 'archive: test: a string value without its closing quote' });
      expect(outcome(() => decodeInChunks(Buffer.from('"a"b"'), size, true))).toMatchObject({ error: expect.stringMatching(/does not parse/) });
    }
  });
});
