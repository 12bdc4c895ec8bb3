/**
 * The bulk copy path with hostile row contents, against the real servers: quotes, backslashes,
 * tabs, newlines, non-ASCII text, escapes jsonb refuses, invalid UTF-8, malformed JSON, JSON that is
 * not an object, and big bodies whose JSON only the server checks. Every body comes back byte for
 * byte (restore into SQLite), and the JSON copy is there exactly when the engine can hold it.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateTo, restoreFrom } from '../../src/main/migration.js';
import { emptyOpenCodeDb, insertSession, tempDir } from '../helpers/env.js';
import { freshDatabase, rowsDigest, serverQuery, type FreshDatabase } from './servers.js';

const dir = tempDir('sk-external-bulk-');
const source = join(dir, 'hostile.db');

const big = (inner: string): string => `{"type":"text","text":"${'x\\"\\\\\\t'.repeat(40_000)}${inner}"}`;

/** [part body, whether PostgreSQL's jsonb copy is expected] */
const BODIES: [string | Buffer, boolean][] = [
  ['{"type":"text","text":"she said \\"hi\\" \'there\' \\\\ back\\\\slash"}', true],
  ['{"type":"text","text":"tab\\there\\nnew line\\r\\n escaped"}', true],
  ['{"type":"text","text":"a raw\ttab and\nnewline inside a string: not JSON"}', false],
  ['{"type":"text","text":"ünïcödé — 日本語 — emoji 😀 — \\u00e9 \\ud83d\\ude00"}', false], // surrogate escapes: left to the body
  ['{"type":"text","text":"NUL escape \\u0000 inside"}', false],
  ['{"type":"text","text":"lone \\udc00 surrogate"}', false],
  ['{"type":"text","text":"unterminated', false],
  ['[1, 2, "three", {"four": null}]', true],
  ['"just a string"', false],
  ['{"type":"text","text":"a\\\\Nb \\\\. end\\\\"}', true],
  ['{"type":"text","text":"copy markers \\\\. and |, ; \\" ok"}', true],
  [Buffer.concat([Buffer.from('{"type":"text","text":"bad utf8 '), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}')]), false],
  [big('end'), true],
  [big('\\u0000'), false],
  [`${big('end').slice(0, -1)},}`, false], // big and malformed: refused by the server, kept without a copy
  ['  \n {"type":"text","text":"leading whitespace"}', true],
];

let ids: string[] = [];

beforeAll(() => {
  const db = emptyOpenCodeDb(source);
  insertSession(db, 'ses_hostile00001', 1000, 2000);
  insertSession(db, 'ses_hostile00002', 1001, 2001, 'ses_hostile00001');
  const message = db.prepare('INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?, ?, ?, ?, CAST(? AS TEXT))');
  const part = db.prepare('INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?, ?, ?, ?, ?, CAST(? AS TEXT))');
  message.run('msg_h1', 'ses_hostile00001', 1000, 1000, Buffer.from('{"role":"user","note":"a \\"quoted\\"\\ttab\\nline \\\\ ü"}'));
  message.run('msg_h2', 'ses_hostile00002', 1001, 1001, Buffer.from('{"role":"assistant","bad":"\\u0000"}'));
  BODIES.forEach(([body, _json], i) => {
    const id = `prt_h${String(i).padStart(3, '0')}`;
    ids.push(id);
    part.run(id, i % 2 ? 'msg_h2' : 'msg_h1', i % 2 ? 'ses_hostile00002' : 'ses_hostile00001', 1000 + i, 1000 + i, Buffer.isBuffer(body) ? body : Buffer.from(body));
  });
  db.close();
});

for (const backend of ['postgres', 'mysql'] as const) {
  describe(`${backend}: hostile row contents`, () => {
    let database: FreshDatabase;
    beforeAll(async () => {
      database = await freshDatabase(backend);
    });
    afterAll(async () => {
      await database?.drop();
    });

    it('copies every body byte for byte, with the JSON copy only where the engine can hold it', async () => {
      const result = await migrateTo({ db: source, to: database.url });
      expect(result.verified).toBe(true);
      expect(result.parts).toBe(BODIES.length);
      // What the server holds, read with the driver itself.
      const rows = await serverQuery<{ id: string; body: Buffer; data: unknown }>(database.url, 'SELECT id, body, data FROM sk_part ORDER BY id');
      expect(rows.map((r) => r.id)).toEqual(ids);
      rows.forEach((r, i) => {
        const [body, json] = BODIES[i] as [string | Buffer, boolean];
        expect(r.body.equals(Buffer.isBuffer(body) ? body : Buffer.from(body))).toBe(true);
        if (backend === 'postgres') {
          expect(r.data !== null).toBe(json);
          if (json) expect(r.data).toEqual(JSON.parse(String(body)));
        }
      });
      const target = join(dir, `restored-${backend}.db`);
      emptyOpenCodeDb(target).close();
      const restored = await restoreFrom({ db: target, from: database.url, roots: ['ses_hostile00001'] });
      expect(restored.copiedIds).toEqual(['ses_hostile00001', 'ses_hostile00002']);
      expect(rowsDigest(target)).toBe(rowsDigest(source));
    });
  });
}
