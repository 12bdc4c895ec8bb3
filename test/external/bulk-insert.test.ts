/**
 * The bulk copy path with hostile row contents, against the real servers: quotes, backslashes,
 * tabs, newlines, non-ASCII text, escapes jsonb refuses, invalid UTF-8, malformed JSON, JSON that is
 * not an object, and big bodies whose JSON only the server checks. Every body comes back byte for
 * byte (restore into SQLite), and the JSON copy is there exactly when the engine can hold it.
 * Then values too big to hold (read in chunks, over 8 MB): escapes on the chunk edges, attachments
 * cut out chunk by chunk, bodies left large after the cut (PostgreSQL streams them into their own
 * COPY), a large message; the same bytes come back.
 */
import { createHash } from 'node:crypto';
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

const MB = 1024 * 1024;
/** JSON text escapes of every kind, 29 bytes: repeated, the 1 MiB chunk edges fall inside them. */
const ESCAPED = 'a\\"b\\\\c\\u00e9\\n\\t\\/ \\ud83d\\ude00';
const escapedText = (bytes: number): string => ESCAPED.repeat(Math.ceil(bytes / ESCAPED.length));
/** A "PDF" of `bytes` deterministic bytes, base64 (canonical: its chunks are stored decoded). */
const pdfBase64 = (bytes: number, seed: number): string => Buffer.from(Array.from({ length: bytes }, (_, i) => (i * 151 + seed) & 0xff)).toString('base64');
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Each attachment stored whole: its row complete, its chunks adding up to its bytes. */
async function expectStored(url: string, attachments: readonly (readonly [string, number])[]): Promise<void> {
  for (const [sha256, bytes] of attachments) {
    const [stored] = await serverQuery<{ bytes: number; complete: number; n: number }>(
      url,
      `SELECT a.bytes, a.complete, (SELECT SUM(octet_length(c.data)) FROM sk_attachment_chunk c WHERE c.sha256 = a.sha256) AS n FROM sk_attachment a WHERE a.sha256 = '${sha256}'`,
    );
    expect([Number(stored?.bytes), Number(stored?.complete), Number(stored?.n)]).toEqual([bytes, 1, bytes]);
  }
}

/** [part id, its data]; which of the copy's paths each one takes is in its name. */
const LARGE_PARTS: [string, string][] = [
  ['prt_l1_text_streamed', `{"type":"text","text":"${escapedText(10 * MB)}"}`],
  ['prt_l2_pdf_small_body', `{"type":"file","mime":"application/pdf","text":"${escapedText(4096)}","url":"data:application/pdf;base64,${pdfBase64(7 * MB, 1)}","after":"${escapedText(100)}"}`],
  ['prt_l3_pdf_large_body', `{"type":"file","text":"${escapedText(9 * MB)}","url":"data:application/pdf;base64,${pdfBase64(2 * MB, 2)}","small":"data:image/png;base64,${pdfBase64(600, 3)}"}`],
  ['prt_l4_refused_escape', `{"type":"text","text":"${escapedText(9 * MB)}\\u0000"}`],
  ['prt_l5_malformed', `{"type":"text","text":"${escapedText(9 * MB)}`],
];

/** A source holding `parts` (of LARGE_PARTS) and a message of `messageBytes` of escaped text. */
function largeDatabase(path: string, parts: readonly [string, string][], messageBytes: number): void {
  const db = emptyOpenCodeDb(path);
    insertSession(db, 'ses_large0000001', 1000, 2000);
    db.prepare('INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?, ?, ?, ?, ?)').run(
      'msg_l1',
      'ses_large0000001',
      1000,
      1000,
      `{"role":"user","note":"${escapedText(messageBytes)}"}`,
    );
    const part = db.prepare('INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?, ?, ?, ?, ?, ?)');
    parts.forEach(([id, data], i) => part.run(id, 'msg_l1', 'ses_large0000001', 1000 + i, 1000 + i, data));
    db.close();
}

