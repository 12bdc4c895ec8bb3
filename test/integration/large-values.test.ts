/**
 * Large values (over the 8 MB a value is chunked from) through archive and restore: the same
 * archive bytes whether the value went through sk_chunks or whole, rows restored byte for byte
 * and with their type on each write path (lazy zeros filled through a blob handle, SQLite reading
 * the spill file, a bound Buffer), a row that is not JSON kept as a string across chunk
 * boundaries that cut UTF-8 sequences, and the extension's write functions refusing what they
 * must: a length that differs, use from a view of a hostile file.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { archiveSessions, restoreArchive } from '../../src/main/archives.js';
import { VALUE_CHUNKS_LIBRARY } from '../../src/store/sqlite/value-chunks.js';
import { emptyOpenCodeDb, insertMessage, insertRawPart, insertSession, tempDir } from '../helpers/env.js';

const MB = 1024 * 1024;
const dir = tempDir('sk-large-values-');
const source = join(dir, 'source.db');
const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

/** A 12 MB part that is a JSON object, and a 10 MB one that is not JSON, with 3-byte characters across every MiB. */
const objectPart = `{"type":"file","mime":"application/pdf","url":"data:application/pdf;base64,${Buffer.alloc(9 * MB, 7).toString('base64')}"}`;
const notJsonPart = `not json: ${'€'.repeat((10 * MB) / 3)}`;
const messageData = JSON.stringify({ role: 'user', time: { created: 1 }, note: 'x'.repeat(9 * MB) });
/** The event log's copy of the object part, and an event whose data is text that is not JSON. */
const eventData = JSON.stringify({ part: JSON.parse(objectPart) as unknown });
/** A 9 MB BLOB and 9 MB of TEXT that is not UTF-8: archived as base64, restored through a spill file each. */
const blobData = Buffer.alloc(9 * MB, 0xab);
const notUtf8Text = Buffer.alloc(9 * MB, 0xff);
/** A message that is not JSON: kept as a string, restored through a spill file. */
const notJsonMessage = `plain text "quoted" \\ ${'ü'.repeat((9 * MB) / 2)}`;

function rows(path: string): { id: string; type: string; sha256: string }[] {
  const db = new Database(path, { readonly: true });
  try {
    const found = db
      .prepare(
        'SELECT id, typeof(data) AS type, CAST(data AS BLOB) AS data FROM part UNION ALL SELECT id, typeof(data), CAST(data AS BLOB) FROM message UNION ALL SELECT id, typeof(data), CAST(data AS BLOB) FROM event ORDER BY id',
      )
      .all() as { id: string; type: string; data: Buffer }[];
    return found.map((r) => ({ id: r.id, type: r.type, sha256: sha(r.data) }));
  } finally {
    db.close();
  }
}

function emptyTarget(name: string, setup?: (db: Database.Database) => void): string {
  const path = join(dir, `${name}.db`);
  const db = emptyOpenCodeDb(path);
  setup?.(db);
  db.close();
  return path;
}

beforeAll(() => {
  const db = emptyOpenCodeDb(source);
  insertSession(db, 'ses_big', 1, 2);
  db.prepare('INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?, ?, 1, 1, ?)').run('msg_big', 'ses_big', messageData);
  insertRawPart(db, 'prt_object', 'msg_big', 'ses_big', 1, objectPart);
  insertRawPart(db, 'prt_raw', 'msg_big', 'ses_big', 2, notJsonPart);
  insertRawPart(db, 'prt_small', 'msg_big', 'ses_big', 3, '{"type":"text","text":"small"}');
  db.prepare('INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?, ?, 2, 2, ?)').run('msg_text', 'ses_big', notJsonMessage);
  db.prepare("INSERT INTO event_sequence (aggregate_id, seq) VALUES ('ses_big', 4)").run();
  const event = db.prepare("INSERT INTO event (id, aggregate_id, seq, type, data) VALUES (?, 'ses_big', ?, ?, ?)");
  event.run('evt_1', 1, 'message.part.updated.1', eventData);
  event.run('evt_2', 2, 'session.note', notJsonPart);
  event.run('evt_3', 3, 'session.blob', blobData);
  db.prepare("INSERT INTO event (id, aggregate_id, seq, type, data) VALUES ('evt_4', 'ses_big', 4, 'session.bytes', CAST(? AS TEXT))").run(notUtf8Text);
  db.close();
});

afterEach(() => {
  delete process.env['SESSION_KEEPER_NO_CHUNK_EXTENSION'];
});

