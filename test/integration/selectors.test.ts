/**
 * Session selectors against independent SQL on generated OpenCode 1.18 databases (both layouts):
 * child sessions, sizes, the order `--keep-latest` counts in, a project by id and by directory;
 * then the same selectors through `archive`, `delete` and `retention` of the built CLI.
 */
import Database from 'better-sqlite3';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { MB } from '../../src/core/bytes.js';
import { parseDuration, parseSize, selectorFromFlags, type SessionSelector } from '../../src/core/selectors.js';
import { generateFixture } from '../fixtures/generate.js';
import { openFileReader } from '../../dist/store/open-store.js';
import { parseJson, runCli, tempDir } from '../helpers/env.js';

const dir = tempDir('sk-selectors-');
const base = join(dir, 'base', 'opencode.db');
const NOW = Date.UTC(2026, 10, 1);
let copies = 0;

beforeAll(() => {
  mkdirSync(join(dir, 'base'), { recursive: true });
  generateFixture({ path: base, targetBytes: 6 * MB, seed: 13, schema: '1.18', newerLayoutShare: 0.3, now: NOW });
  // A second project owning every third root (with its children), one session of it elsewhere on disk.
  const conn = new Database(base);
  conn.prepare("INSERT INTO project (id, worktree, time_created, time_updated, sandboxes) VALUES ('prj_other', '/work/other', 1, 1, '[]')").run();
  conn.exec(`UPDATE session SET project_id = 'prj_other', directory = '/work/other'
             WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM session WHERE parent_id IS NULL) WHERE n % 3 = 0)
                OR parent_id IN (SELECT id FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM session WHERE parent_id IS NULL) WHERE n % 3 = 0)`);
  conn.close();
});

function freshDb(): string {
  const home = join(dir, `run-${copies++}`);
  mkdirSync(home, { recursive: true });
  const db = join(home, 'opencode.db');
  copyFileSync(base, db);
  return db;
}

interface Facts {
  id: string;
  parent: string | null;
  project: string;
  directory: string;
  created: number;
  active: number;
  bytes: number;
}

/** Every session's facts, computed here with SQL of the test's own. */
function facts(db: string): Facts[] {
  const conn = new Database(db, { readonly: true });
  const sessions = conn.prepare('SELECT id, parent_id AS parent, project_id AS project, directory, time_created AS created, time_updated AS updated FROM session').all() as (Omit<Facts, 'active' | 'bytes'> & { updated: number })[];
  const bytes = new Map<string, number>();
  const add = (id: string, n: number): void => void bytes.set(id, (bytes.get(id) ?? 0) + n);
  for (const table of ['message', 'part']) {
    for (const r of conn.prepare(`SELECT session_id AS id, sum(length(CAST(data AS BLOB))) AS n FROM ${table} GROUP BY session_id`).all() as { id: string; n: number }[]) add(r.id, r.n);
  }
  for (const table of ['session_message', 'session_input', 'session_context_epoch']) {
    const columns = conn.prepare('SELECT name FROM pragma_table_info(?)').pluck().all(table) as string[];
    const sum = columns.map((c) => `coalesce(length(CAST("${c}" AS BLOB)), 0)`).join(' + ');
    for (const r of conn.prepare(`SELECT session_id AS id, sum(${sum}) AS n FROM ${table} GROUP BY session_id`).all() as { id: string; n: number }[]) add(r.id, r.n);
  }
  const active = new Map<string, number>();
  for (const [table, column] of [['session_message', 'time_updated'], ['session_input', 'time_created']]) {
    for (const r of conn.prepare(`SELECT session_id AS id, max(${column}) AS t FROM ${table} GROUP BY session_id`).all() as { id: string; t: number }[]) active.set(r.id, Math.max(active.get(r.id) ?? 0, r.t));
  }
  conn.close();
  return sessions.map((s) => ({ id: s.id, parent: s.parent, project: s.project, directory: s.directory, created: s.created, active: Math.max(s.updated, active.get(s.id) ?? 0), bytes: bytes.get(s.id) ?? 0 }));
}

