/**
 * The mirror beside the real OpenCode 1.18.33, against real PostgreSQL and MariaDB: `sync` runs
 * (the built CLI, polling every 100 ms) while OpenCode continues a session and starts a new one;
 * every session on the server then equals the local one in every table and every event. A
 * mirrored session evicted from the file without an archive comes back with `restore --from`
 * byte for byte, and OpenCode continues it.
 */
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { restoreFrom } from '../../src/main/migration.js';
import { archiveThenDelete } from '../../src/main/retention.js';
import { freshDatabase, type FreshDatabase } from '../external/servers.js';
import { sessionsAsText } from '../external/sync-helpers.js';
import { CLI } from '../helpers/env.js';
import { OPENCODE_DATA_TIMEOUT_MS, realOpenCodeData, runOpenCode, type ManifestSession, type OpenCodeData } from '../helpers/opencode.ts';

const databases: FreshDatabase[] = [];
afterAll(async () => {
  for (const d of databases) await d.drop();
});

async function until(what: string, check: () => Promise<boolean>, ms = 120_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const messagesOf = (db: string, id: string): number => {
  const file = new Database(db, { readonly: true });
  try {
    return file.prepare('SELECT count(*) FROM message WHERE session_id = ?').pluck().get(id) as number;
  } finally {
    file.close();
  }
};

describe.each(['postgres', 'mysql'] as const)('sync beside the real OpenCode (%s)', (backend) => {
  let data: OpenCodeData;
  let server: FreshDatabase;
  beforeAll(async () => {
    data = await realOpenCodeData();
    server = await freshDatabase(backend);
    databases.push(server);
  }, OPENCODE_DATA_TIMEOUT_MS);
  afterAll(() => data?.remove());

  it('mirrors while OpenCode writes; an evicted session comes back byte for byte and OpenCode continues it', async () => {
    const env = { ...data.env, XDG_CACHE_HOME: join(data.root, 'sk-cache') };
    const mirror = spawn(process.execPath, [CLI, '--db', data.dbPath, 'sync', '--to', server.url, '--poll-ms', '100'], { stdio: 'pipe', env });
    let stderr = '';
    mirror.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const stopped = new Promise((resolve) => mirror.on('close', resolve));
    const model = await data.startModel();
    const equal = async (): Promise<boolean> => {
      const [local, there] = await Promise.all([sessionsAsText(data.dbPath), sessionsAsText(server.url)]);
      return local.size === there.size && [...local].every(([id, text]) => there.get(id) === text);
    };
    let classic: ManifestSession;
    try {
      await until('the first pass', async () => /sessions written/.test(stderr));
      classic = data.sessions('continue')[0] as ManifestSession;
      const before = messagesOf(data.dbPath, classic.id);
      // OpenCode writes while the mirror runs: a continued session and a new one.
      const continued = await runOpenCode(data.env, ['run', '--session', classic.id, 'Another turn while the mirror runs.'], { cwd: data.projectDir });
      expect(continued.status, continued.stderr).toBe(0);
      const fresh = await runOpenCode(data.env, ['run', 'A new session, started while mirroring.'], { cwd: data.projectDir });
      expect(fresh.status, fresh.stderr).toBe(0);
      expect(messagesOf(data.dbPath, classic.id)).toBeGreaterThan(before);
      // Every session, every table, every event, as OpenCode left them.
      await until('the server to equal the file', equal);
    } finally {
      mirror.kill('SIGTERM');
      await stopped;
      await model.close();
    }
    expect(stderr).not.toMatch(/conflict|error/i);

    // Evicted on the strength of the mirror (no archive), then brought back from the server.
    const beforeEviction = (await sessionsAsText(data.dbPath)).get(classic.id);
    const evicted = await archiveThenDelete(
      { db: data.dbPath, cacheDir: join(data.root, 'sk-cache', 'attachments'), archive: true, archiveDir: join(data.root, 'sk-archive'), mirror: server.url },
      [classic.id],
    );
    expect(evicted.evicted).toEqual([classic.id]);
    expect(evicted.mirrored).toEqual([classic.id]);
    expect(evicted.archive).toBeNull();
    expect((await sessionsAsText(data.dbPath)).has(classic.id)).toBe(false);
    await restoreFrom({ db: data.dbPath, from: server.url, roots: [classic.id] });
    expect((await sessionsAsText(data.dbPath)).get(classic.id)).toBe(beforeEviction);

    const again = await data.startModel();
    try {
      const before = messagesOf(data.dbPath, classic.id);
      const run = await runOpenCode(data.env, ['run', '--session', classic.id, 'Continued after coming back from the server.'], { cwd: data.projectDir });
      expect(run.status, run.stderr).toBe(0);
      expect(messagesOf(data.dbPath, classic.id)).toBeGreaterThanOrEqual(before + 2);
    } finally {
      await again.close();
    }
  }, 600_000);
});
