/**
 * An archive export reads a page's parts as one Buffer from the extension's sk_pack_parts
 * (native/value_chunks.c) instead of row by row: every field of every part, its inline data
 * (byte for byte), its JSON verdict and the inline budget must come out as the row-by-row path
 * gives them, on a connection with the extension and on one without. A page holding a row the
 * packing does not vouch for (a REAL time, a NULL id) falls back to the row-by-row path whole.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openConnection, type SqliteConnection } from '../../src/store/sqlite/connection.js';
import { partsOfMessages, type PartRow } from '../../src/store/sqlite/rows.js';
import { Rng } from '../fixtures/rng.js';
import { emptyOpenCodeDb, insertMessage, insertSession, tempDir } from '../helpers/env.js';

const dir = tempDir('sk-packed-parts-');
const path = join(dir, 'opencode.db');
const INLINE_BYTES = 256 * 1024;
const INLINE_TOTAL = 8 * 1024 * 1024;

/** Part data of every kind the reading distinguishes, as the bytes stored (TEXT unless said). */
function partValues(rng: Rng): { data: Buffer | string | number | null; blob?: boolean }[] {
  const values: { data: Buffer | string | number | null; blob?: boolean }[] = [
    { data: '' },
    { data: '{}' },
    { data: '{"type":"text","text":"é 中文 😀"}' },
    { data: '{"type":"text",' },
    { data: Buffer.from('{"type":"text","text":"\xff\xfe"}', 'latin1') },
    { data: `{"type":"file","url":"data:image/png;base64,${randomBytes(150_000).toString('base64')}"}` },
    { data: `{"type":"tool","output":"${'x'.repeat(300_000)}"}` },
    { data: Buffer.from('{"blob":true}'), blob: true },
    { data: 42 },
  ];
  for (let i = 0; i < 200; i++) values.push({ data: JSON.stringify({ type: 'text', text: 'y'.repeat(rng.int(0, 2000)), n: i }) });
  // Enough 200 KB parts to pass the 8 MB inline budget within one page.
  for (let i = 0; i < 60; i++) values.push({ data: JSON.stringify({ type: 'file', url: `data:text/plain;base64,${'QUJD'.repeat(50_000)}`, i }) });
  return values;
}

function build(): { pages: string[][]; oddPage: string[] } {
  const db = emptyOpenCodeDb(path);
  const rng = new Rng(Buffer.from('packed-parts-seed-00000000000000'));
  const insert = db.prepare('INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?, ?, ?, ?, ?, ?)');
  const insertBlob = db.prepare('INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?, ?, ?, ?, ?, CAST(? AS BLOB))');
  const pages: string[][] = [];
  db.transaction(() => {
    insertSession(db, 'ses_packed', 1, 1);
    const messages: string[] = [];
    const values = partValues(rng);
    for (let m = 0; m < 40; m++) {
      const id = `msg_${String(m).padStart(3, '0')}`;
      insertMessage(db, id, 'ses_packed', 1000 + m);
      messages.push(id);
    }
    values.forEach((value, i) => {
      const messageId = messages[rng.int(0, messages.length - 1)] as string;
      // Equal times in places: the order within a message then falls to the id.
      const created = 5000 + rng.int(0, 50);
      (value.blob ? insertBlob : insert).run(`prt_${String(i).padStart(4, '0')}${i % 7 === 0 ? 'é' : ''}`, messageId, 'ses_packed', created, created + rng.int(0, 3), value.data);
    });
    pages.push(messages, messages.slice(0, 5), messages.slice(20), ['msg_none'], []);
    insertMessage(db, 'msg_odd', 'ses_packed', 9000);
    insert.run('prt_odd_0', 'msg_odd', 'ses_packed', 1.5, 2, '{"a":1}');
    insert.run('prt_odd_1', 'msg_odd', 'ses_packed', 3, 4, '{"a":2}');
  })();
  db.close();
  return { pages, oddPage: ['msg_odd', 'msg_001'] };
}

/** A part row with its data as hex, for deep equality. */
const comparable = (rows: Map<string, PartRow[]>): [string, unknown[]][] =>
  [...rows].map(([id, parts]) => [id, parts.map((p) => ({ ...p, data: p.data === null ? null : p.data.toString('hex'), isBuffer: p.data === null || Buffer.isBuffer(p.data) }))]);

describe('partsOfMessages packed by sk_pack_parts', () => {
  const { pages, oddPage } = build();
  const withExtension = openConnection(path);
  const previous = process.env['SESSION_KEEPER_NO_CHUNK_EXTENSION'];
  process.env['SESSION_KEEPER_NO_CHUNK_EXTENSION'] = '1';
  const without: SqliteConnection = openConnection(path);
  if (previous === undefined) delete process.env['SESSION_KEEPER_NO_CHUNK_EXTENSION'];
  else process.env['SESSION_KEEPER_NO_CHUNK_EXTENSION'] = previous;
  afterAll(() => {
    withExtension.db.close();
    without.db.close();
  });

  it.skipIf(withExtension.valueReads !== 'chunked')('gives every field, byte and verdict the row-by-row path gives, the budget included', () => {
    expect(without.valueReads).toBe('whole');
    let cut = 0;
    let inline = 0;
    for (const page of pages) {
      for (const checkJson of [true, false]) {
        const packed = partsOfMessages(withExtension, page, INLINE_BYTES, INLINE_TOTAL, checkJson, true);
        expect(comparable(packed)).toEqual(comparable(partsOfMessages(withExtension, page, INLINE_BYTES, INLINE_TOTAL, checkJson, false)));
        expect(comparable(packed)).toEqual(comparable(partsOfMessages(without, page, INLINE_BYTES, INLINE_TOTAL, checkJson, true)));
        for (const parts of packed.values()) {
          for (const part of parts) {
            if (part.data) inline++;
            else if (part.bytes <= INLINE_BYTES) cut++;
          }
        }
      }
    }
    // The budget cut some small rows, and many came inline.
    expect(cut).toBeGreaterThan(0);
    expect(inline).toBeGreaterThan(200);
  });

  it.skipIf(withExtension.valueReads !== 'chunked')('falls back to the rows for a page with a row it does not vouch for', () => {
    const packed = partsOfMessages(withExtension, oddPage, INLINE_BYTES, INLINE_TOTAL, true, true);
    expect(packed.get('msg_odd')?.map((p) => p.timeCreated)).toEqual([1.5, 3]);
    expect(comparable(packed)).toEqual(comparable(partsOfMessages(without, oddPage, INLINE_BYTES, INLINE_TOTAL, true, false)));
  });
});
