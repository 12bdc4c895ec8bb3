/**
 * The export asks SQLite whether a row's TEXT is JSON as coalesce(sk_json_valid(x), json_valid(x))
 * (native/value_chunks.c): our parser may only say "yes", and only where json_valid says so too
 * and the bytes are strict UTF-8. Over fixed edge cases and seeded random documents, whole and
 * damaged (a byte changed, cut short, a UTF-8 sequence broken), the combined verdict must be
 * json_valid's, row by row; and the fast parser must vouch for most well-formed rows, or the
 * export gains nothing from it.
 */
import Database from 'better-sqlite3';
import { isUtf8 } from 'node:buffer';
import { afterAll, describe, expect, it } from 'vitest';
import { jsonValidSql, loadValueChunks } from '../../src/store/sqlite/value-chunks.js';
import { Rng } from '../fixtures/rng.js';

const FIXED: (string | Buffer)[] = [
  '{}', '[]', ' {} ', '{"a":1}', '{"a":1,}', '[01]', '[1.]', '[-0.5e+10,1E3,true,false,null]', '{"a" : 1 , "b" :\t[ 1 ,2 ]\r\n}',
  '{"a":"\\u00e9\\n\\"\\\\\\/"}', '{"a":"\\u12"}', '{"a":"\\x41"}', '"plain string"', '"0123456789abcdef0123456789"', '"0123456789abcdef',
  '{"a":"é 中文 😀 \u2028"}', '{"a":"\u0001"}', `${'['.repeat(499)}${']'.repeat(499)}`, `${'['.repeat(501)}${']'.repeat(501)}`,
  `{"s":"${'x'.repeat(100_000)}"}`, `{"data":"data:image/png;base64,${'QUJD'.repeat(50_000)}"}`, 'NaN', '', ' ',
  Buffer.from('{"a":"\xe2\x82"}', 'latin1'), Buffer.from('{"a":"\xed\xa0\x80"}', 'latin1'), Buffer.from('{"a":"\xc0\xaf"}', 'latin1'),
  Buffer.from('{"a":"\xf4\x90\x80\x80"}', 'latin1'), Buffer.from('{"a":"abcdefg\xff"}', 'latin1'), Buffer.from('["\xe2\x82\xac"]', 'latin1'),
];

function randomDocument(rng: Rng): string {
  const alphabet = ['a', 'Z', '0', ' ', '"', '\\', '\n', '\t', '\u0001', 'é', '中', '😀', '/', '{', ']', ':', ','];
  const value = (depth: number): unknown => {
    const pick = rng.int(0, depth > 3 ? 3 : 5);
    if (pick === 0) return rng.int(-1000, 1000) / (rng.chance(0.5) ? 1 : 8);
    if (pick === 1) return Array.from({ length: rng.int(0, rng.chance(0.1) ? 400 : 12) }, () => alphabet[rng.int(0, alphabet.length - 1)]).join('');
    if (pick === 2) return rng.chance(0.5) ? null : rng.chance(0.5);
    if (pick === 3) return 'x'.repeat(rng.int(0, 40));
    if (pick === 4) return Array.from({ length: rng.int(0, 4) }, () => value(depth + 1));
    return Object.fromEntries(Array.from({ length: rng.int(0, 4) }, (_, i) => [`k${i}${alphabet[rng.int(0, alphabet.length - 1)]}`, value(depth + 1)]));
  };
  return JSON.stringify(value(0), null, rng.chance(0.2) ? 1 : undefined);
}

/** The document's UTF-8 bytes, maybe damaged: a byte changed or dropped, cut short, a stray continuation or lead byte. */
function maybeDamaged(rng: Rng, text: string): Buffer {
  const bytes = Buffer.from(text);
  if (bytes.length < 2 || rng.chance(0.5)) return bytes;
  const at = rng.int(0, bytes.length - 1);
  const pick = rng.int(0, 3);
  if (pick === 0) bytes[at] = [0x22, 0x5c, 0x7d, 0x2c, 0x00, 0x80, 0xc3, 0xe2, 0xff][rng.int(0, 8)] as number;
  if (pick === 1) return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1)]);
  if (pick === 2) return bytes.subarray(0, at);
  if (pick === 3) return Buffer.concat([bytes.subarray(0, at), Buffer.from([0xe2, 0x82]), bytes.subarray(at)]);
  return bytes;
}

describe('sk_json_valid', () => {
  const db = new Database(':memory:');
  afterAll(() => db.close());
  const loaded = loadValueChunks(db);

  it.skipIf(!loaded)('agrees with json_valid through the coalesce, says only yes, and vouches for most well-formed rows', () => {
    db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, data)');
    const insert = db.prepare('INSERT INTO t(data) VALUES (CAST(? AS TEXT))');
    const rng = new Rng(Buffer.from('json-valid-native-seed-000000000'));
    db.transaction(() => {
      for (const fixed of FIXED) insert.run(Buffer.isBuffer(fixed) ? fixed : Buffer.from(fixed));
      for (let i = 0; i < 20_000; i++) insert.run(maybeDamaged(rng, randomDocument(rng)));
      db.exec("INSERT INTO t(data) VALUES (NULL), (42), (1.5), (X'7b7d')");
    })();
    const rows = db
      .prepare(`SELECT id, CAST(data AS BLOB) AS bytes, typeof(data) AS type, json_valid(data) AS sqlite, sk_json_valid(data) AS ours, ${jsonValidSql('chunked', 'data')} AS combined FROM t`)
      .all() as { id: number; bytes: Buffer | null; type: string; sqlite: number | null; ours: number | null; combined: number | null }[];
    let vouched = 0;
    let valid = 0;
    for (const row of rows) {
      expect(row.combined, `row ${row.id}`).toBe(row.sqlite);
      expect(row.ours === null || row.ours === 1, `row ${row.id}`).toBe(true);
      if (row.ours === 1) {
        vouched++;
        expect(row.type).toBe('text');
        expect(isUtf8(row.bytes as Buffer), `row ${row.id} is UTF-8`).toBe(true);
        expect(() => JSON.parse((row.bytes as Buffer).toString('utf8')), `row ${row.id} parses`).not.toThrow();
      }
      if (row.sqlite === 1 && row.type === 'text' && isUtf8(row.bytes as Buffer) && (row.bytes as Buffer)[0] !== 0x20) valid++;
    }
    // Damage makes about a third of the random rows invalid; deep nesting and non-UTF-8 are the fixed cases only.
    expect(valid).toBeGreaterThan(10_000);
    expect(vouched).toBeGreaterThan(valid * 0.99);
    expect(rows.filter((r) => r.sqlite === 0).length).toBeGreaterThan(3_000);
  });
});
