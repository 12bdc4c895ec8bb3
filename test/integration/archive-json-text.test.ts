/**
 * Event rows whose `data` looks like JSON but is not (SQLite's json_valid decides, in the export's
 * SELECT): kept as JSON strings, so the archive stays strict JSON, and restored byte for byte.
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
    db.close();

    const archive = join(dir, 'archive.json');
    await archiveSessions({ db: source, output: archive, cacheDir: join(dir, 'cache') });
    const parsed = JSON.parse(readFileSync(archive, 'utf8')) as { sessionKeeperTables: { table: string; rows: { data: unknown }[] }[] }[];
    const rows = parsed[0]?.sessionKeeperTables.find((t) => t.table === 'event')?.rows ?? [];
    expect(rows.map((r) => (typeof r.data === 'string' ? r.data : JSON.stringify(r.data)))).toEqual(DATA);
    expect(rows.map((r) => typeof r.data)).toEqual(['object', 'object', 'string', 'string', 'string', 'object', 'string', 'object']);

    const target = join(dir, 'target.db');
    emptyOpenCodeDb(target).close();
    await restoreArchive(target, archive);
    const restored = new Database(target, { readonly: true });
    const back = restored.prepare("SELECT data, typeof(data) AS type FROM event WHERE aggregate_id = 'ses_j' ORDER BY seq").all() as { data: string; type: string }[];
    restored.close();
    expect(back).toEqual(DATA.map((data) => ({ data, type: 'text' })));
  });
});
