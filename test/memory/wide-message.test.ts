/**
 * One message with thousands of parts (150 MB of tool output in 3,000 parts): shown, archived
 * and restored under a 64 MB heap. Pages stop at a byte budget, and long strings are cut shorter
 * as the page fills, so neither the page nor the query result grows with the message.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli, tempDir, wideMessageDb } from '../helpers/env.js';

const PARTS = 3000;
const dir = tempDir('sk-wide-');
const dbPath = join(dir, 'opencode.db');
const flag = ['--max-old-space-size=64'];
const cacheDir = join(dir, 'cache');

beforeAll(() => {
  wideMessageDb(dbPath, PARTS);
});

describe('a message with thousands of parts', () => {
  it('is shown whole, its long outputs cut to previews, under a 64 MB heap', () => {
    const run = runCli(['--db', dbPath, '--json', 'show', 'ses_wide'], { nodeArgs: flag, cacheDir });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const page = JSON.parse(run.stdout) as { messages: { parts: { id: string; state: { output: string } }[] }[] };
    const parts = page.messages[0]?.parts ?? [];
    expect(parts).toHaveLength(PARTS);
    expect(parts[0]?.state.output.length).toBe(50_000);
    expect(parts[PARTS - 1]?.state.output).toMatch(/\n…\[session-keeper: cut, 50000 bytes in all\]$/);
    expect(run.stdout.length).toBeLessThan(32 * 1024 * 1024);
  }, 120_000);

  it('is archived, deleted and restored exactly under a 64 MB heap', () => {
    const archive = join(dir, 'wide.json');
    const env = { XDG_DATA_HOME: join(dir, 'data') };
    const digest = (): string => {
      const db = new Database(dbPath, { readonly: true });
      const hash = createHash('sha256');
      for (const row of db.prepare('SELECT id, time_created, time_updated, data FROM part ORDER BY id').raw().iterate() as IterableIterator<unknown[]>) hash.update(JSON.stringify(row));
      db.close();
      return hash.digest('hex');
    };
    const before = digest();
    expect(runCli(['--db', dbPath, 'archive', '--output', archive, '--session', 'ses_wide'], { nodeArgs: flag, env, cacheDir }).status).toBe(0);
    expect(runCli(['--db', dbPath, 'delete', 'ses_wide', '--no-archive', '--yes'], { nodeArgs: flag, env, cacheDir }).status).toBe(0);
    const restore = runCli(['--db', dbPath, '--json', 'restore', archive], { nodeArgs: flag, env, cacheDir });
    expect(restore.stderr).toBe('');
    expect(JSON.parse(restore.stdout)).toMatchObject({ restored: 1 });
    expect(digest()).toBe(before);
  }, 120_000);
});
