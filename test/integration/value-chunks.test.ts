/**
 * valueChunks on real database files, through sk_chunks and through the whole-value fallback:
 * same bytes, same errors; one snapshot per read; the handle closed when the loop ends; a row
 * changed under the handle reported, not crashed on.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { SkError } from '../../src/core/errors.js';
import { findAttachments } from '../../src/core/part-scan.js';
import {
  VALUE_CHUNKS_LIBRARY,
  chunkedReadPath,
  chunkedReadsAvailable,
  decodeStoredAttachment,
  fdSink,
  findStoredAttachments,
  loadValueChunks,
  valueChunks,
  valueSha256,
  type RowKey,
} from '../../src/store/sqlite/value-chunks.js';
import { emptyOpenCodeDb, insertMessage, insertRawPart, insertSession, tempDir } from '../helpers/env.js';

const dir = tempDir('sk-value-chunks-');
const dbPath = join(dir, 'opencode.db');
const payload = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 131 + 7) & 0xff));
const partJson = `{"type":"file","mime":"application/pdf","filename":"é.pdf","url":"data:application/pdf;base64,${payload.toString('base64')}"}`;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

beforeAll(() => {
  const db = emptyOpenCodeDb(dbPath);
  insertSession(db, 'ses_a', 1, 2);
  insertMessage(db, 'msg_a', 'ses_a', 1);
  insertRawPart(db, 'prt_big', 'msg_a', 'ses_a', 1, partJson);
  insertRawPart(db, 'prt_empty', 'msg_a', 'ses_a', 2, '');
  db.exec("CREATE TABLE blobs(id TEXT PRIMARY KEY, data BLOB); INSERT INTO blobs VALUES ('b1', randomblob(100000)), ('b0', NULL), ('bi', 42)");
  db.exec("CREATE TABLE norowid(id TEXT PRIMARY KEY, data TEXT) WITHOUT ROWID; INSERT INTO norowid VALUES ('x', 'abc')");
  db.close();
});

/** Two read-only connections: one with the extension, one on the fallback. */
function connections(): { chunked: Database.Database; whole: Database.Database; close(): void } {
  const chunked = new Database(dbPath, { readonly: true });
  const whole = new Database(dbPath, { readonly: true });
  expect(loadValueChunks(chunked), `${VALUE_CHUNKS_LIBRARY} was not built: run npm run build`).toBe(true);
  return { chunked, whole, close: () => [chunked, whole].forEach((d) => d.close()) };
}

const errorOf = (run: () => unknown): string => {
  try {
    run();
    return 'no error';
  } catch (error) {
    return error instanceof SkError ? `${error.code}: ${error.message.replace(/ in \S+$/, '')}` : `not an SkError: ${String(error)}`;
  }
};

