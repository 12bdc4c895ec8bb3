/**
 * The session browser's pages, through the real utility process: search by title, sort by size,
 * created and updated, pages that never overlap, per-project totals that equal SQL over the file,
 * and pin/unpin writing `keep` into a JSONC config with its comments kept (and the planner then
 * keeping the session).
 */
import Database from 'better-sqlite3';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrowseRow } from '../../src/core/browse.js';
import { generateFixture } from '../fixtures/generate.js';
import { startWebServer, type WebServer } from '../../dist/web/server.js';
import { tempDir } from '../helpers/env.js';

const dir = tempDir('sk-browse-');
const db = join(dir, 'opencode.db');
const config = join(dir, 'opencode.jsonc');
const CONFIG = `{
  // kept as written
  "theme": "opencode",
  "session": {
    "warnAtMB": [20] /* inline */
  }
}
`;
let server: WebServer;

beforeAll(async () => {
  generateFixture({ path: db, targetBytes: 3 * 1024 * 1024, rootSessions: 60, seed: 17, diffFiles: false });
  writeFileSync(config, CONFIG);
  server = await startWebServer({ db, cacheDir: join(dir, 'cache'), configPath: config, token: 't', env: { ...process.env, XDG_DATA_HOME: join(dir, 'data'), XDG_CONFIG_HOME: join(dir, 'cfg') } });
});
afterAll(() => server.close());

function sql<T>(query: string, ...args: unknown[]): T[] {
  const conn = new Database(db, { readonly: true });
  try {
    return conn.prepare(query).all(...args) as T[];
  } finally {
    conn.close();
  }
}

async function everyPage(params: { search?: string; sort?: 'size' | 'created' | 'updated'; project?: string }): Promise<BrowseRow[]> {
  const rows: BrowseRow[] = [];
  for (let offset = 0; ; offset += 7) {
    const page = await server.client.request('browseSessions', { ...params, offset, limit: 7 });
    expect(page.sessions.length).toBeLessThanOrEqual(7);
    rows.push(...page.sessions);
    if (offset + 7 >= page.total) break;
  }
  return rows;
}

describe('session browser', () => {
  it('pages every root session once, sorted as asked', async () => {
    const roots = sql<{ id: string; created: number }>('SELECT id, time_created AS created FROM session WHERE parent_id IS NULL');
    for (const sort of ['size', 'created', 'updated'] as const) {
      const rows = await everyPage({ sort });
      expect(rows.map((r) => r.id).sort()).toEqual(roots.map((r) => r.id).sort());
      const keys = rows.map((r) => (sort === 'size' ? r.bytes : sort === 'created' ? r.timeCreated : r.timeUpdated));
      expect(keys).toEqual([...keys].sort((a, b) => b - a));
    }
    const created = new Map(roots.map((r) => [r.id, r.created]));
    for (const r of await everyPage({})) expect(r.timeCreated).toBe(created.get(r.id));
  });

  it('searches titles, case-insensitively, as SQL LIKE does', async () => {
    const word = sql<{ title: string }>('SELECT title FROM session WHERE parent_id IS NULL ORDER BY id LIMIT 1')[0]!.title.split(/\s+/).find((w) => w.length > 3)!;
    const expected = sql<{ id: string }>("SELECT id FROM session WHERE parent_id IS NULL AND title LIKE '%' || ? || '%'", word).map((r) => r.id);
    expect(expected.length).toBeGreaterThan(0);
    const found = await everyPage({ search: word.toUpperCase() });
    expect(found.map((r) => r.id).sort()).toEqual(expected.sort());
    expect((await server.client.request('browseSessions', { search: 'no title has this' })).total).toBe(0);
  });

  it('totals per project equal SQL over the file, and a project filter gives its sessions', async () => {
    const page = await server.client.request('browseSessions', {});
    const bySql = sql<{ project: string; n: number }>('SELECT project_id AS project, count(*) AS n FROM session WHERE parent_id IS NULL GROUP BY project_id');
    expect(bySql.length).toBeGreaterThan(1);
    expect(page.projects.map((p) => [p.id, p.sessions]).sort()).toEqual(bySql.map((p) => [p.project, p.n]).sort());
    const names = new Map(sql<{ id: string; name: string | null; worktree: string }>('SELECT id, name, worktree FROM project').map((p) => [p.id, p]));
    for (const project of page.projects) {
      const rows = await everyPage({ project: project.id });
      expect(rows.length).toBe(project.sessions);
      expect(rows.every((r) => r.projectId === project.id)).toBe(true);
      expect(rows.reduce((n, r) => n + r.bytes, 0)).toBe(project.bytes);
      expect(names.has(project.id)).toBe(true);
    }
  });

  it('pins and unpins by writing keep into the JSONC file, comments kept, and the planner keeps a pinned session', async () => {
    const plan = await server.client.request('plan', { policy: { maxSessions: 10 } });
    const target = plan.evict[0]!.id;
    expect((await server.client.request('setPinned', { sessionId: target, pinned: true })).keep).toEqual([target]);
    const text = readFileSync(config, 'utf8');
    expect(text).toContain('// kept as written');
    expect(text).toContain('/* inline */');
    expect(text).toContain('"theme": "opencode"');
    expect(text).toMatch(new RegExp(`"keep": \\[\\s*"${target}"\\s*\\]`));
    const pinnedRow = (await everyPage({})).find((r) => r.id === target)!;
    expect(pinnedRow.pinned).toBe(true);
    expect((await server.client.request('plan', { policy: { maxSessions: 10 } })).evict.map((e) => e.id)).not.toContain(target);
    expect((await server.client.request('setPinned', { sessionId: target, pinned: false })).keep).toEqual([]);
    expect(readFileSync(config, 'utf8')).toContain('// kept as written');
    expect((await everyPage({})).find((r) => r.id === target)!.pinned).toBe(false);
  });
});
