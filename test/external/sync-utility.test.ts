/**
 * The mirror inside the utility process (dist/main/utility.js under child_process.fork, as
 * Electron's utilityProcess runs it): with `storage` naming PostgreSQL in the config it mirrors
 * the file after startup, follows a later change, and answers `syncStatus` with the dialog's line;
 * without one, `syncStatus` says there is no mirror. The password never reaches an event.
 */
import Database from 'better-sqlite3';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProtocolEvent } from '../../src/core/utility-protocol.js';
import { nodeSpawner, UtilityClient } from '../../src/main/client.js';
import { generateFixture } from '../fixtures/generate.js';
import { ROOT, tempDir } from '../helpers/env.js';
import { freshDatabase, serverQuery, type FreshDatabase } from './servers.js';

const ENTRY = join(ROOT, 'dist', 'main', 'utility.js');
const dir = tempDir('sk-sync-utility-');
const db = join(dir, 'opencode.db');
let server: FreshDatabase;

beforeAll(async () => {
  generateFixture({ path: db, targetBytes: 2 * 1024 * 1024, seed: 51, rootSessions: 8, schema: '1.18' });
  server = await freshDatabase('postgres');
}, 120_000);
afterAll(async () => server?.drop());

async function until<T>(what: string, get: () => Promise<T>, ok: (value: T) => boolean, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await get();
    if (ok(value)) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function start(name: string, session: Record<string, unknown>): { client: UtilityClient; events: ProtocolEvent[] } {
  const config = join(dir, name, 'config');
  mkdirSync(join(config, 'opencode'), { recursive: true });
  writeFileSync(join(config, 'opencode', 'opencode.json'), JSON.stringify({ session }));
  const env = { ...process.env, XDG_CONFIG_HOME: config, XDG_DATA_HOME: join(dir, name, 'data'), XDG_CACHE_HOME: join(dir, name, 'cache') };
  const client = new UtilityClient(nodeSpawner({ entry: ENTRY, db, cacheDir: join(dir, name, 'cache', 'attachments'), env }), { initialDelayMs: 50 }).start();
  const events: ProtocolEvent[] = [];
  client.onEvent((e) => events.push(e));
  return { client, events };
}

describe('the mirror in the utility process', () => {
  it('mirrors the file into the configured server and reports it for the dialog', async () => {
    const url = new URL(server.url);
    url.password = 'utility-s3cret';
    const { client, events } = start('pg', { storage: 'postgres', connectionString: url.toString() });
    try {
      expect((await client.request('startup')).error).toBeNull();
      const file = new Database(db, { readonly: true });
      const sessions = file.prepare('SELECT count(*) FROM session').pluck().get() as number;
      file.close();
      // The pass ends (idle) shortly after its last session is verified: the first sync's copy still makes its commits durable.
      const status = await until('every session mirrored and the pass ended', () => client.request('syncStatus'), (s) => s.mirrored === sessions && s.pending === 0 && s.state === 'idle');
      expect(status.state).toBe('idle');
      expect(status.target).not.toContain('utility-s3cret');
      expect(status.line).toMatch(new RegExp(`^mirrored ${sessions} sessions; 0 pending; last \\d+ s ago$`));
      const [onServer] = await serverQuery<{ n: string | number }>(server.url, 'SELECT count(*) AS n FROM sk_session WHERE complete = 1');
      expect(Number(onServer?.n)).toBe(sessions);

      // OpenCode writes: the mirror follows within its poll.
      const writer = new Database(db);
      const id = writer.prepare('SELECT id FROM session ORDER BY time_updated DESC LIMIT 1').pluck().get() as string;
      writer.prepare("UPDATE session SET title = 'renamed while the app runs', time_updated = time_updated + 1 WHERE id = ?").run(id);
      writer.close();
      await until(
        'the change on the server',
        () => serverQuery<{ title: string }>(server.url, `SELECT title FROM sk_session WHERE id = '${id}'`),
        (rows) => rows[0]?.title === 'renamed while the app runs',
      );
      expect(JSON.stringify(events)).not.toContain('utility-s3cret');
    } finally {
      await client.close();
    }
  });

  it('says there is no mirror when the file is the only store', async () => {
    const { client } = start('sqlite', {});
    try {
      const status = await client.request('syncStatus');
      expect(status.state).toBe('off');
      expect(status.line).toMatch(/no mirror/);
    } finally {
      await client.close();
    }
  });
});
