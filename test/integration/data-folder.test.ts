/**
 * The data folder's clean-ups on generated OpenCode databases: the pre-SQLite JSON tree goes only
 * when every session in it is in a database, archived first and byte for byte in the archive;
 * orphan diffs are judged against every OpenCode database of the folder; leftover pack files held
 * open by a process or younger than a day stay; a file that changed after the plan stays; an
 * archive that cannot be written removes nothing. And the writers seen beside the database.
 */
import Database from 'better-sqlite3';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, closeSync, copyFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CleanPlan, CleanResult } from '../../src/core/data-folder.js';
import { MB } from '../../src/core/thresholds.js';
import { applyClean, planClean } from '../../dist/main/clean.js';
import { whoElseWrites } from '../../dist/main/maintenance.js';
import { applyRetention } from '../../dist/main/retention.js';
import { parseSessionConfig } from '../../src/core/config.js';
import { generateFixture } from '../fixtures/generate.js';
import { writeLegacyJsonTree } from '../fixtures/legacy-json.js';
import { parseJson, ROOT, runCli, tempDir } from '../helpers/env.js';

const dir = tempDir('sk-data-folder-');
const base = join(dir, 'base', 'opencode.db');
let copies = 0;

beforeAll(() => {
  mkdirSync(join(dir, 'base'), { recursive: true });
  generateFixture({ path: base, targetBytes: 3 * MB, seed: 13, schema: '1.18' });
}, 120_000);

/** A copy of the base database in a data folder of its own (`<run>/opencode/`), with the env that points XDG there. */
function freshFolder(): { db: string; folder: string; archiveDir: string; env: Record<string, string> } {
  const home = join(dir, `run-${copies++}`);
  const folder = join(home, 'opencode');
  mkdirSync(folder, { recursive: true });
  const db = join(folder, 'opencode.db');
  copyFileSync(base, db);
  for (const suffix of ['-wal', '-shm']) if (existsSync(base + suffix)) copyFileSync(base + suffix, db + suffix);
  const diffs = join(dir, 'base', 'storage', 'session_diff');
  if (existsSync(diffs)) {
    mkdirSync(join(folder, 'storage', 'session_diff'), { recursive: true });
    for (const name of readdirSync(diffs)) copyFileSync(join(diffs, name), join(folder, 'storage', 'session_diff', name));
  }
  const env = { XDG_DATA_HOME: home, XDG_CONFIG_HOME: join(home, 'config'), XDG_CACHE_HOME: join(home, 'cache'), HOME: home };
  return { db, folder, archiveDir: join(home, 'opencode', 'archive'), env };
}

const sha = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');
const du = (...paths: string[]): number => {
  const out = spawnSync('du', ['-sbc', ...paths], { encoding: 'utf8' });
  return Number(/(\d+)\s+total/.exec(out.stdout)?.[1]);
};
const tarList = (archive: string): string[] => spawnSync('tar', ['-tzf', archive], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).sort();
const rowsDigest = (db: string): string => {
  const conn = new Database(db, { readonly: true });
  try {
    const hash = createHash('sha256');
    for (const table of ['session', 'message', 'part']) for (const row of conn.prepare(`SELECT * FROM ${table} ORDER BY id`).iterate()) hash.update(JSON.stringify(row));
    return hash.digest('hex');
  } finally {
    conn.close();
  }
};

const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
});

