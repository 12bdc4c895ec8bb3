/**
 * Event rows whose `data` looks like JSON but is not (SQLite's json_valid decides, in the export's
 * SELECT): kept as JSON strings, so the archive stays strict JSON, and restored byte for byte;
 * and rows of mixed types (a row's TEXT values come from SQLite as one BLOB, cut by their lengths).
 */
import Database from 'better-sqlite3';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { archiveSessions, restoreArchive } from '../../src/main/archives.js';
import { emptyOpenCodeDb, insertMessage, insertSession, tempDir } from '../helpers/env.js';

const DATA = ['{"n":1}', '[1,{"a":[]}]', '{"a":tru}', '{"a":"x\ny"}', '[1 2]', '{}', 'plain text', '{"\u00e9":"\u00e9"}'];

describe('event rows with JSON-looking text', () => {
  it('embeds only valid JSON raw, keeps the rest as strings, and restores every value exactly', async () => {
    const dir = tempDir('sk-archive-json-text-');
    const source = join(dir, 'source.db');
    const db = emptyOpenCodeDb(source);
    insertSession(db, 'ses_j', 1, 1);
    insertMessage(db, 'msg_j', 'ses_j', 1);
    db.prepare('INSERT INTO event_sequence (aggregate_id, seq) VALUES (?, 0)').run('ses_j');
    const event = db.prepare('INSERT INTO event (id, aggregate_id, seq, type, data) VALUES (?, ?, ?, ?, ?)');
    DATA.forEach((data, n) => event.run(`evt_${n}`, 'ses_j', n, 'test', data));
    // A message whose text only looks like a JSON object: kept whole as a string (SQLite's json_valid said no).
    db.prepare('INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?, ?, ?, ?, ?)').run('msg_k', 'ses_j', 2, 2, '{"role":tru}');
    db.close();

    const archive = join(dir, 'archive.json');
    await archiveSessions({ db: source, output: archive, cacheDir: join(dir, 'cache') });
    const parsed = JSON.parse(readFileSync(archive, 'utf8')) as { sessionKeeperTables: { table: string; rows: { data: unknown }[] }[] }[];
    const rows = parsed[0]?.sessionKeeperTables.find((t) => t.table === 'event')?.rows ?? [];
    expect(rows.map((r) => (typeof r.data === 'string' ? r.data : JSON.stringify(r.data)))).toEqual(DATA);
    expect(rows.map((r) => typeof r.data)).toEqual(['object', 'object', 'string', 'string', 'string', 'object', 'string', 'object']);
    const messages = (parsed[0] as unknown as { messages: { info: Record<string, unknown> }[] }).messages.map((m) => m.info);
    expect(messages.find((m) => m['id'] === 'msg_k')).toEqual({ id: 'msg_k', sessionID: 'ses_j', sessionKeeperRaw: '{"role":tru}' });

    const target = join(dir, 'target.db');
    emptyOpenCodeDb(target).close();
    await restoreArchive(target, archive);
    const restored = new Database(target, { readonly: true });
    const back = restored.prepare("SELECT data, typeof(data) AS type FROM event WHERE aggregate_id = 'ses_j' ORDER BY seq").all() as { data: string; type: string }[];
    const message = restored.prepare("SELECT data FROM message WHERE id = 'msg_k'").pluck().get();
    restored.close();
    expect(back).toEqual(DATA.map((data) => ({ data, type: 'text' })));
    expect(message).toBe('{"role":tru}');
  });

  it('restores every value of rows of mixed types with its type and bytes: BLOBs, empty and non-UTF-8 TEXT, numbers', async () => {
    const dir = tempDir('sk-archive-mixed-');
    const source = join(dir, 'source.db');
    const db = emptyOpenCodeDb(source);
    insertSession(db, 'ses_m', 1, 1);
    insertMessage(db, 'msg_m', 'ses_m', 1);
    db.prepare('INSERT INTO event_sequence (aggregate_id, seq) VALUES (?, 0)').run('ses_m');
    db.exec(`INSERT INTO event (id, aggregate_id, seq, type, data) VALUES
      ('evt_0', 'ses_m', 0, '', '{"a":1}'),
      ('evt_1', 'ses_m', 1, 'blob', x'7b2261223a317d00ff'),
      ('evt_2', 'ses_m', 2, '42', CAST(x'c3287b7d' AS TEXT)),
      ('evt_3', 'ses_m', 3, 'é😀', ''),
      ('evt_4', 'ses_m', 4.5, x'', '[]')`);
    db.close();
    const dump = (path: string): unknown[] => {
      const conn = new Database(path, { readonly: true });
      const rows = conn.prepare("SELECT id, seq, typeof(seq) AS ts, hex(type) AS type, typeof(type) AS tt, hex(data) AS data, typeof(data) AS td FROM event WHERE aggregate_id = 'ses_m' ORDER BY seq").all();
      conn.close();
      return rows;
    };
    const archive = join(dir, 'archive.json');
    await archiveSessions({ db: source, output: archive, cacheDir: join(dir, 'cache') });
    JSON.parse(readFileSync(archive, 'utf8'));
    const target = join(dir, 'target.db');
    emptyOpenCodeDb(target).close();
    await restoreArchive(target, archive);
    expect(dump(target)).toEqual(dump(source));
    expect((dump(source) as { tt: string; td: string }[]).map((r) => `${r.tt}/${r.td}`)).toEqual(['text/text', 'text/blob', 'text/text', 'text/text', 'blob/text']);
  });
});
