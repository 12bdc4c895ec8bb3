/**
 * Parts and messages over the export's inline limit are fetched alone, with SQLite's json_valid:
 * its yes embeds the value raw; its no is not final (JSON nested deeper than SQLite's 1000 levels
 * is still JSON to JSON.parse and our scanner, which decided before): such a value is embedded raw
 * as it was, while text that only looks like an object stays a string. Restored byte for byte.
 */
import Database from 'better-sqlite3';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { archiveSessions, restoreArchive } from '../../src/main/archives.js';
import { emptyOpenCodeDb, insertRawPart, insertSession, tempDir } from '../helpers/env.js';

const PAD = 'p'.repeat(300 * 1024);
const PARTS: Record<string, string> = {
  prt_valid: `{"type":"text","text":"${PAD}"}`,
  prt_deep: `{"type":"text","text":"${PAD}","deep":${'['.repeat(1100)}1${']'.repeat(1100)}}`,
  prt_deep_large: `{"type":"text","text":"${PAD.repeat(4)}","deep":${'['.repeat(1100)}1${']'.repeat(1100)}}`,
  prt_not_json: `{"type":tru,"text":"${PAD}"}`,
};

describe('values fetched alone, with SQLite judging their JSON', () => {
  it('embeds what is JSON raw (deeper than SQLite parses too), keeps the rest a string, and restores each exactly', async () => {
    const dir = tempDir('sk-archive-fetched-json-');
    const source = join(dir, 'source.db');
    const db = emptyOpenCodeDb(source);
    insertSession(db, 'ses_f', 1, 1);
    db.prepare('INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?, ?, ?, ?, ?)').run('msg_f', 'ses_f', 1, 1, `{"role":"user","pad":"${PAD}"}`);
    Object.entries(PARTS).forEach(([id, data], n) => insertRawPart(db, id, 'msg_f', 'ses_f', n + 1, data));
    expect(db.prepare("SELECT json_valid(data) FROM part WHERE id = 'prt_deep'").pluck().get()).toBe(0);
    db.close();

    const archive = join(dir, 'archive.json');
    await archiveSessions({ db: source, output: archive, cacheDir: join(dir, 'cache') });
    const text = readFileSync(archive, 'utf8');
    const parsed = JSON.parse(text) as { messages: { info: Record<string, unknown>; parts: Record<string, unknown>[] }[] }[];
    const message = parsed[0]?.messages[0];
    expect(message?.info['pad']).toBe(PAD);
    const parts = new Map((message?.parts ?? []).map((p) => [p['id'], p]));
    expect(parts.get('prt_valid')?.['text']).toBe(PAD);
    expect(Array.isArray(parts.get('prt_deep')?.['deep'])).toBe(true);
    expect(Array.isArray(parts.get('prt_deep_large')?.['deep'])).toBe(true);
    expect(parts.get('prt_not_json')?.['sessionKeeperRaw']).toBe(PARTS['prt_not_json']);

    const target = join(dir, 'target.db');
    emptyOpenCodeDb(target).close();
    await restoreArchive(target, archive);
    const restored = new Database(target, { readonly: true });
    const back = Object.fromEntries(restored.prepare('SELECT id, data FROM part').raw().all() as [string, string][]);
    restored.close();
    expect(back).toEqual(PARTS);
  });
});
