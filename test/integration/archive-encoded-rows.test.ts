/**
 * An archive's event rows built by our extension's sk_row_json (native/value_chunks.c) are the
 * bytes the JS encoding (core/table-row.ts) writes for the same rows: over values chosen to hit
 * every rule (escapes, control bytes, text that is not UTF-8, JSON-looking text that is not JSON,
 * deep nesting, integers past 2^53, REALs, BLOBs, NULL, a value read in chunks) and over many
 * seeded random ones. Rows the extension leaves alone go through the JS encoding in their place.
 */
import Database from 'better-sqlite3';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { writeArchive } from '../../src/store/archive/archive-write.js';
import { openFileReader } from '../../src/store/open-store.js';
import { ARCHIVE_EXPORT } from '../../src/store/reader.js';
import type { SessionItem } from '../../src/store/session-items.js';
import { VALUE_CHUNKS_LIBRARY } from '../../src/store/sqlite/value-chunks.js';
import { Rng } from '../fixtures/rng.js';
import { emptyOpenCodeDb, insertMessage, insertSession, tempDir } from '../helpers/env.js';

const dir = tempDir('sk-archive-encoded-rows-');
const db = join(dir, 'opencode.db');
const SESSIONS = ['ses_a', 'ses_b'];
const LARGE_BYTES = 9 * 1024 * 1024;

/** Values for the loosened event table's `type` and `data` columns, as SQL literals or bound values. */
const FIXED: unknown[] = [
  '',
  'plain',
  'quote " and backslash \\ inside',
  'controls \u0000 \u0001 \b \f \n \r \t \u001f \u007f end',
  'unicode é 中文 😀 \u2028 \u2029',
  '{"a":1}',
  '[1,2,3]',
  '{}',
  '[]',
  '{',
  '}',
  '{"a":1',
  '{"a":1} ',
  ' {"a":1}',
  '{"a":01}',
  '{"a":1.}',
  "{'a':1}",
  '{"a":"\u0001"}',
  '{"a":"\\u12"}',
  '{"a":"\\ud800"}',
  '{"a":"\\x41"}',
  '{"a":[1,{"b":[true,false,null,-0.5e+10,1E3]}]}',
  '{"a" : 1 , "b" :\t[ 1 ,2 ]\r\n}',
  '{"a":NaN}',
  '[1,]',
  '{"a":1,}',
  `${'['.repeat(499)}${']'.repeat(499)}`,
  `${'['.repeat(501)}${']'.repeat(501)}`,
  `${'['.repeat(1001)}${']'.repeat(1001)}`,
  `{"s":"${'x'.repeat(5000)}"}`,
  'y'.repeat(5000),
  `${'"'.repeat(10)}${'z'.repeat(5000)}`,
  0,
  -1,
  2 ** 53,
  -(2 ** 53),
  2n ** 53n + 1n,
  -(2n ** 60n),
  1.5,
  -0.25,
  1e300,
  Buffer.from([0, 1, 2, 255]),
  Buffer.from('{"blob":true}'),
  null,
];

/** TEXT whose bytes are not UTF-8 (written as a BLOB cast to TEXT). */
const NOT_UTF8 = ["CAST(X'c328' AS TEXT)", "CAST(X'eda080' AS TEXT)", "CAST(X'f4908080' AS TEXT)", "CAST(X'e0808f' AS TEXT)", "CAST(X'7b22613a22ff227d' AS TEXT)", "CAST(X'7b2261223a22ff227d' AS TEXT)"];

function randomText(rng: Rng): string {
  const alphabet = ['a', 'Z', '0', '9', ' ', '"', '\\', '{', '}', '[', ']', ':', ',', '\n', '\t', '\u0002', 'é', '😀', '-', '.', 'e', 'u', 'null', 'true'];
  if (rng.chance(0.5)) {
    // A random JSON value, sometimes cut or with a byte changed.
    const value = (depth: number): unknown => {
      const pick = rng.int(0, depth > 3 ? 3 : 5);
      if (pick === 0) return rng.int(-1000, 1000) / (rng.chance(0.5) ? 1 : 8);
      if (pick === 1) return Array.from({ length: rng.int(0, 6) }, () => alphabet[rng.int(0, alphabet.length - 1)]).join('');
      if (pick === 2) return rng.chance(0.5) ? null : rng.chance(0.5);
      if (pick === 3) return '';
      if (pick === 4) return Array.from({ length: rng.int(0, 4) }, () => value(depth + 1));
      return Object.fromEntries(Array.from({ length: rng.int(0, 4) }, (_, i) => [`k${i}${alphabet[rng.int(0, alphabet.length - 1)]}`, value(depth + 1)]));
    };
    let text = JSON.stringify(value(0));
    if (rng.chance(0.2) && text.length > 2) {
      const at = rng.int(1, text.length - 2);
      text = text.slice(0, at) + (alphabet[rng.int(0, alphabet.length - 1)] as string) + text.slice(at + 1);
    }
    return text;
  }
  return Array.from({ length: rng.int(0, 40) }, () => alphabet[rng.int(0, alphabet.length - 1)]).join('');
}