/** The selector's meaning, written out over the facts. */
function expected(all: Facts[], selector: SessionSelector, projects: (s: Facts) => boolean = () => true): string[] {
  const candidates = all
    .filter((s) => (selector.subagents ? s.parent !== null : s.parent === null) && projects(s))
    .sort((a, b) => b.active - a.active || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
  return candidates
    .slice(selector.keepLatest ?? 0)
    .filter((s) => (selector.largerThan === undefined || s.bytes > selector.largerThan) && (selector.olderThanMs === undefined || s.created < NOW - selector.olderThanMs))
    .map((s) => s.id);
}

async function selected(db: string, selector: SessionSelector): Promise<string[]> {
  const reader = openFileReader(db);
  try {
    return (await reader.selectSessions(selector, NOW)).map((s) => s.id);
  } finally {
    await reader.close();
  }
}

describe('human sizes and durations', () => {
  it('parses sizes in units of 1024 and durations, and refuses the rest in one line', () => {
    expect(parseSize('50M')).toBe(50 * MB);
    expect(parseSize('1.5G')).toBe(1.5 * 1024 * MB);
    expect(parseSize('700k')).toBe(700 * 1024);
    expect(parseSize('4096')).toBe(4096);
    expect(parseSize('2MiB')).toBe(2 * MB);
    expect(parseDuration('14d')).toBe(14 * 86_400_000);
    expect(parseDuration('12h')).toBe(12 * 3_600_000);
    expect(parseDuration('2w')).toBe(14 * 86_400_000);
    expect(parseDuration('90m')).toBe(90 * 60_000);
    expect(() => parseSize('fifty')).toThrow(/not a size/);
    expect(() => parseSize('5X')).toThrow(/not a size/);
    expect(() => parseDuration('3 fortnights')).toThrow(/not a duration/);
    expect(() => selectorFromFlags({ keepLatest: '-1' })).toThrow(/--keep-latest/);
    expect(() => selectorFromFlags({ olderThan: '2d', olderThanDays: 2 })).toThrow(/give one/);
  });
});

describe('selectors agree with independent SQL', () => {
  let db: string;
  let all: Facts[];
  beforeAll(() => {
    db = freshDb();
    all = facts(db);
  });

  it('the generated database has children, several projects and both layouts', () => {
    expect(all.filter((s) => s.parent !== null).length).toBeGreaterThan(2);
    expect(new Set(all.map((s) => s.project)).size).toBeGreaterThan(1);
    const conn = new Database(db, { readonly: true });
    expect(conn.prepare('SELECT count(DISTINCT session_id) FROM session_message').pluck().get()).toBeGreaterThan(0);
    conn.close();
  });

  it('children, sizes, order and age', async () => {
    const sizes = all.map((s) => s.bytes).sort((a, b) => a - b);
    const median = sizes[Math.floor(sizes.length / 2)] as number;
    const cases: SessionSelector[] = [
      { subagents: false },
      { subagents: true },
      { subagents: false, largerThan: median },
      { subagents: true, largerThan: 1024 },
      { subagents: false, keepLatest: 5 },
      { subagents: false, keepLatest: 3, largerThan: median },
      { subagents: true, keepLatest: 2 },
      { subagents: false, olderThanMs: 60 * 86_400_000 },
      { subagents: false, keepLatest: 1000 },
    ];
    for (const selector of cases) {
      const want = expected(all, selector);
      expect(await selected(db, selector), JSON.stringify(selector)).toEqual(want);
    }
    // The cases are not vacuous: some select part of the candidates, not all or none.
    expect(expected(all, cases[2] as SessionSelector).length).toBeGreaterThan(0);
    expect(expected(all, cases[2] as SessionSelector).length).toBeLessThan(expected(all, cases[0] as SessionSelector).length);
  });

  it('a project by its id and by its directory', async () => {
    const conn = new Database(db, { readonly: true });
    const projects = conn.prepare('SELECT id, worktree FROM project WHERE id IN (SELECT project_id FROM session WHERE parent_id IS NULL)').all() as { id: string; worktree: string }[];
    conn.close();
    expect(projects.length).toBeGreaterThan(1);
    for (const project of projects) {
      const byId = expected(all, { subagents: false }, (s) => s.project === project.id);
      expect(byId.length).toBeGreaterThan(0);
      expect(await selected(db, { subagents: false, project: project.id })).toEqual(byId);
      const worktreeOwners = new Set(projects.filter((p) => p.worktree === project.worktree).map((p) => p.id));
      const byDir = expected(all, { subagents: false }, (s) => worktreeOwners.has(s.project) || s.directory === project.worktree);
      expect(await selected(db, { subagents: false, project: `${project.worktree}/` })).toEqual(byDir);
    }
    await expect(selected(db, { subagents: false, project: '/no/such/project' })).rejects.toThrow(/no project/);
  });
});

describe('selectors through the commands', () => {
  it('archive --project DIR --keep-latest N archives exactly those sessions with their children', () => {
    const db = freshDb();
    const all = facts(db);
    const project = (all.find((s) => s.parent === null) as Facts).project;
    const out = join(dir, `archive-${copies}.json`);
    const result = parseJson<{ sessions: number }>(runCli(['--db', db, '--json', 'archive', '--output', out, '--project', project, '--keep-latest', '1']));
    const roots = expected(all, { subagents: false, keepLatest: 1 }, (s) => s.project === project);
    const withChildren = all.filter((s) => roots.includes(s.id) || (s.parent !== null && roots.includes(s.parent))).length;
    expect(roots.length).toBeGreaterThan(0);
    expect(result.sessions).toBe(withChildren);
  });

  it('delete --subagents --larger-than SIZE removes exactly the larger child sessions', () => {
    const db = freshDb();
    const all = facts(db);
    const children = all.filter((s) => s.parent !== null).map((s) => s.bytes).sort((a, b) => a - b);
    const threshold = children[Math.floor(children.length / 2)] as number;
    const want = expected(all, { subagents: true, largerThan: threshold });
    expect(want.length).toBeGreaterThan(0);
    const env = { XDG_DATA_HOME: join(dir, `xdg-${copies}`) };
    const run = runCli(['--db', db, '--json', 'delete', '--subagents', '--larger-than', String(threshold), '--yes'], { env });
    const result = parseJson<{ evicted: string[]; archive: string }>(run);
    expect(result.evicted.sort()).toEqual([...want].sort());
    const left = new Set(facts(db).map((s) => s.id));
    for (const id of want) expect(left.has(id)).toBe(false);
    // Every other session is still there, roots included.
    for (const s of all) if (!want.includes(s.id) && !(s.parent && want.includes(s.parent))) expect(left.has(s.id)).toBe(true);
  });

  it('delete with neither ids nor selectors, or both, is one usage line', () => {
    const db = freshDb();
    const none = runCli(['--db', db, 'delete', '--yes']);
    expect(none.status).toBe(2);
    expect(none.stderr.trim().split('\n')).toHaveLength(1);
    const bad = runCli(['--db', db, 'delete', '--larger-than', 'lots', '--yes']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/not a size/);
  });

  it('retention --keep-latest N with no limit plans every other eligible root; a limit applies to the selected ones only', () => {
    const db = freshDb();
    const all = facts(db);
    const plan = parseJson<{ evict: { id: string }[] }>(runCli(['--db', db, '--json', 'retention', '--keep-latest', '4'], { env: { XDG_CONFIG_HOME: join(dir, 'no-config') } }));
    // Sessions active in the last hour are never evicted; the generated ones are all older than that.
    expect(plan.evict.map((e) => e.id).sort()).toEqual(expected(all, { subagents: false, keepLatest: 4 }).sort());
    const project = (all.find((s) => s.parent === null) as Facts).project;
    const limited = parseJson<{ evict: { id: string }[] }>(runCli(['--db', db, '--json', 'retention', '--project', project, '--max-sessions', '1'], { env: { XDG_CONFIG_HOME: join(dir, 'no-config') } }));
    const inProject = expected(all, { subagents: false }, (s) => s.project === project);
    expect(limited.evict.length).toBe(Math.max(0, inProject.length - 1));
    for (const e of limited.evict) expect(inProject).toContain(e.id);
    const sub = runCli(['--db', db, 'retention', '--subagents']);
    expect(sub.status).toBe(2);
  });
});
