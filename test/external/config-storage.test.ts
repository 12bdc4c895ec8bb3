/**
 * `storage` + `connectionString` in the config choose the store when no --db is given: the same
 * CLI reads the external database, and commands that rewrite the SQLite file refuse it clearly.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateFixture } from '../fixtures/generate.js';
import { parseJson, runCli, tempDir } from '../helpers/env.js';
import { freshDatabase, type FreshDatabase } from './servers.js';

const dir = tempDir('sk-config-storage-');
const dbPath = join(dir, 'opencode.db');
let server: FreshDatabase;
const env = { XDG_CONFIG_HOME: join(dir, 'config'), XDG_DATA_HOME: join(dir, 'data'), OPENCODE_DB: '' };

beforeAll(async () => {
  generateFixture({ path: dbPath, targetBytes: 3 * 1024 * 1024, seed: 4 });
  server = await freshDatabase('postgres');
  expect(runCli(['--db', dbPath, 'migrate', '--to', server.url], { env }).status).toBe(0);
  mkdirSync(join(dir, 'config', 'opencode'), { recursive: true });
  writeFileSync(
    join(dir, 'config', 'opencode', 'opencode.jsonc'),
    `{\n  // keep sessions in PostgreSQL\n  "session": { "storage": "postgres", "connectionString": ${JSON.stringify(server.url)} }\n}\n`,
  );
}, 120_000);
afterAll(async () => server?.drop());

describe('the config chooses the store', () => {
  it('list without --db reads the configured database, with the same pages as the file', () => {
    const fromConfig = parseJson<{ sessions: { id: string; bytes: number }[] }>(runCli(['--json', 'list', '--limit', '10'], { env }));
    const fromFile = parseJson<{ sessions: { id: string }[] }>(runCli(['--db', dbPath, '--json', 'list', '--limit', '10'], { env }));
    expect(fromConfig.sessions.map((s) => s.id)).toEqual(fromFile.sessions.map((s) => s.id));
  });

  it('commands that rewrite the SQLite file say so, in one line', () => {
    const run = runCli(['retention', '--apply', '--max-sessions', '1', '--yes'], { env });
    expect(run.status).toBe(2);
    expect(run.stderr.trim()).toBe(
      "session-keeper: retention works on OpenCode's SQLite file: give --db a file (external databases: migrate, restore --from, offload)",
    );
  });
});