beforeAll(() => {
  const conn = emptyOpenCodeDb(db);
  for (const [i, id] of SESSIONS.entries()) {
    insertSession(conn, id, i + 1, i + 1);
    insertMessage(conn, `msg_${id}`, id, i + 1);
    conn.prepare('INSERT INTO event_sequence (aggregate_id, seq) VALUES (?, 0)').run(id);
  }
  // Without its NOT NULL constraints, type and data without a declared type: every kind of value stays as given.
  conn.exec('DROP TABLE event; CREATE TABLE event (id TEXT, aggregate_id TEXT, seq INTEGER, type, data)');
  const insert = conn.prepare('INSERT INTO event (id, aggregate_id, seq, type, data) VALUES (?, ?, ?, ?, ?)');
  conn.defaultSafeIntegers(true);
  let n = 0;
  const add = (aggregate: string, type: unknown, data: unknown): void => {
    insert.run(`evt_${n}`, aggregate, n, type, data);
    n++;
  };
  for (const value of FIXED) {
    add('ses_a', 'fixed', value);
    add('ses_a', value, '{"x":1}');
  }
  for (const sql of NOT_UTF8) {
    conn.prepare(`INSERT INTO event (id, aggregate_id, seq, type, data) VALUES (?, 'ses_a', ?, 'not utf-8', ${sql})`).run(`evt_${n}`, n);
    n++;
  }
  add('ses_a', 'large', JSON.stringify({ big: 'b'.repeat(LARGE_BYTES) }));
  add('ses_a', 'large string', 'c'.repeat(LARGE_BYTES));
  const rng = new Rng(Buffer.from('archive-encoded-rows-seed-00000000'));
  for (let i = 0; i < 3000; i++) add(SESSIONS[i % 2] as string, randomText(rng), randomText(rng));
  conn.pragma('wal_checkpoint(TRUNCATE)');
  conn.close();
});

/** The items' event rows: how many came encoded by the store, how many as rows. */
function eventRowKinds(items: Iterable<SessionItem>): { encoded: number; rows: number } {
  const found = { encoded: 0, rows: 0 };
  for (const item of items) {
    if (item.kind === 'encodedRows' && item.table === 'event') found.encoded += item.rows.length;
    if (item.kind === 'rows' && item.table === 'event') found.rows += item.rows.length;
  }
  return found;
}

describe('event rows encoded by the extension', () => {
  it('are the bytes the JS encoding writes, row for row', async () => {
    const reader = openFileReader(db);
    try {
      const native = join(dir, 'native.json');
      const js = join(dir, 'js.json');
      await writeArchive(reader.exportSessions(SESSIONS, ARCHIVE_EXPORT), native, { verify: true, verifyBehind: false });
      await writeArchive(reader.exportSessions(SESSIONS), js, { verify: true, verifyBehind: false });
      const bytes = readFileSync(native);
      expect(bytes.length).toBeGreaterThan(2 * LARGE_BYTES);
      expect(bytes.equals(readFileSync(js))).toBe(true);
    } finally {
      await reader.close();
    }
  });

  it('come mostly from the extension, the rest (a value read in chunks among them) from the JS encoding in their place', () => {
    const reader = openFileReader(db);
    try {
      const kinds = eventRowKinds(reader.exportSessions(SESSIONS, ARCHIVE_EXPORT) as Iterable<SessionItem>);
      const total = 2 * FIXED.length + NOT_UTF8.length + 2 + 3000;
      expect(kinds.encoded + kinds.rows).toBe(total);
      // Only the two rows holding a value of 9 MB come as rows; the extension built most of the others.
      expect(kinds.rows).toBe(2);
      const conn = new Database(db, { readonly: true });
      conn.loadExtension(VALUE_CHUNKS_LIBRARY);
      const left = conn.prepare(`SELECT count(*) FROM event WHERE sk_row_json('{"id":', id, ',"aggregate_id":', aggregate_id, ',"seq":', seq, ',"type":', type, ',"data":', data) IS NULL`).pluck().get() as number;
      conn.close();
      expect(left).toBeGreaterThan(FIXED.length / 2);
      expect(left).toBeLessThan(total / 2);
    } finally {
      void reader.close();
    }
  });

  it('are encoded in JS without the extension, into the same archive', async () => {
    process.env['SESSION_KEEPER_NO_CHUNK_EXTENSION'] = '1';
    try {
      const reader = openFileReader(db);
      try {
        expect(eventRowKinds(reader.exportSessions(SESSIONS, ARCHIVE_EXPORT) as Iterable<SessionItem>).encoded).toBe(0);
        const whole = join(dir, 'whole.json');
        await writeArchive(reader.exportSessions(SESSIONS, ARCHIVE_EXPORT), whole, { verify: true, verifyBehind: false });
        expect(readFileSync(whole).equals(readFileSync(join(dir, 'native.json')))).toBe(true);
      } finally {
        await reader.close();
      }
    } finally {
      delete process.env['SESSION_KEEPER_NO_CHUNK_EXTENSION'];
    }
  });

  it('are not what a copy to a server gets: it asks for rows', () => {
    const reader = openFileReader(db);
    try {
      const kinds = eventRowKinds(reader.exportSessions(SESSIONS) as Iterable<SessionItem>);
      expect(kinds.encoded).toBe(0);
      expect(kinds.rows).toBe(2 * FIXED.length + NOT_UTF8.length + 2 + 3000);
    } finally {
      void reader.close();
    }
  });
});
