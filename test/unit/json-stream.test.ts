import { describe, expect, it } from 'vitest';
import { JsonStreamScanner, type PathItem } from '../../src/core/json-stream.js';

/** Feeds `text` in chunks of the given sizes and returns the raw bytes of every selected value. */
function capture(text: string, select: (path: readonly PathItem[]) => boolean, chunkSizes: number[] = [text.length]): [string, string][] {
  const out: [string, string][] = [];
  let current: Buffer[] = [];
  const scanner = new JsonStreamScanner({
    select,
    chunk: (_path, bytes) => current.push(Buffer.from(bytes)),
    end: (path) => {
      out.push([path.join('/'), Buffer.concat(current).toString('utf8')]);
      current = [];
    },
  });
  const buf = Buffer.from(text);
  let at = 0;
  let k = 0;
  while (at < buf.length) {
    const size = Math.max(1, chunkSizes[k++ % chunkSizes.length] as number);
    scanner.write(buf.subarray(at, at + size));
    at += size;
  }
  scanner.finish();
  return out;
}

const archive = [
  {
    info: { id: 'ses_1', title: 'a "quoted" title \\ with \u00e9 and \\u escapes' },
    messages: [
      { info: { id: 'msg_1', role: 'user' }, parts: [{ id: 'prt_1', type: 'text', text: '}]{["\\' }, { id: 'prt_2', n: -1.5e3, ok: true, nothing: null }] },
      { info: { id: 'msg_2' }, parts: [] },
    ],
    extra: { rows: [[1, 2], []] },
  },
  { info: { id: 'ses_2' }, messages: [] },
];

