/**
 * A message with 3,000 parts (150 MB of tool output) read back from PostgreSQL under a 64 MB heap:
 * the external store caps what one query brings inline, as the SQLite store does, and shows the
 * same page.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, tempDir, wideMessageDb } from '../helpers/env.js';
import { freshDatabase, type FreshDatabase } from './servers.js';

const PARTS = 3000;
const dir = tempDir('sk-ext-wide-');
const dbPath = join(dir, 'opencode.db');
const cacheDir = join(dir, 'cache');
let server: FreshDatabase;

beforeAll(async () => {
  wideMessageDb(dbPath, PARTS);
  server = await freshDatabase('postgres');
  const migrate = runCli(['--db', dbPath, 'migrate', '--to', server.url], { cacheDir });
  expect(migrate.stderr).toBe('');
  expect(migrate.status).toBe(0);
}, 180_000);
afterAll(async () => server?.drop());

describe('a message with thousands of parts on PostgreSQL', () => {
  it('is shown under a 64 MB heap, the same page as from the SQLite file', () => {
    const fromServer = runCli(['--db', server.url, '--json', 'show', 'ses_wide'], { nodeArgs: ['--max-old-space-size=64'], cacheDir });
    expect(fromServer.stderr).toBe('');
    expect(fromServer.status).toBe(0);
    const fromFile = runCli(['--db', dbPath, '--json', 'show', 'ses_wide'], { cacheDir });
    const page = JSON.parse(fromServer.stdout) as { messages: { parts: unknown[] }[] };
    expect(page.messages[0]?.parts).toHaveLength(PARTS);
    expect(page).toEqual(JSON.parse(fromFile.stdout));
  }, 120_000);
});