describe('clean --legacy-json', () => {
  it('archives the tree whole, then removes exactly it, when every session in it is in the database', () => {
    const { db, folder, archiveDir, env } = freshFolder();
    const tree = writeLegacyJsonTree(db);
    const before = new Map(tree.files.map((f) => [relative(folder, f), sha(f)]));
    const rows = rowsDigest(db);
    const diffFiles = readdirSync(join(folder, 'storage', 'session_diff'));
    expect(tree.sessions.length).toBeGreaterThan(3);

    const plan = parseJson<CleanPlan>(runCli(['--db', db, '--json', 'clean', '--legacy-json'], { env }));
    const legacy = plan.legacyJson;
    expect(legacy?.ready).toBe(true);
    expect({ sessions: legacy?.sessions, messages: legacy?.messages, parts: legacy?.parts }).toEqual({ sessions: tree.sessions.length, messages: tree.messages, parts: tree.parts });
    const dirs = ['project', 'session', 'message', 'part', 'todo'].map((d) => join(folder, 'storage', d));
    expect(legacy?.bytes).toBe(du(...dirs));
    expect(plan.freesBytes).toBe(legacy?.bytes);
    expect(tree.files.every((f) => existsSync(f))).toBe(true);

    const result = parseJson<CleanResult>(runCli(['--db', db, '--json', 'clean', '--legacy-json', '--apply', '--yes'], { env }));
    expect(result.removed.legacyJson).toBe(tree.files.length);
    for (const d of dirs) expect(existsSync(d), d).toBe(false);
    expect(readdirSync(join(folder, 'storage', 'session_diff'))).toEqual(diffFiles);
    expect(rowsDigest(db)).toBe(rows);

    // The archive: mode 0600, exactly the tree's files, each byte for byte.
    expect(result.archive?.startsWith(archiveDir)).toBe(true);
    const archive = result.archive as string;
    expect(statSync(archive).mode & 0o777).toBe(0o600);
    expect(tarList(archive)).toEqual([...before.keys()].sort());
    const out = join(dir, `extract-${copies}`);
    mkdirSync(out);
    expect(spawnSync('tar', ['-xzf', archive, '-C', out]).status).toBe(0);
    for (const [name, digest] of before) expect(sha(join(out, name)), name).toBe(digest);
  });

  it('keeps the whole tree while a session in it is in no database, and names it', () => {
    const { db, folder, env } = freshFolder();
    const tree = writeLegacyJsonTree(db, { missingSession: 'ses_onlyinthejsontree0000001', unownedMessages: 2 });
    const plan = parseJson<CleanPlan>(runCli(['--db', db, '--json', 'clean', '--legacy-json'], { env }));
    expect(plan.legacyJson?.ready).toBe(false);
    expect(plan.legacyJson?.missing.sessions).toEqual(['ses_onlyinthejsontree0000001']);
    expect(plan.legacyJson?.missing.count).toBe(3);
    expect(plan.legacyJson?.unowned).toBe(2);
    expect(plan.freesBytes).toBe(0);
    const human = runCli(['--db', db, 'clean', '--legacy-json', '--apply', '--yes'], { env });
    expect(human.status).toBe(0);
    expect(human.stdout).toMatch(/kept: 3 ids of it are in no OpenCode database \(ses_onlyinthejsontree0000001/);
    expect(human.stdout).toMatch(/Nothing was removed/);
    expect(tree.files.every((f) => existsSync(f))).toBe(true);
    expect(existsSync(join(folder, 'archive'))).toBe(false);
  });

  it('refuses when the tree changed after the plan, and removes nothing when the archive cannot be written', async () => {
    const { db, folder } = freshFolder();
    const tree = writeLegacyJsonTree(db);
    const plan = await planClean({ db, targets: ['legacy-json'] });
    writeFileSync(join(folder, 'storage', 'part', 'late.json'), '{}');
    await expect(applyClean({ db, plan, archive: true, archiveDir: join(folder, 'archive') })).rejects.toThrow(/changed since the plan was made; nothing was removed/);
    const again = await planClean({ db, targets: ['legacy-json'] });
    const blocked = join(folder, 'not-a-folder');
    writeFileSync(blocked, 'x');
    await expect(applyClean({ db, plan: again, archive: true, archiveDir: blocked })).rejects.toThrow();
    expect(tree.files.every((f) => existsSync(f))).toBe(true);
  });
});

describe('clean --diffs and --snapshot-temp', () => {
  it('judges orphan diffs against every OpenCode database of the folder and removes exactly the orphans', () => {
    const { db, folder, env } = freshFolder();
    const diffDir = join(folder, 'storage', 'session_diff');
    mkdirSync(diffDir, { recursive: true });
    const kept = readdirSync(diffDir);
    // A second channel's database with one session: its diff is not an orphan.
    const beta = join(folder, 'opencode-beta.db');
    copyFileSync(base, beta);
    const betaDb = new Database(beta);
    const betaSession = betaDb.prepare('SELECT id FROM session LIMIT 1').pluck().get() as string;
    betaDb.close();
    const main = new Database(db);
    main.pragma('foreign_keys = ON');
    main.prepare('DELETE FROM session WHERE id = ?').run(betaSession);
    main.close();
    writeFileSync(join(diffDir, `${betaSession}.json`), '[{"file":"beta"}]');
    const orphan = join(diffDir, 'ses_deletedlongago0000000001.json');
    writeFileSync(orphan, '[{"file":"gone.txt","patch":"+x"}]');
    writeFileSync(join(diffDir, 'notes.txt'), 'not a diff file');

    const plan = parseJson<CleanPlan>(runCli(['--db', db, '--json', 'clean', '--diffs'], { env }));
    expect(plan.diffs?.files.map((f) => f.path)).toEqual([orphan]);
    const result = parseJson<CleanResult>(runCli(['--db', db, '--json', 'clean', '--diffs', '--apply', '--yes'], { env }));
    expect(result.removed.diffs).toBe(1);
    expect(tarList(result.archive as string)).toEqual(['storage/session_diff/ses_deletedlongago0000000001.json']);
    expect(readdirSync(diffDir).sort()).toEqual([...kept, `${betaSession}.json`, 'notes.txt'].sort());
  });

  it('removes leftover pack files older than a day that no process holds, without archiving them', async () => {
    const { db, folder, env } = freshFolder();
    const pack = join(folder, 'snapshot', 'prj', 'wt', 'objects', 'pack');
    mkdirSync(pack, { recursive: true });
    const old = join(pack, 'tmp_pack_Ab12Cd');
    const held = join(pack, 'tmp_pack_HeldOp');
    const young = join(pack, 'tmp_pack_Young1');
    const real = join(pack, 'pack-0123.pack');
    for (const [path, size] of [[old, 70_000], [held, 5_000], [young, 3_000], [real, 4_000]] as const) writeFileSync(path, Buffer.alloc(size, 7));
    const twoDaysAgo = (Date.now() - 2 * 86_400_000) / 1000;
    for (const path of [old, held, real]) utimesSync(path, twoDaysAgo, twoDaysAgo);
    const holder = spawn(process.execPath, ['-e', `require('fs').openSync(${JSON.stringify(held)}, 'r'); console.log('open'); setInterval(() => {}, 1000)`], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(holder);
    await new Promise((resolve) => holder.stdout?.once('data', resolve));

    const plan = parseJson<CleanPlan>(runCli(['--db', db, '--json', 'clean', '--snapshot-temp'], { env }));
    expect(plan.snapshotTemp?.files.map((f) => f.path)).toEqual([old]);
    expect(plan.snapshotTemp).toMatchObject({ bytes: 70_000, heldOpen: 1, younger: 1 });
    const result = parseJson<CleanResult>(runCli(['--db', db, '--json', 'clean', '--snapshot-temp', '--apply', '--yes'], { env }));
    expect(result).toMatchObject({ archive: null, removed: { snapshotTemp: 1 }, freedBytes: 70_000 });
    expect(readdirSync(pack).sort()).toEqual(['pack-0123.pack', 'tmp_pack_HeldOp', 'tmp_pack_Young1']);
  });

  it('keeps a planned file that changed before it was removed', async () => {
    const { db, folder } = freshFolder();
    const diffDir = join(folder, 'storage', 'session_diff');
    mkdirSync(diffDir, { recursive: true });
    const a = join(diffDir, 'ses_orphanaaaaaaaaaaaaaaaaaaa.json');
    const b = join(diffDir, 'ses_orphanbbbbbbbbbbbbbbbbbbb.json');
    writeFileSync(a, '[1]');
    writeFileSync(b, '[2]');
    const plan = await planClean({ db, targets: ['diffs'] });
    expect(plan.diffs?.files).toHaveLength(2);
    appendFileSync(b, ' ');
    const result = await applyClean({ db, plan, archive: true, archiveDir: join(folder, 'archive') });
    expect(result.removed.diffs).toBe(1);
    expect(result.skipped).toBe(1);
    expect(existsSync(a)).toBe(false);
    expect(readFileSync(b, 'utf8')).toBe('[2] ');
  });

  it('refuses on a damaged database, in one line, and removes nothing', () => {
    const { db, folder, env } = freshFolder();
    const diffDir = join(folder, 'storage', 'session_diff');
    mkdirSync(diffDir, { recursive: true });
    const orphan = join(diffDir, 'ses_orphanofadamagedfile00001.json');
    writeFileSync(orphan, '[]');
    const conn = new Database(db);
    conn.pragma('wal_checkpoint(TRUNCATE)');
    conn.close();
    const fd = openSync(db, 'r+');
    // Scribble over a few pages past the schema: the tables' b-trees no longer hold together.
    for (let at = 6 * 4096; at < statSync(db).size; at += 16 * 4096) writeSync(fd, Buffer.alloc(1024, 0xa5), 0, 1024, at);
    closeSync(fd);
    const run = runCli(['--db', db, 'clean', '--diffs', '--apply', '--yes'], { env });
    expect(run.status).not.toBe(0);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toMatch(/damaged|corrupt/);
    expect(existsSync(orphan)).toBe(true);
  });

  it('says one line for a server location, and nothing else is read', () => {
    const run = runCli(['--db', 'postgres://u:secret@127.0.0.1:1/x', 'clean']);
    expect(run.status).toBe(2);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).not.toContain('secret');
  });
});

describe('another writer beside the database', () => {
  const WRITER = join(ROOT, 'test', 'helpers', 'opencode-writer.mjs');

  it('is seen (its process and its commits), VACUUM refuses without a terminal, and retention defers its VACUUM', async () => {
    const { db, folder } = freshFolder();
    expect((await whoElseWrites(db, 100)).processes).toEqual([]);
    const writer = spawn(process.execPath, [WRITER, db, '20000'], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(writer);
    // Wait until it has the file open.
    for (let i = 0; i < 100 && (await whoElseWrites(db, 0)).processes.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    const presence = await whoElseWrites(db, 400);
    expect(presence.processes.map((p) => p.pid)).toEqual([writer.pid]);
    expect(presence.processes[0]).toMatchObject({ name: 'node', isOpenCode: false });
    expect(presence.committing).toBe(true);

    const vacuum = runCli(['--db', db, 'vacuum']);
    expect(vacuum.status).toBe(1);
    expect(vacuum.stderr).toContain(`another process (pid ${writer.pid} node) has ${db} open`);
    expect(vacuum.stderr).toMatch(/nothing was changed; run again with OpenCode closed \(or --yes\)/);

    // Retention beside a process that holds the file (the writer's own updates would keep its sessions active).
    writer.kill('SIGKILL');
    const holder = spawn(process.execPath, ['-e', `require('fs').openSync(${JSON.stringify(db)}, 'r'); console.log('open'); setInterval(() => {}, 1000)`], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(holder);
    await new Promise((resolve) => holder.stdout?.once('data', resolve));
    const lines: string[] = [];
    const config = parseSessionConfig({ maxSessions: 2, archiveDir: join(folder, 'archive') }, 'test');
    const result = await applyRetention({ db, config, cacheDir: join(folder, 'cache'), besideWriter: 'detect', log: (line) => lines.push(line) });
    expect(result.evicted.length).toBeGreaterThan(0);
    expect(result.reclaim).toBe('deferred');
    expect(lines.join('\n')).toMatch(/the VACUUM that gives the space back to the disk waits/);
  });
});
