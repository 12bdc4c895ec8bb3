/**
 * One view of the file and its mirror, through the CLI: with `storage` naming PostgreSQL in the
 * config and --db the file, `list` shows local and server-only sessions together, each marked
 * where it lives (`where`), pages across both without repeating one; `show` pages a session the
 * file no longer holds from the server; `stats` counts the server's sessions and those only there.
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listResultSchema, showResultSchema, statsResultSchema } from '../../src/core/api.js';
import { generateFixture } from '../fixtures/generate.js';
import { parseJson, runCli, tempDir } from '../helpers/env.js';
import { freshDatabase, type FreshDatabase } from './servers.js';
import { mirrorAsPrimary } from './sync-helpers.js';

const dir = tempDir('sk-one-view-');
const db = join(dir, 'opencode.db');
let server: FreshDatabase;
const env = { XDG_CONFIG_HOME: join(dir, 'config'), XDG_CACHE_HOME: join(dir, 'cache'), OPENCODE_DB: '' };
let evicted: string[] = [];
let sessions = 0;

beforeAll(async () => {
  generateFixture({ path: db, targetBytes: 2 * 1024 * 1024, seed: 61, rootSessions: 10 });
  server = await freshDatabase('postgres');
  expect(mirrorAsPrimary(dir, db, 'postgres', server.url, env)).toBe(0);
  // Three roots leave the file (the mirror holds them), one new session is not mirrored yet.
  const file = new Database(db);
  file.pragma('foreign_keys = ON');
  evicted = file.prepare('SELECT id FROM session WHERE parent_id IS NULL AND id NOT IN (SELECT parent_id FROM session WHERE parent_id IS NOT NULL) ORDER BY time_created LIMIT 3').pluck().all() as string[];
  for (const id of evicted) file.prepare('DELETE FROM session WHERE id = ?').run(id);
  const project = file.prepare('SELECT project_id FROM session LIMIT 1').pluck().get() as string;
  file.prepare("INSERT INTO session (id, project_id, slug, directory, title, version, time_created, time_updated) VALUES ('ses_zzlocalonly00000000000000', ?, 'x', '/', 'only here', '1', 1, 2)").run(project);
  sessions = file.prepare('SELECT count(*) FROM session').pluck().get() as number;
  file.close();
}, 120_000);
afterAll(async () => server?.drop());

describe('list, show and stats over the file and its mirror', () => {
  it('list marks each session where it lives and pages across both without repeating one', () => {
    const seen: { id: string; where?: string }[] = [];
    let cursor: string | null = null;
    do {
      const page = listResultSchema.parse(parseJson(runCli(['--db', db, '--json', 'list', '--limit', '4', ...(cursor ? ['--cursor', cursor] : [])], { env })));
      seen.push(...page.sessions);
      cursor = page.nextCursor;
    } while (cursor);
    expect(new Set(seen.map((s) => s.id)).size).toBe(seen.length);
    expect(seen.length).toBe(sessions + evicted.length);
    expect(seen.filter((s) => s.where === 'server').map((s) => s.id).sort()).toEqual([...evicted].sort());
    expect(seen.filter((s) => s.where === 'local').map((s) => s.id)).toEqual(['ses_zzlocalonly00000000000000']);
    expect(seen.filter((s) => s.where === 'both').length).toBe(sessions - 1);
    const text = runCli(['--db', db, 'list', '--limit', '100'], { env }).stdout;
    expect(text).toMatch(new RegExp(`${evicted[0]}.*server`));
  });

  it('show pages a server-only session from the server, and stats counts both sides', () => {
    const page = showResultSchema.parse(parseJson(runCli(['--db', db, '--json', 'show', evicted[0] as string], { env })));
    expect(page.where).toBe('server');
    expect(page.messages.length).toBeGreaterThan(0);
    const stats = statsResultSchema.parse(parseJson(runCli(['--db', db, '--json', 'stats'], { env })));
    expect(stats.mirror).toEqual({ target: expect.stringContaining(new URL(server.url).pathname), sessions: sessions - 1 + evicted.length, serverOnly: evicted.length, localOnly: 1 });
    const missing = runCli(['--db', db, 'show', 'ses_nowhere000000000000000000'], { env });
    expect(missing.status).toBe(1);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
  });
});