describe('large values through archive and restore', () => {
  const chunkedArchive = join(dir, 'chunked.json');
  const wholeArchive = join(dir, 'whole.json');

  it('writes the same archive through sk_chunks as through the whole-value path', async () => {
    await archiveSessions({ db: source, output: chunkedArchive, cacheDir: join(dir, 'cache') });
    process.env['SESSION_KEEPER_NO_CHUNK_EXTENSION'] = '1';
    await archiveSessions({ db: source, output: wholeArchive, cacheDir: join(dir, 'cache') });
    expect(sha(readFileSync(chunkedArchive))).toBe(sha(readFileSync(wholeArchive)));
    // The row that is not JSON is kept as a string, the object as its own bytes.
    const text = readFileSync(chunkedArchive, 'utf8');
    expect(text).toContain(`"sessionKeeperRaw":${JSON.stringify(notJsonPart).slice(0, 40)}`);
    expect(text).toContain(objectPart.slice(1, 80));
    expect(text).toContain(eventData.slice(0, 80)); // the event's object embedded raw
    expect(rows(source).map((r) => `${r.id} ${r.type}`)).toEqual(['evt_1 text', 'evt_2 text', 'evt_3 blob', 'evt_4 text', 'msg_big text', 'msg_text text', 'prt_object text', 'prt_raw text', 'prt_small text']);
  });

  const paths: [string, (db: Database.Database) => void, boolean][] = [
    ['lazy zeros filled through a blob handle', () => undefined, false],
    // A trigger would see the zeros: beside one, SQLite reads the spill file into the value instead.
    ['SQLite reading the spill file (a trigger on part)', (db) => db.exec("CREATE TABLE seen(id TEXT, bytes INTEGER, head TEXT); CREATE TRIGGER part_seen AFTER INSERT ON part BEGIN INSERT INTO seen VALUES (NEW.id, octet_length(NEW.data), substr(NEW.data, 1, 9)); END"), false],
    ['a bound Buffer (no extension)', () => undefined, true],
  ];
  for (const [name, setup, whole] of paths) {
    it(`restores every row byte for byte and as TEXT: ${name}`, async () => {
      const target = emptyTarget(name.replace(/\W+/g, '-'), setup);
      if (whole) process.env['SESSION_KEEPER_NO_CHUNK_EXTENSION'] = '1';
      const result = await restoreArchive(target, chunkedArchive);
      expect(result.imported.map((s) => s.id)).toEqual(['ses_big']);
      expect(rows(target)).toEqual(rows(source));
      expect(rows(target).filter((r) => r.type !== 'text').map((r) => r.id)).toEqual(['evt_3']);
      if (name.includes('trigger')) {
        const db = new Database(target, { readonly: true });
        expect(db.prepare("SELECT bytes, head FROM seen WHERE id = 'prt_object'").get()).toEqual({ bytes: Buffer.byteLength(objectPart), head: objectPart.slice(0, 9) });
        db.close();
      }
    });
  }
});

describe('the extension write functions', () => {
  const open = (): Database.Database => {
    const db = new Database(':memory:');
    db.loadExtension(VALUE_CHUNKS_LIBRARY);
    db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, data TEXT NOT NULL)');
    return db;
  };

  it('sk_text_zeros is TEXT; sk_blob_write_file fills it, reads it back, and refuses a file too short', () => {
    const db = open();
    const file = join(dir, 'value.bin');
    writeFileSync(file, Buffer.concat([Buffer.from('HEAD'), Buffer.from('{"é":"' + 'z'.repeat(3 * MB) + '"}')]));
    const bytes = readFileSync(file).length - 4;
    const { lastInsertRowid } = db.prepare('INSERT INTO t(data) VALUES (sk_text_zeros(?))').run(bytes);
    expect(db.prepare('SELECT sk_blob_write_file(?, ?, ?, ?, ?)').pluck().get('t', 'data', lastInsertRowid, file, 4)).toBe(bytes);
    const row = db.prepare('SELECT typeof(data) AS type, data FROM t').get() as { type: string; data: string };
    expect(row.type).toBe('text');
    expect(sha(row.data)).toBe(sha(readFileSync(file).subarray(4)));
    expect(() => db.prepare('SELECT sk_blob_write_file(?, ?, ?, ?, ?)').pluck().get('t', 'data', lastInsertRowid, file, 5)).toThrow(/shorter than the value/);
    db.close();
  });

  it('sk_file_text reads a range of a file as TEXT and refuses a short one', () => {
    const db = open();
    const file = join(dir, 'text.bin');
    writeFileSync(file, 'xx{"a":"€"}');
    expect(db.prepare("SELECT typeof(sk_file_text(?, 2, 11)) AS type, sk_file_text(?, 2, 11) AS text").get(file, file)).toEqual({ type: 'text', text: '{"a":"€"}' });
    expect(() => db.prepare('SELECT sk_file_text(?, 2, 12)').get(file)).toThrow(/shorter/);
    db.close();
  });

  it('none of them can be used from a view or trigger of a hostile file', () => {
    const hostile = join(dir, 'hostile.db');
    const maker = new Database(hostile);
    maker.exec("CREATE TABLE t(data TEXT); CREATE VIEW v AS SELECT sk_file_text('/etc/hostname', 0, 1) AS x; CREATE VIEW z AS SELECT sk_text_zeros(3) AS x");
    maker.close();
    const db = new Database(hostile);
    db.loadExtension(VALUE_CHUNKS_LIBRARY);
    expect(() => db.prepare('SELECT * FROM v').get()).toThrow(/unsafe use of sk_file_text/);
    expect(() => db.prepare('SELECT * FROM z').get()).toThrow(/unsafe use of sk_text_zeros/);
    db.close();
  });
});