describe('valueChunks', () => {
  it('says which read path a connection uses', () => {
    const { chunked, whole, close } = connections();
    expect(chunkedReadsAvailable(whole)).toBe(false);
    expect(chunkedReadPath(whole)).toBe('whole');
    expect(chunkedReadPath(chunked)).toBe('chunked');
    expect(loadValueChunks(chunked)).toBe(true); // a second load is a no-op
    close();
  });

  it('gives the same bytes on both paths, in chunks of the size asked, by rowid and by id, whole and in ranges', () => {
    const { chunked, whole, close } = connections();
    const rowid = chunked.prepare("SELECT rowid FROM part WHERE id = 'prt_big'").pluck().get() as number;
    const expected = Buffer.from(partJson);
    for (const db of [chunked, whole]) {
      for (const row of [rowid, BigInt(rowid), { id: 'prt_big' }] as RowKey[]) {
        for (const chunkBytes of [1, 7, 4096, 65_536, expected.length, expected.length + 1]) {
          if (chunkBytes === 1 && typeof row !== 'number') continue; // 90k rows: once is enough
          const chunks = [...valueChunks(db, 'part', 'data', row, { chunkBytes })];
          expect(Buffer.concat(chunks).equals(expected)).toBe(true);
          expect(chunks.slice(0, -1).every((c) => c.length === chunkBytes)).toBe(true);
          expect(chunks.length).toBe(Math.ceil(expected.length / chunkBytes));
        }
      }
      for (const [start, stop] of [[0, 10], [5, 5], [100, 30_000], [90_000, undefined], [10, 99_999_999], [99_999_999, undefined]] as const) {
        const got = Buffer.concat([...valueChunks(db, 'part', 'data', { id: 'prt_big' }, { chunkBytes: 1000, start, ...(stop === undefined ? {} : { stop }) })]);
        expect(got.equals(expected.subarray(start, stop))).toBe(true);
      }
      const blob = Buffer.concat([...valueChunks(db, 'blobs', 'data', { id: 'b1' }, { chunkBytes: 333 })]);
      expect(blob.equals(chunked.prepare("SELECT data FROM blobs WHERE id = 'b1'").pluck().get() as Buffer)).toBe(true);
      expect([...valueChunks(db, 'part', 'data', { id: 'prt_empty' })]).toEqual([]);
    }
    close();
  });

  it('refuses the same things on both paths, with one line naming the row', () => {
    const { chunked, whole, close } = connections();
    for (const [run, expected] of [
      [(db: Database.Database) => [...valueChunks(db, 'part', 'data', 999_999)], 'not-found: no part row 999999'],
      [(db: Database.Database) => [...valueChunks(db, 'part', 'data', { id: 'prt_nope' })], 'not-found: no part prt_nope'],
      [(db: Database.Database) => [...valueChunks(db, 'blobs', 'data', { id: 'b0' })], 'internal: blobs.data of blobs b0 is null, not text or a blob'],
      [(db: Database.Database) => [...valueChunks(db, 'blobs', 'data', { id: 'bi' })], 'internal: blobs.data of blobs bi is integer, not text or a blob'],
      [(db: Database.Database) => valueChunks(db, 'part', 'data', 1, { chunkBytes: 0 }), 'usage: chunk size must be an integer from 1 to 268435456: 0'],
      [(db: Database.Database) => valueChunks(db, 'part"; DROP TABLE part; --', 'data', 1), 'usage'],
      [(db: Database.Database) => valueChunks(db, 'part', 'data', 1, { start: -1 }), 'usage: start must be a non-negative integer: -1'],
    ] as const) {
      const a = errorOf(() => run(chunked));
      expect(a.startsWith(expected), a).toBe(true);
      expect(errorOf(() => run(whole))).toBe(a);
    }
    expect(errorOf(() => [...valueChunks(chunked, 'nope', 'data', 1)])).toMatch(/^internal: .*no such table: nope/);
    close();
  });

  it('reads a WITHOUT ROWID table (no sqlite3_blob there) through the whole-value path instead of failing', () => {
    const { chunked, close } = connections();
    expect(Buffer.concat([...valueChunks(chunked, 'norowid', 'data', { id: 'x' }, { chunkBytes: 2 })]).toString()).toBe('abc');
    // sk_chunks itself refuses it, in SQLite's words.
    expect(() => chunked.prepare("SELECT data FROM sk_chunks('norowid', 'data', 1, 2)").all()).toThrow(/cannot open table without rowid: norowid/);
    close();
  });

  it('hashes, finds and decodes attachments the same as the whole-buffer code', () => {
    const { chunked, whole, close } = connections();
    const expected = Buffer.from(partJson);
    for (const db of [chunked, whole]) {
      expect(valueSha256(db, 'part', 'data', { id: 'prt_big' }, { chunkBytes: 999 })).toEqual({ sha256: sha(expected), bytes: expected.length });
      expect(findStoredAttachments(db, 'part', 'data', { id: 'prt_big' }, 'prt_big', { chunkBytes: 1001 })).toEqual(findAttachments(expected, 'prt_big'));
      const out = join(dir, `out-${chunkedReadPath(db)}.pdf`);
      const fd = openSync(out, 'w');
      const sink = fdSink(fd);
      const decoded = decodeStoredAttachment(db, 'part', 'data', { id: 'prt_big' }, { partId: 'prt_big', index: 0, sink }, { chunkBytes: 4097 });
      closeSync(fd);
      expect(decoded.bytes).toBe(payload.length);
      expect(sink.sha256()).toBe(sha(payload));
      expect(readFileSync(out).equals(payload)).toBe(true);
      expect(errorOf(() => decodeStoredAttachment(db, 'part', 'data', { id: 'prt_big' }, { partId: 'prt_big', index: 1, sink }))).toBe(
        'not-found: part prt_big has 1 attachment, no number 1',
      );
    }
    close();
  });

  it('fdSink.discard truncates the file back to where it started', () => {
    const out = join(dir, 'discard.bin');
    const fd = openSync(out, 'w');
    const sink = fdSink(fd);
    sink.write(Buffer.from('abc'));
    sink.discard();
    sink.write(Buffer.from('xy'));
    closeSync(fd);
    expect(readFileSync(out, 'utf8')).toBe('xy');
    expect(sink.bytes).toBe(2);
    expect(sink.sha256()).toBe(sha(Buffer.from('xy')));
  });

  it('stays on the fallback when SESSION_KEEPER_NO_CHUNK_EXTENSION=1', () => {
    const db = new Database(dbPath, { readonly: true });
    process.env['SESSION_KEEPER_NO_CHUNK_EXTENSION'] = '1';
    try {
      expect(loadValueChunks(db)).toBe(false);
      expect(chunkedReadPath(db)).toBe('whole');
    } finally {
      delete process.env['SESSION_KEEPER_NO_CHUNK_EXTENSION'];
      db.close();
    }
  });
});