describe('JsonStreamScanner', () => {
  const text = JSON.stringify(archive);
  const parts = (path: readonly PathItem[]) => path.length === 5 && path[1] === 'messages' && path[3] === 'parts';

  it('hands out the exact bytes of selected values, whatever the chunking', () => {
    const expected = [
      ['0/messages/0/parts/0', JSON.stringify(archive[0]?.messages[0]?.parts[0])],
      ['0/messages/0/parts/1', JSON.stringify(archive[0]?.messages[0]?.parts[1])],
    ];
    for (const sizes of [[text.length], [1], [2, 3, 5], [7], [64]]) {
      expect(capture(text, parts, sizes)).toEqual(expected);
    }
  });

  it('selects scalars, containers and top-level elements by path', () => {
    expect(capture(text, (p) => p.length === 1)).toEqual(archive.map((s, i) => [String(i), JSON.stringify(s)]));
    expect(capture(text, (p) => p.length === 3 && p[1] === 'info' && p[2] === 'title', [3])).toEqual([
      ['0/info/title', JSON.stringify(archive[0]?.info.title)],
    ]);
  });

  it('keeps whitespace and escapes byte-exact', () => {
    const pretty = JSON.stringify(archive, null, 2);
    const got = capture(pretty, (p) => p.length === 2 && p[1] === 'info', [5]);
    expect(got.map(([, raw]) => JSON.parse(raw))).toEqual(archive.map((s) => s.info));
    expect(pretty).toContain(got[0]?.[1]);
  });

  it('rejects truncated and malformed documents with the byte offset', () => {
    expect(() => capture(text.slice(0, text.length - 3), () => false)).toThrow(/ends early/);
    expect(() => capture('[{"a":1,}]', () => false)).toThrow(/malformed JSON at byte \d+: expected a key/);
    expect(() => capture('[1 2]', () => false)).toThrow(/expected ","/);
    expect(() => capture('[1] x', () => false)).toThrow(/after the end/);
  });

  it('selects by path after a selected value whose keys were skipped, not decoded', () => {
    // Keys inside a selected value are never asked for: one past the key-length guard passes through.
    const long = 'k'.repeat(5000);
    const doc = `[{"a":{"${long}":1,"x\\"y":[{"z":2}]},"b":"after"},{"a":{},"b":"second"}]`;
    for (const sizes of [[doc.length], [1], [3, 7], [4096]]) {
      expect(capture(doc, (p) => p.length === 2, sizes)).toEqual([
        ['0/a', `{"${long}":1,"x\\"y":[{"z":2}]}`],
        ['0/b', '"after"'],
        ['1/a', '{}'],
        ['1/b', '"second"'],
      ]);
    }
    expect(() => capture(`[{"${long}":1}]`, () => false)).toThrow(/longer than 4096/);
    expect(() => capture('[{"a":{"k" 1}}]', (p) => p.length === 2)).toThrow(/expected ":"/);
  });

  it('handles a large string quickly and without copying it into a JS string', () => {
    const big = `[{"p":"${'A'.repeat(50 * 1024 * 1024)}"}]`;
    const started = Date.now();
    let bytes = 0;
    const scanner = new JsonStreamScanner({ select: (p) => p.length === 1, chunk: (_p, b) => (bytes += b.length), end: () => undefined });
    const buf = Buffer.from(big);
    for (let at = 0; at < buf.length; at += 65536) scanner.write(buf.subarray(at, at + 65536));
    scanner.finish();
    expect(bytes).toBe(buf.length - 2);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('ends a string only at a quote after an even run of backslashes, wherever a chunk cuts the run', () => {
    // Runs of 0-5 backslashes before quotes, in short strings and in strings past the bytes looked at one by one.
    const values = ['\\', '\\"', '\\\\"', 'a\\\\\\"b', '"', '\\"\\"', `${'x'.repeat(20)}\\"${'y'.repeat(20)}\\\\`, `${'z'.repeat(40)}"\\"`, ''];
    const doc = JSON.stringify([{ info: { id: 's', keys: Object.fromEntries(values.map((v, i) => [`${v}k${i}`, v])) }, messages: [] }]);
    const expected = values.map((v, i) => [`0/info/keys/${v}k${i}`, JSON.stringify(v)]);
    const all = values.map((_v, i) => i);
    for (let size = 1; size <= 24; size++) {
      expect(capture(doc, (p) => p.length === 4 && p[2] === 'keys', [size]), `chunks of ${size}`).toEqual(expected);
      expect(capture(doc, (p) => p.length === 2 && p[1] === 'info', [size, size + 3])[0]?.[1]).toBe(JSON.stringify({ id: 's', keys: Object.fromEntries(all.map((i) => [`${values[i]}k${i}`, values[i]])) }));
    }
    expect(() => capture('["a\\"]', () => false)).toThrow(/ends early/);
  });

  it('checks the bytes inside a selected value as everywhere else', () => {
    const part = (inside: string) => `[{"info":{},"messages":[{"info":{},"parts":[${inside}]}]}]`;
    const parts = (p: readonly PathItem[]) => p.length === 5 && p[3] === 'parts';
    const bad: [string, RegExp][] = [
      ['{"a":1,}', /expected a key/],
      ['{"a" 1}', /expected ":"/],
      ['{"a":[1 2]}', /expected ","/],
      ['{"a":[1,]}', /unexpected "]"/],
      ['{"a":{"b":1]}', /expected "," or the end of the object/],
      ['[[],{}}', /expected "," or the end of the array/],
      ['{"a":}', /unexpected "}"/],
    ];
    for (const [inside, error] of bad) {
      for (const size of [1, 3, 64]) expect(() => capture(part(inside), parts, [size]), `${inside} in chunks of ${size}`).toThrow(error);
    }
    for (const size of [1, 2, 5, 64]) {
      expect(capture(part('{"a":[[],{},[1,{"b":[true,null]}]],"c":-1.5e3} , [ ]'), parts, [size])).toEqual([
        ['0/messages/0/parts/0', '{"a":[[],{},[1,{"b":[true,null]}]],"c":-1.5e3}'],
        ['0/messages/0/parts/1', '[ ]'],
      ]);
    }
  });
});
