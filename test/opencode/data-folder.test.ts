/**
 * The data folder the real OpenCode 1.18.33 wrote (its database, snapshot repositories, session
 * diffs, tool outputs, logs), with leftovers made here: an orphan diff beside the one OpenCode's
 * own `session delete` left, leftover pack files in a real snapshot repository, and a pre-SQLite
 * JSON tree of the database's own sessions. Every size `stats` reports equals `du -sb` or SQL;
 * `clean` removes exactly the leftovers (and archives what holds session data); OpenCode still
 * exports afterwards. Beside a running `opencode serve`, session-keeper names it, VACUUM refuses,
 * and a delete goes ahead with its VACUUM deferred while OpenCode keeps answering.
 */
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatsResult } from '../../src/core/api.js';
import type { CleanPlan, CleanResult, FolderPlace } from '../../src/core/data-folder.js';
import { writeLegacyJsonTree, type LegacyTree } from '../fixtures/legacy-json.js';
import { parseJson, runCli } from '../helpers/env.js';
import { exportSession, listSessions, OPENCODE_DATA_TIMEOUT_MS, realOpenCodeData, withServe, type OpenCodeData } from '../helpers/opencode.ts';

let data: OpenCodeData;
let env: Record<string, string>;
let tree: LegacyTree;
const leftovers: string[] = [];
let youngPack = '';

/** Every file under `root` (relative name -> sha256). */
function files(root: string): Map<string, string> {
  const found = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile()) found.set(relative(root, path), createHash('sha256').update(readFileSync(path)).digest('hex'));
    }
  };
  walk(root);
  return found;
}

const du = (args: string[], paths: string[]): number => {
  const present = paths.filter((p) => existsSync(p));
  if (present.length === 0) return 0;
  const out = spawnSync('du', [...args, '-c', ...present], { encoding: 'utf8' }).stdout;
  return Number(/(\d+)\s+total/.exec(out)?.[1]);
};
const duSb = (...paths: string[]): number => du(['-sb'], paths);

beforeAll(async () => {
  data = await realOpenCodeData();
  env = data.env as Record<string, string>;
  const dir = data.dataDir;
  // The orphan OpenCode's own delete left, and one more made here.
  const deleted = data.manifest.deleted.find((d) => d.diffFileLeft);
  expect(deleted, 'the build deletes one session after a revert').toBeDefined();
  const diffs = join(dir, 'storage', 'session_diff');
  leftovers.push(join(diffs, `${deleted?.id}.json`));
  const kept = readdirSync(diffs).find((name) => name !== `${deleted?.id}.json`) as string;
  copyFileSync(join(diffs, kept), join(diffs, 'ses_0rphanmadebythetest00001.json'));
  leftovers.push(join(diffs, 'ses_0rphanmadebythetest00001.json'));
  // Leftover pack files in the real snapshot repository (git writes them into objects/pack).
  const project = readdirSync(join(dir, 'snapshot'))[0] as string;
  const repo = join(dir, 'snapshot', project, readdirSync(join(dir, 'snapshot', project))[0] as string);
  expect(existsSync(join(repo, 'objects')), 'OpenCode wrote a snapshot repository').toBe(true);
  const pack = join(repo, 'objects', 'pack');
  mkdirSync(pack, { recursive: true });
  const old = join(pack, 'tmp_pack_q8Wz1x');
  writeFileSync(old, Buffer.alloc(96_000, 1));
  const twoDaysAgo = (Date.now() - 2 * 86_400_000) / 1000;
  utimesSync(old, twoDaysAgo, twoDaysAgo);
  leftovers.push(old);
  youngPack = join(pack, 'tmp_pack_Rn4T0a');
  writeFileSync(youngPack, Buffer.alloc(4_000, 2));
  tree = writeLegacyJsonTree(data.dbPath);
  leftovers.push(...tree.files);
}, OPENCODE_DATA_TIMEOUT_MS);