describe('sk_chunks inside SQLite', () => {
  it('reads one snapshot: a commit by another connection during the read is not seen (WAL)', () => {
    const writer = new Database(dbPath);
    const reader = new Database(dbPath, { readonly: true });
    loadValueChunks(reader);
    const before = Buffer.from(partJson);
    const chunks: Buffer[] = [];
    let i = 0;
    for (const chunk of valueChunks(reader, 'part', 'data', { id: 'prt_big' }, { chunkBytes: 8192 })) {
      chunks.push(chunk);
      if (i++ === 2) writer.prepare("UPDATE part SET data = json_set(data, '$.filename', 'changed.pdf') WHERE id = 'prt_big'").run();
    }
    expect(Buffer.concat(chunks).equals(before)).toBe(true);
    // A new read sees the commit; put the row back for the other tests.
    expect(Buffer.concat([...valueChunks(reader, 'part', 'data', { id: 'prt_big' })]).toString()).toContain('changed.pdf');
    writer.prepare("UPDATE part SET data = ? WHERE id = 'prt_big'").run(partJson);
    reader.close();
    writer.close();
  });

  it('reports a row changed through the same connection during the read (SQLITE_ABORT) as an error, then works on', () => {
    const db = new Database(dbPath);
    loadValueChunks(db);
    db.unsafeMode(true); // better-sqlite3 refuses writes while iterating unless asked
    let error: unknown;
    try {
      let i = 0;
      for (const chunk of valueChunks(db, 'part', 'data', { id: 'prt_big' }, { chunkBytes: 8192 })) {
        expect(chunk.length).toBeGreaterThan(0);
        if (i++ === 1) db.prepare("UPDATE part SET time_updated = time_updated + 1 WHERE id = 'prt_big'").run();
      }
    } catch (caught) {
      error = caught;
    }
    db.unsafeMode(false);
    expect(error).toBeInstanceOf(SkError);
    expect((error as SkError).code).toBe('locked');
    expect((error as SkError).message).toMatch(/part prt_big changed while it was being read/);
    expect(valueSha256(db, 'part', 'data', { id: 'prt_big' }).sha256).toBe(sha(Buffer.from(partJson)));
    db.close();
  });

  it('closes the handle when the loop is left early: the read lock is gone (rollback journal)', () => {
    const path = join(dir, 'journal.db');
    const setup = new Database(path);
    setup.exec("CREATE TABLE t(id TEXT PRIMARY KEY, data TEXT); INSERT INTO t VALUES ('a', hex(randomblob(200000)))");
    setup.close();
    const reader = new Database(path, { readonly: true });
    loadValueChunks(reader);
    const writer = new Database(path, { timeout: 0 });
    const iterator = valueChunks(reader, 't', 'data', { id: 'a' }, { chunkBytes: 1000 });
    expect(iterator.next().done).toBe(false);
    // While the handle is open it holds a SHARED lock: a writer cannot commit.
    expect(() => writer.prepare("UPDATE t SET data = 'x'").run()).toThrow(/locked|busy/i);
    for (const chunk of iterator) if (chunk.length > 0) break;
    writer.prepare("UPDATE t SET data = 'x'").run();
    expect(Buffer.concat([...valueChunks(reader, 't', 'data', { id: 'a' })]).toString()).toBe('x');
    reader.close();
    writer.close();
  });

  it('never sorts chunks (ORDER BY seq is consumed) and cannot be used from a view', () => {
    const db = new Database(dbPath);
    loadValueChunks(db);
    const plan = db
      .prepare("EXPLAIN QUERY PLAN SELECT data FROM sk_chunks('part', 'data', 1, 4096) ORDER BY seq")
      .all() as { detail: string }[];
    expect(plan.map((p) => p.detail).join(';')).not.toMatch(/TEMP B-TREE/);
    db.close();
    // A view stored in a database file (which may come from anyone) cannot use it.
    const hostile = new Database(join(dir, 'hostile.db'));
    hostile.exec("CREATE TABLE t(data TEXT); INSERT INTO t VALUES ('secret')");
    hostile.exec("CREATE VIEW v AS SELECT data FROM sk_chunks('t', 'data', 1, 4096)");
    loadValueChunks(hostile);
    expect(() => hostile.prepare('SELECT * FROM v').all()).toThrow(/unsafe use of virtual table "sk_chunks"/);
    hostile.close();
  });
});