describe('values read in chunks', () => {
  // MySQL takes a value as a bound parameter inside a packet of at most max_allowed_packet (16 MB by
  // default, the value escaped): only the PDF whose body is small once cut goes there.
  const cases = [
    { backend: 'postgres' as const, parts: LARGE_PARTS, messageBytes: 9 * MB },
    { backend: 'mysql' as const, parts: LARGE_PARTS.filter(([id]) => id === 'prt_l2_pdf_small_body'), messageBytes: 1000 },
  ];
  for (const { backend, parts, messageBytes } of cases) {
    describe(backend, () => {
      let database: FreshDatabase;
      const largeSource = join(dir, `large-${backend}.db`);
      beforeAll(async () => {
        largeDatabase(largeSource, parts, messageBytes);
        database = await freshDatabase(backend);
      });
      afterAll(async () => {
        await database?.drop();
      });

      it('migrates them verified, attachments cut out, and restores the same bytes', async () => {
        const result = await migrateTo({ db: largeSource, to: database.url });
        expect(result.verified).toBe(true);
        expect(result.parts).toBe(parts.length);
        const rows = await serverQuery<{ id: string; n: number; has_data: boolean | number; attachments: string | null }>(
          database.url,
          'SELECT id, octet_length(body) AS n, data IS NOT NULL AS has_data, attachments FROM sk_part ORDER BY id',
        );
        expect(rows.map((r) => r.id)).toEqual(parts.map(([id]) => id));
        const byId = new Map(rows.map((r) => [r.id, r]));
        // No JSON copy of a body over 1 MB on either engine; a cut body that small has one where the engine takes it.
        for (const r of rows) if (Number(r.n) > MB) expect(Boolean(r.has_data)).toBe(false);
        if (backend === 'mysql') expect(Boolean(byId.get('prt_l2_pdf_small_body')?.has_data)).toBe(true);
        // The PDFs are cut out: the body keeps the rest; the chunks hold the decoded bytes.
        expect(Number(byId.get('prt_l2_pdf_small_body')?.n)).toBeLessThan(64 * 1024);
        const pdf = [sha(Buffer.from(pdfBase64(7 * MB, 1), 'base64')), 7 * MB] as const;
        if (backend === 'mysql') {
          await expectStored(database.url, [pdf]);
        } else {
        const l3 = LARGE_PARTS[2]?.[1] as string;
        expect(Number(byId.get('prt_l3_pdf_large_body')?.n)).toBe(Buffer.byteLength(l3) - pdfBase64(2 * MB, 2).length - pdfBase64(600, 3).length);
        const spans = JSON.parse(byId.get('prt_l3_pdf_large_body')?.attachments ?? '[]') as { s: string; n: number }[];
        expect(spans.map((s) => [s.s, s.n])).toEqual([
          [sha(Buffer.from(pdfBase64(2 * MB, 2), 'base64')), 2 * MB],
          [sha(Buffer.from(pdfBase64(600, 3), 'base64')), 600],
        ]);
          await expectStored(database.url, [pdf, ...spans.map((s) => [s.s, s.n] as const)]);
        }
        const target = join(dir, `restored-large-${backend}.db`);
        emptyOpenCodeDb(target).close();
        const restored = await restoreFrom({ db: target, from: database.url, roots: ['ses_large0000001'] });
        expect(restored.copiedIds).toEqual(['ses_large0000001']);
        expect(rowsDigest(target)).toBe(rowsDigest(largeSource));
      }, 120_000);

      it('runs again over an interrupted copy without duplicating anything', async () => {
        await serverQuery(database.url, "UPDATE sk_session SET complete = 0 WHERE id = 'ses_large0000001'");
        const result = await migrateTo({ db: largeSource, to: database.url });
        expect(result.verified).toBe(true);
        const [counts] = await serverQuery<{ parts: number; messages: number }>(
          database.url,
          "SELECT (SELECT COUNT(*) FROM sk_part) AS parts, (SELECT COUNT(*) FROM sk_message) AS messages",
        );
        expect([Number(counts?.parts), Number(counts?.messages)]).toEqual([parts.length, 1]);
      }, 120_000);
    });
  }
});