afterAll(() => data?.remove());

describe('the data folder the real OpenCode wrote', () => {
  it('stats reports each place at its du -sb size, and what a clean-up frees at its du/SQL figure', () => {
    const dir = data.dataDir;
    const stats = parseJson<StatsResult>(runCli(['--db', data.dbPath, '--json', 'stats'], { env }));
    const places = new Map((stats.files ?? []).map((f) => [f.name, f] as const));
    const at = (name: FolderPlace['name']): FolderPlace => {
      const found = places.get(name);
      if (!found) throw new Error(`stats has no ${name}`);
      return found;
    };
    const db = ['', '-wal', '-shm'].map((s) => data.dbPath + s);
    const legacyDirs = ['project', 'session', 'message', 'part', 'todo', 'permission', 'session_share'].map((d) => join(dir, 'storage', d));
    expect(at('database').bytes).toBe(duSb(...db));
    expect(stats.fileBytes + stats.walBytes).toBe(duSb(db[0] as string, db[1] as string));
    expect(at('snapshot').bytes).toBe(duSb(join(dir, 'snapshot')));
    expect(at('session-diffs').bytes).toBe(duSb(join(dir, 'storage', 'session_diff')));
    expect(at('legacy-json').bytes).toBe(duSb(...legacyDirs));
    // storage/ itself and OpenCode's migration marker; the folder itself and what no other place holds.
    const own = (path: string): number => Number(spawnSync('stat', ['-c', '%s', path], { encoding: 'utf8' }).stdout);
    expect(at('storage-other').bytes).toBe(own(join(dir, 'storage')) + duSb(join(dir, 'storage', 'migration')));
    for (const name of ['tool-output', 'log', 'repos'] as const) expect(at(name).bytes, name).toBe(duSb(join(dir, name)));
    const placed = new Set(['snapshot', 'storage', 'tool-output', 'log', 'repos', ...db.map((p) => basename(p))]);
    expect(at('other').bytes).toBe(own(dir) + duSb(...readdirSync(dir).filter((name) => !placed.has(name)).map((name) => join(dir, name))));
    const inside = [...places.values()].filter((f) => f.inDataFolder);
    expect(inside.reduce((n, f) => n + f.bytes, 0)).toBe(duSb(dir));
    expect(at('log').bytes).toBeGreaterThan(0);
    expect(at('tool-output').bytes).toBeGreaterThan(0);

    // What can go now: free pages and orphan diffs by SQL, pack leftovers and the tree by size.
    const conn = new Database(data.dbPath, { readonly: true });
    const freeBytes = (conn.pragma('freelist_count', { simple: true }) as number) * (conn.pragma('page_size', { simple: true }) as number);
    const sessions = new Set(conn.prepare('SELECT id FROM session').pluck().all() as string[]);
    conn.close();
    expect(at('database').reclaimable).toBe(freeBytes);
    const diffDir = join(dir, 'storage', 'session_diff');
    const orphans = readdirSync(diffDir).filter((name) => !sessions.has(basename(name, '.json')));
    expect(orphans.sort()).toEqual(leftovers.filter((f) => f.startsWith(diffDir)).map((f) => basename(f)).sort());
    expect(at('session-diffs').reclaimable).toBe(orphans.reduce((n, name) => n + statSync(join(diffDir, name)).size, 0));
    expect(at('session-diffs').reclaim).toBe('session-keeper clean --diffs');
    expect(at('snapshot').reclaimable).toBe(96_000);
    expect(at('legacy-json').reclaimable).toBe(at('legacy-json').bytes);

    const human = runCli(['--db', data.dbPath, 'stats'], { env });
    expect(human.stdout).toContain(`Data folder ${dir}:`);
    expect(human.stdout).toMatch(/snapshot\/ .* undo\/revert/);
  });

  it('clean removes exactly the leftovers, archives the diffs and the tree byte for byte, and OpenCode still exports', async () => {
    const dir = data.dataDir;
    const plan = parseJson<CleanPlan>(runCli(['--db', data.dbPath, '--json', 'clean'], { env }));
    expect(plan.diffs?.files.map((f) => f.path).sort()).toEqual(leftovers.filter((f) => f.includes('session_diff')).sort());
    expect(plan.snapshotTemp?.files.map((f) => f.path)).toEqual(leftovers.filter((f) => f.includes('tmp_pack')));
    expect(plan.snapshotTemp?.younger).toBe(1);
    expect(plan.legacyJson).toMatchObject({ ready: true, sessions: tree.sessions.length, messages: tree.messages, parts: tree.parts });

    const before = files(dir);
    const result = parseJson<CleanResult>(runCli(['--db', data.dbPath, '--json', 'clean', '--apply', '--yes'], { env }));
    const after = files(dir);
    const gone = [...before.keys()].filter((name) => !after.has(name)).sort();
    const added = [...after.keys()].filter((name) => !before.has(name));
    expect(gone).toEqual(leftovers.map((f) => relative(dir, f)).sort());
    expect(added).toEqual([relative(dir, result.archive as string)]);
    // The database and its WAL are only read (the -shm index is SQLite's shared memory, rewritten by any reader).
    for (const [name, digest] of after) if (before.has(name) && name !== 'opencode.db-shm') expect(digest, name).toBe(before.get(name));
    expect(existsSync(youngPack)).toBe(true);

    const archived = spawnSync('tar', ['-tzf', result.archive as string], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).sort();
    expect(archived).toEqual(leftovers.filter((f) => !f.includes('tmp_pack')).map((f) => relative(dir, f)).sort());
    const out = join(data.root, 'restored');
    mkdirSync(out);
    expect(spawnSync('tar', ['-xzf', result.archive as string, '-C', out]).status).toBe(0);
    const restored = files(out);
    for (const name of archived) expect(restored.get(name), name).toBe(before.get(name));

    const again = parseJson<StatsResult>(runCli(['--db', data.dbPath, '--json', 'stats'], { env }));
    const place = (name: string): FolderPlace | undefined => again.files?.find((f) => f.name === name);
    expect([place('session-diffs')?.reclaimable, place('snapshot')?.reclaimable, place('legacy-json')?.bytes]).toEqual([0, 0, 0]);

    // The session whose diff file stayed still exports whole.
    const revert = data.sessions('write-revert')[0];
    const { exported } = await exportSession(data.env, revert?.id as string, { cwd: data.projectDir });
    expect(exported.messages).toHaveLength(revert?.rows.message ?? -1);
  });

  it('beside a running opencode serve: names it, VACUUM refuses, a delete goes ahead with its VACUUM deferred', async () => {
    const plain = data.sessions('plain')[0]?.id as string;
    await withServe(data.env, async (url) => {
      const vacuum = runCli(['--db', data.dbPath, 'vacuum'], { env });
      expect(vacuum.status).toBe(1);
      expect(vacuum.stderr).toMatch(/OpenCode \(pid \d+ opencode\) has .*opencode\.db open/);
      expect(vacuum.stderr).toContain('nothing was changed');

      const removed = runCli(['--db', data.dbPath, '--json', 'delete', plain, '--yes'], { env });
      expect(removed.status, removed.stderr).toBe(0);
      expect(removed.stderr).toMatch(/OpenCode \(pid \d+ opencode\)/);
      expect(removed.stderr).toMatch(/waits: the freed space stays inside the file/);
      expect(JSON.parse(removed.stdout)).toMatchObject({ evicted: [plain], reclaim: 'deferred' });

      const listed = await listSessions(url);
      expect(listed.classic.map((s) => s.id)).not.toContain(plain);
      expect(listed.classic.length).toBeGreaterThan(10);
    }, { cwd: data.projectDir });
  });
});
