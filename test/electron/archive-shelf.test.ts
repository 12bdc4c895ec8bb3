/**
 * Archives and history through the real utility process: after a clean-up its archive is listed
 * (sessions, size, date), its root sessions are shown as absent from the store, restoring one
 * brings exactly that tree back row for row, restoring all brings the rest, and the history
 * records the run. Names outside archiveDir are refused.
 */
import Database from 'better-sqlite3';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateFixture } from '../fixtures/generate.js';
import { startWebServer, type WebServer } from '../../dist/web/server.js';
import { tempDir } from '../helpers/env.js';

const dir = tempDir('sk-shelf-');
const db = join(dir, 'opencode.db');
const original = join(dir, 'original.db');
const archiveDir = join(dir, 'archive');
let server: WebServer;

beforeAll(async () => {
  generateFixture({ path: original, targetBytes: 3 * 1024 * 1024, rootSessions: 20, seed: 41, diffFiles: false });
  copyFileSync(original, db);
  const config = join(dir, 'opencode.jsonc');
  writeFileSync(config, `{ "session": { "archiveDir": ${JSON.stringify(archiveDir)} } }\n`);
  server = await startWebServer({ db, cacheDir: join(dir, 'cache'), configPath: config, token: 't', env: { ...process.env, XDG_DATA_HOME: join(dir, 'data'), XDG_CONFIG_HOME: join(dir, 'cfg') } });
});
afterAll(() => server.close());

/** Every row of a session tree, as stored, for "back exactly". */
function rowsOf(file: string, ids: readonly string[]): string {
  const conn = new Database(file, { readonly: true });
  try {
    const out: unknown[] = [];
    for (const id of ids) {
      out.push(conn.prepare('SELECT * FROM session WHERE id = ?').all(id));
      out.push(conn.prepare('SELECT * FROM message WHERE session_id = ? ORDER BY id').all(id));
      out.push(conn.prepare('SELECT * FROM part WHERE session_id = ? ORDER BY id').all(id));
    }
    return JSON.stringify(out, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString('base64') : v));
  } finally {
    conn.close();
  }
}

describe('archives and history', () => {
  it('lists the archive of a clean-up, restores one tree exactly, then all, and records the run', async () => {
    const plan = await server.client.request('plan', { policy: { maxSessions: 12 } });
    const outcome = await server.client.request('apply', { planId: plan.planId });
    expect(outcome.evicted).toHaveLength(8);
    const listed = await server.client.request('listArchives');
    expect(listed.archives).toHaveLength(1);
    const entry = listed.archives[0]!;
    expect(entry.path).toBe(outcome.archive);
    expect(entry.roots).toBe(8);
    expect(entry.sessions).toBe(plan.evict.reduce((n, e) => n + 1 + e.children.length, 0));
    expect(entry.bytes).toBeGreaterThan(0);
    expect(entry.error).toBeNull();

    const contents = await server.client.request('archiveContents', { name: entry.name });
    expect(contents.sessions.map((s) => s.id).sort()).toEqual(plan.evict.map((e) => e.id).sort());
    expect(contents.sessions.every((s) => !s.present)).toBe(true);

    const withKids = plan.evict.find((e) => e.children.length > 0) ?? plan.evict[0]!;
    const tree = [withKids.id, ...withKids.children];
    const one = await server.client.request('restoreArchive', { name: entry.name, sessionIds: [withKids.id] });
    expect(one.restored.sort()).toEqual([...tree].sort());
    expect(rowsOf(db, tree)).toBe(rowsOf(original, tree));
    const others = plan.evict.filter((e) => e.id !== withKids.id).map((e) => e.id);
    // The others are still gone: no row of theirs came back.
    expect((JSON.parse(rowsOf(db, others)) as unknown[][]).every((rows) => rows.length === 0)).toBe(true);
    expect((await server.client.request('archiveContents', { name: entry.name })).sessions.find((s) => s.id === withKids.id)?.present).toBe(true);

    const all = await server.client.request('restoreArchive', { name: entry.name });
    expect(all.skipped.sort()).toEqual([...tree].sort());
    const every = plan.evict.flatMap((e) => [e.id, ...e.children]);
    expect(rowsOf(db, every)).toBe(rowsOf(original, every));

    const history = await server.client.request('history');
    expect(history.entries[0]).toMatchObject({ kind: 'clean-up', removed: 8, bytesBefore: outcome.bytesBefore, bytesAfter: outcome.bytesAfter, archives: [entry.name], cancelled: false });
  }, 120_000);

  it('refuses names that are not archives in archiveDir', async () => {
    for (const name of ['../opencode.db', '/etc/passwd', 'opencode.db', 'opencode-sessions-x/../../y.json.gz']) {
      await expect(server.client.request('archiveContents', { name })).rejects.toMatchObject({ code: 'usage' });
      await expect(server.client.request('restoreArchive', { name })).rejects.toMatchObject({ code: 'usage' });
    }
    await expect(server.client.request('restoreArchive', { name: 'opencode-sessions-2020-01-01T00-00-00-000Z.json.gz' })).rejects.toMatchObject({ code: 'not-found' });
  });
});
