/**
 * Our part index beside the attachment cache, and the chunked read paths it serves: stats and
 * pages come out the same with and without it and with and without the chunk extension; a part
 * the index knows in this version is not read again (its facts are taken as filed), a changed,
 * added or deleted part is, and a rowid that now names another part never borrows its facts;
 * an unchanged file is answered from the memo; a large part's page is read around its payloads
 * when the index knows where they are, and wholly when what it knows turns out wrong.
 */
import Database from 'better-sqlite3';
import { chmodSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { SqliteReader } from '../../src/store/sqlite/sqlite-reader.js';
import { emptyOpenCodeDb, insertMessage, insertRawPart, insertSession, tempDir } from '../helpers/env.js';

const dir = tempDir('sk-part-index-');
let serial = 0;
const MB = 1024 * 1024;
const b64 = (n: number, seed: number): string => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff)).toString('base64');

/** A session with small parts, a 1.5 MB file part (filename after the URL) and a 2 MB tool part with two images and a long output. */
function makeDb(): string {
  const path = join(dir, `opencode-${serial++}.db`);
  const db = emptyOpenCodeDb(path);
  insertSession(db, 'ses_a', 1, 10);
  insertMessage(db, 'msg_a', 'ses_a', 1);
  insertRawPart(db, 'prt_small', 'msg_a', 'ses_a', 2, JSON.stringify({ type: 'text', text: 'hello' }));
  insertRawPart(db, 'prt_img', 'msg_a', 'ses_a', 3, JSON.stringify({ type: 'file', mime: 'image/png', filename: 'small.png', url: `data:image/png;base64,${b64(3000, 1)}` }));
  insertRawPart(db, 'prt_pdf', 'msg_a', 'ses_a', 4, JSON.stringify({ type: 'file', mime: 'application/pdf', url: `data:application/pdf;base64,${b64(1.5 * MB, 2)}`, filename: 'after-the-url.pdf' }));
  insertRawPart(
    db,
    'prt_tool',
    'msg_a',
    'ses_a',
    5,
    JSON.stringify({
      type: 'tool',
      tool: 'read',
      state: {
        status: 'completed',
        output: 'x'.repeat(600 * 1024),
        attachments: [
          { type: 'file', mime: 'image/png', url: `data:image/png;base64,${b64(MB, 3)}` },
          { type: 'file', mime: 'image/jpeg', url: `data:image/jpeg;base64,${b64(200 * 1024 + 1, 4)}` },
        ],
      },
    }),
  );
  db.close();
  return path;
}

function withEnv<T>(name: string, value: string, run: () => Promise<T>): Promise<T> {
  const before = process.env[name];
  process.env[name] = value;
  return run().finally(() => {
    if (before === undefined) delete process.env[name];
    else process.env[name] = before;
  });
}

async function readWith<T>(path: string, indexDir: string | null, read: (reader: SqliteReader) => Promise<T>): Promise<T> {
  const reader = SqliteReader.open(path, { indexDir });
  try {
    return await read(reader);
  } finally {
    await reader.close();
  }
}

const stats = (path: string, indexDir: string | null) => readWith(path, indexDir, (r) => r.stats({ largest: 5 }));
const show = (path: string, indexDir: string | null) => readWith(path, indexDir, (r) => r.showSession('ses_a', { limit: 10 }));

