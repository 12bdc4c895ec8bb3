import { describe, expect, it } from 'vitest';
import { writeJson } from '../../src/cli/format.js';

const render = (value: unknown): string => {
  let text = '';
  writeJson(value, (piece) => (text += piece));
  return text;
};

describe('writeJson', () => {
  it('writes exactly what JSON.stringify(value, null, 2) writes', () => {
    const page = {
      session: { id: 'ses_1', time: { created: 1 }, empty: {}, none: [], skip: undefined },
      messages: [{ info: { id: 'msg_1', text: 'a "quoted" …\\n line' }, parts: [{ id: 'p', n: -1.5, ok: true, nil: null, list: [1, undefined, 'x'] }] }],
      nextCursor: null,
      when: new Date(0),
    };
    expect(render(page)).toBe(JSON.stringify(page, null, 2));
    for (const v of [null, 1, 'x', [], {}, [[]], [{}], { a: [{ b: [] }] }]) expect(render(v)).toBe(JSON.stringify(v, null, 2));
  });

  it('writes a large page in bounded pieces', () => {
    const pieces: number[] = [];
    writeJson({ parts: Array.from({ length: 5000 }, (_, i) => ({ id: i, text: 'y'.repeat(100) })) }, (p) => pieces.push(p.length));
    expect(pieces.length).toBeGreaterThan(5);
    expect(Math.max(...pieces)).toBeLessThan(65536 + 1024);
  });
});