describe('the part index', () => {
  let db: string;
  let indexDir: string;
  beforeEach(() => {
    db = makeDb();
    indexDir = join(dir, `index-${serial++}`);
  });

  it('gives the same stats and pages as no index, and as whole-value reads', async () => {
    const plain = await stats(db, null);
    expect(plain.attachments).toMatchObject({ count: 4 });
    expect(plain.valueReads).toBe('chunked');
    const first = await stats(db, indexDir);
    const again = await stats(db, indexDir);
    const whole = await withEnv('SESSION_KEEPER_NO_CHUNK_EXTENSION', '1', () => stats(db, null));
    expect(whole.valueReads).toBe('whole');
    // The paths differ with the extension off; every figure stays the same.
    expect([plain.valueWrites, whole.valueWrites]).toEqual(['lazy', 'whole']);
    const { valueReads: _a, valueWrites: _c, ...firstRest } = first;
    const { valueReads: _b, valueWrites: _d, ...wholeRest } = whole;
    expect(first).toEqual(plain);
    expect(again).toEqual(plain);
    expect(firstRest).toEqual(wholeRest);
    expect(readdirSync(indexDir).filter((name) => name.endsWith('.db'))).toHaveLength(1);

    const page = await show(db, null);
    expect(await show(db, indexDir)).toEqual(page); // indexed by the stats above: read around the payloads
    expect(await withEnv('SESSION_KEEPER_NO_CHUNK_EXTENSION', '1', () => show(db, null))).toEqual(page);
    const parts = page.messages[0]?.parts ?? [];
    expect(parts.find((p) => p['id'] === 'prt_pdf')?.['attachment']).toEqual({ ref: 'prt_pdf', mime: 'application/pdf', filename: 'after-the-url.pdf', bytes: 1.5 * MB });
    expect(JSON.stringify(parts.find((p) => p['id'] === 'prt_tool'))).toContain('[session-keeper: cut, 614400 bytes in all]');
  });

  it('takes the facts of a part it knows in this version as filed, and reads again one that changed', async () => {
    await stats(db, indexDir);
    const reader = SqliteReader.open(db, { indexDir });
    const file = reader.index?.path as string;
    await reader.close();
    // Doctored facts for an unchanged part are believed (the part is not read again)...
    const index = new Database(file);
    index.prepare("UPDATE sk_part_facts SET attachments = 7, decoded = 7 WHERE id = 'prt_img'").run();
    index.prepare('DELETE FROM sk_memo').run();
    index.close();
    const doctored = await stats(db, indexDir);
    expect(doctored.attachments.count).toBe(4 - 1 + 7);
    // ...until the part changes: then it is read, and the facts are right again.
    const conn = new Database(db);
    conn.prepare("UPDATE part SET time_updated = 99 WHERE id = 'prt_img'").run();
    conn.prepare("DELETE FROM part WHERE id = 'prt_tool'").run();
    insertRawPart(conn, 'prt_new', 'msg_a', 'ses_a', 6, JSON.stringify({ type: 'file', mime: 'text/plain', url: 'data:text/plain,hi%20there' }));
    conn.close();
    const fresh = await stats(db, indexDir);
    expect(fresh.attachments).toEqual((await stats(db, null)).attachments);
    expect(fresh.attachments.count).toBe(3);
  });

  it('never lends one part the facts of another that had its rowid (rows renumbered by VACUUM)', async () => {
    // Same time_updated and size, one with a data URL and one without: only the id tells them apart.
    const conn = new Database(db);
    insertRawPart(conn, 'prt_with', 'msg_a', 'ses_a', 7, JSON.stringify({ type: 'file', url: 'data:a/b;base64,QUJD' }));
    conn.close();
    const before = await stats(db, indexDir);
    const reuse = new Database(db);
    const row = reuse.prepare("SELECT rowid FROM part WHERE id = 'prt_with'").pluck().get() as number;
    reuse.prepare("DELETE FROM part WHERE id = 'prt_with'").run();
    reuse
      .prepare("INSERT INTO part (rowid, id, message_id, session_id, time_created, time_updated, data) VALUES (?, 'prt_without', 'msg_a', 'ses_a', 7, 7, ?)")
      .run(row, JSON.stringify({ type: 'file', url: 'xata:a/b;base64,QUJD' }));
    reuse.close();
    const after = await stats(db, indexDir);
    expect(after.attachments.count).toBe(before.attachments.count - 1);
    expect(after).toEqual(await stats(db, null));
    const vacuum = new Database(db);
    vacuum.prepare("DELETE FROM part WHERE id IN ('prt_small', 'prt_img')").run();
    vacuum.exec('VACUUM');
    vacuum.close();
    expect(await stats(db, indexDir)).toEqual(await stats(db, null));
    expect(await show(db, indexDir)).toEqual(await show(db, null));
  });

  it('answers an unchanged file from the memo, and a changed one from the file', async () => {
    const first = await stats(db, indexDir);
    const reader = SqliteReader.open(db, { indexDir });
    const file = reader.index?.path as string;
    await reader.close();
    const index = new Database(file);
    const memo = index.prepare("SELECT value FROM sk_memo WHERE name = 'stats'").pluck().get() as string;
    index.prepare("UPDATE sk_memo SET value = ? WHERE name = 'stats'").run(memo.replace(`"sessions":${first.sessions}`, '"sessions":4242'));
    index.close();
    expect((await stats(db, indexDir)).sessions).toBe(4242); // nothing read: the file is as it was
    const conn = new Database(db);
    insertSession(conn, 'ses_b', 2, 20);
    conn.close();
    expect((await stats(db, indexDir)).sessions).toBe(2);
  });

  it('reads a large part wholly when the index is wrong about where its payloads are', async () => {
    const page = await show(db, null);
    await stats(db, indexDir);
    const reader = SqliteReader.open(db, { indexDir });
    const file = reader.index?.path as string;
    await reader.close();
    const index = new Database(file);
    // The first image said to end where the second does: read as filed, the skip would swallow
    // the text between them and the page would show one attachment where there are two.
    const spans = JSON.parse(index.prepare("SELECT spans FROM sk_part_facts WHERE id = 'prt_tool'").pluck().get() as string) as number[][];
    expect(spans).toHaveLength(2);
    (spans[0] as number[])[2] = (spans[1] as number[])[2] as number;
    index.prepare("UPDATE sk_part_facts SET spans = ? WHERE id = 'prt_tool'").run(JSON.stringify(spans));
    index.close();
    expect(await show(db, indexDir)).toEqual(page);
  });

  it('works without a usable index folder (read-only), only slower', async () => {
    const locked = join(dir, `locked-${serial++}`);
    mkdirSync(locked, { mode: 0o500 });
    chmodSync(locked, 0o500);
    const expected = await stats(db, null);
    // Root ignores permissions: point the index at a file instead, which no folder can be made under.
    const unusable = process.getuid?.() === 0 ? join(db, 'not-a-folder') : locked;
    expect(await stats(db, unusable)).toEqual(expected);
    expect(await show(db, unusable)).toEqual(await show(db, null));
  });

  it('decodes a large attachment through chunks, with the filename read around the payload', async () => {
    const cache = join(dir, `cache-${serial++}`);
    const chunked = await readWith(db, indexDir, (r) => r.extractAttachment('prt_pdf', cache));
    const whole = await withEnv('SESSION_KEEPER_NO_CHUNK_EXTENSION', '1', () => readWith(db, null, (r) => r.extractAttachment('prt_pdf', cache)));
    expect(chunked).toEqual(whole);
    expect(chunked).toMatchObject({ bytes: 1.5 * MB, mime: 'application/pdf', filename: 'after-the-url.pdf' });
    const tool = await readWith(db, indexDir, (r) => r.extractAttachment('prt_tool.1', cache));
    expect(tool).toMatchObject({ bytes: 200 * 1024 + 1, mime: 'image/jpeg', filename: null });
    await expect(readWith(db, indexDir, (r) => r.extractAttachment('prt_tool.2', cache))).rejects.toThrow(/has 2 attachments, no number 2/);
    expect(readdirSync(join(cache, 'tmp'))).toEqual([]);
  });
});
