/**
 * The guards before anything destructive, each tried as a user would trip over it: a damaged
 * file, an output path that is the database or a device, a second run, Ctrl-C in the middle,
 * a plan that would drift, restore input that is not a session, a table we do not archive, an
 * OpenCode 2.x file. Every case: one line on stderr, a non-zero exit, and nothing lost.
 */
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateFixture } from '../fixtures/generate.js';
import { verifyArchive } from '../../dist/store/archive/archive-read.js';
import { applyRetention, dryRun } from '../../dist/main/retention.js';
import { parseSessionConfig } from '../../src/core/config.js';
import { CLI, parseJson, runCli, tempDir, type CliRun } from '../helpers/env.js';

const dir = tempDir('sk-guards-');
const small = join(dir, 'small.db');
const large = join(dir, 'large.db');
let env: Record<string, string>;
let n = 0;

beforeAll(() => {
  generateFixture({ path: small, targetBytes: 4 * 1024 * 1024, rootSessions: 24, seed: 11, diffFiles: false, schema: '1.18', newerLayoutShare: 0.25 });
  generateFixture({ path: large, targetBytes: 80 * 1024 * 1024, rootSessions: 60, seed: 12, diffFiles: false, schema: '1.18', newerLayoutShare: 0.2 });
  env = { XDG_DATA_HOME: join(dir, 'data'), XDG_CACHE_HOME: join(dir, 'cache') };
}, 120_000);

/** A fresh copy of a fixture in a folder of its own. */
function copyOf(source: string): string {
  const path = join(tempDir('sk-guards-'), `copy-${n++}.db`);
  copyFileSync(source, path);
  return path;
}

const cli = (db: string, args: string[]): CliRun => runCli(['--db', db, ...args], { env });

function expectOneLine(run: CliRun, pattern: RegExp): void {
  expect(run.status, run.stderr).not.toBe(0);
  const lines = run.stderr.trim().split('\n');
  expect(lines, run.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^session-keeper: /);
  expect(lines[0]).toMatch(pattern);
}

/** Every session id with its row counts in the tables that hold its content. */
function contents(path: string): Map<string, string> {
  const db = new Database(path, { readonly: true });
  try {
    const rows = db.prepare(
      `SELECT s.id, (SELECT count(*) FROM message m WHERE m.session_id = s.id) || '/' ||
              (SELECT count(*) FROM part p WHERE p.session_id = s.id) || '/' ||
              (SELECT count(*) FROM session_message x WHERE x.session_id = s.id) AS counts FROM session s`,
    ).all() as { id: string; counts: string }[];
    return new Map(rows.map((r) => [r.id, r.counts]));
  } finally {
    db.close();
  }
}

const tempFilesIn = (folder: string): string[] => (existsSync(folder) ? readdirSync(folder).filter((name) => name.endsWith('.tmp')) : []);

/** Damages one leaf page of `message` so that quick_check fails while the header still opens. */
function damage(path: string): void {
  const db = new Database(path);
  const pageSize = db.pragma('page_size', { simple: true }) as number;
  const page = db.prepare(`SELECT pageno FROM dbstat WHERE name = 'message' AND pagetype = 'leaf' LIMIT 1 OFFSET 1`).pluck().get() as number;
  db.close();
  const bytes = readFileSync(path);
  Buffer.from([0x0d, 0, 0, 0, 0xff, ...new Array<number>(60).fill(0xee)]).copy(bytes, pageSize * (page - 1));
  writeFileSync(path, bytes);
}

describe('a damaged database', () => {
  it('retention --apply and delete refuse before anything is archived or deleted; the file is unchanged', () => {
    const path = copyOf(small);
    damage(path);
    const before = readFileSync(path);
    const archiveDir = join(dir, 'data', 'opencode', 'archive');
    const archivesBefore = existsSync(archiveDir) ? readdirSync(archiveDir).length : 0;
    expectOneLine(cli(path, ['retention', '--max-sessions', '2', '--apply', '--yes']), /is damaged \(quick_check: .*page \d+.*nothing was changed/i);
    const someId = [...contents(small).keys()][0] ?? '';
    expectOneLine(cli(path, ['delete', someId, '--yes']), /is damaged .*nothing was changed/);
    expect(readFileSync(path).equals(before)).toBe(true);
    expect(existsSync(archiveDir) ? readdirSync(archiveDir).length : 0).toBe(archivesBefore);
  });
});

describe('outputs that would overwrite what they should not', () => {
  it('the database, its -wal, the attachment cache, a device and an existing file are refused; nothing is written', () => {
    const path = copyOf(small);
    const before = readFileSync(path);
    const cacheDir = join(dir, 'cache', 'session-keeper', 'attachments');
    const existing = join(dir, 'existing.json');
    writeFileSync(existing, 'keep me');
    const cases: [string, RegExp][] = [
      [path, /is the database; choose another path/],
      [`${path}-wal`, /is the database's wal file/],
      [join(cacheDir, 'a.json'), /is inside the attachment cache/],
      ['/dev/full', /exists and is not a regular file/],
      [existing, /exists \(add --force to replace it\)/],
    ];
    const db = new Database(path, { readonly: true });
    const attachmentPart = db.prepare(`SELECT id FROM part WHERE data LIKE '%;base64,%' LIMIT 1`).pluck().get() as string;
    db.close();
    for (const [output, pattern] of cases) {
      expectOneLine(cli(path, ['archive', '--output', output]), pattern);
      expectOneLine(cli(path, ['attachment', attachmentPart, '--out', output]), pattern);
    }
    expect(readFileSync(path).equals(before)).toBe(true);
    expect(readFileSync(existing, 'utf8')).toBe('keep me');
    // A reader may leave an empty -wal beside a WAL database; no archive went into it.
    const wal = `${path}-wal`;
    expect(existsSync(wal) && readFileSync(wal).includes('"info"')).toBe(false);
  });
});

describe('one changing run per database', () => {
  it('a lock held by a live process is refused with who holds it; once that process is gone the lock is taken over', async () => {
    const path = copyOf(small);
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    try {
      writeFileSync(`${path}.session-keeper.lock`, JSON.stringify({ pid: holder.pid, host: hostname(), since: Date.now() }));
      expectOneLine(cli(path, ['retention', '--max-sessions', '2', '--apply', '--yes']), new RegExp(`another session-keeper \\(pid ${holder.pid} on .*is changing`));
      expect(contents(path).size).toBe(contents(small).size);
    } finally {
      holder.kill('SIGKILL');
    }
    await new Promise((resolve) => holder.once('exit', resolve));
    const applied = parseJson<{ evicted: string[] }>(cli(path, ['--json', 'retention', '--max-sessions', '2', '--apply', '--yes']));
    expect(applied.evicted.length).toBeGreaterThan(0);
    expect(existsSync(`${path}.session-keeper.lock`)).toBe(false);
  });

  it('two real runs at once: the second is refused while the first archives, and the first completes', async () => {
    const path = copyOf(large);
    const first = spawn(process.execPath, [CLI, '--db', path, '--json', 'retention', '--max-sessions', '5', '--apply', '--yes'], {
      env: { ...process.env, ...env, XDG_DATA_HOME: tempDir('sk-guards-') },
    });
    let out = '';
    first.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => first.once('exit', resolve));
    await until(() => existsSync(`${path}.session-keeper.lock`), 20_000);
    expectOneLine(cli(path, ['retention', '--max-sessions', '5', '--apply', '--yes']), /another session-keeper \(pid \d+ .*is changing/);
    expect(await exited).toBe(0);
    expect((JSON.parse(out) as { evicted: string[] }).evicted.length).toBe(55);
  }, 60_000);
});

async function until(test: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('Ctrl-C in the middle', () => {
  it('mid-archive: no temporary file and no archive are left, the database is unchanged', async () => {
    const path = copyOf(large);
    const out = join(tempDir('sk-guards-'), 'all.json');
    const before = contents(path);
    const child = spawn(process.execPath, [CLI, '--db', path, 'archive', '--output', out], { env: { ...process.env, ...env } });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    await until(() => tempFilesIn(join(out, '..')).length > 0, 20_000);
    child.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(130);
    expect(stderr.trim()).toMatch(/^session-keeper: interrupted/);
    expect(tempFilesIn(join(out, '..'))).toEqual([]);
    expect(existsSync(out)).toBe(false);
    expect(contents(path)).toEqual(before);
  }, 60_000);

  it('mid-delete: every session is in the database or in the archive, which verifies; no temporary file', async () => {
    const path = copyOf(large);
    const before = contents(path);
    const data = tempDir('sk-guards-');
    const archiveDir = join(data, 'opencode', 'archive');
    const child = spawn(process.execPath, [CLI, '--db', path, 'retention', '--max-sessions', '2', '--apply', '--yes'], {
      env: { ...process.env, ...env, XDG_DATA_HOME: data },
    });
    // The archive is renamed into place once written and verified-to-disk: then the deletes begin.
    await until(() => existsSync(archiveDir) && readdirSync(archiveDir).some((name) => name.endsWith('.json.gz')), 30_000);
    await new Promise((resolve) => setTimeout(resolve, 150));
    child.kill('SIGINT');
    await new Promise((resolve) => child.once('exit', resolve));
    expect(tempFilesIn(archiveDir)).toEqual([]);
    const after = contents(path);
    const archive = join(archiveDir, readdirSync(archiveDir).find((name) => name.endsWith('.json.gz')) ?? '');
    const archived = new Set((await verifyArchive(archive)).map((s) => s.id));
    for (const id of before.keys()) expect(after.has(id) || archived.has(id), id).toBe(true);
    for (const [id, counts] of after) expect(counts).toBe(before.get(id));
    const db = new Database(path, { readonly: true });
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    db.close();
  }, 60_000);
});

describe('the plan the user saw', () => {
  it('apply with a size target evicts exactly the dry run plan, in one round', () => {
    const path = copyOf(small);
    const planned = parseJson<{ evict: { id: string }[] }>(cli(path, ['--json', 'retention', '--max-size-mb', '2'])).evict.map((s) => s.id);
    expect(planned.length).toBeGreaterThan(0);
    expect(planned.length).toBeLessThan(contents(path).size);
    const applied = parseJson<{ evicted: string[] }>(cli(path, ['--json', 'retention', '--max-size-mb', '2', '--apply', '--yes']));
    expect([...applied.evicted].sort()).toEqual([...planned].sort());
  });

  it('without a terminal and without --yes nothing destructive runs: nobody saw the plan', () => {
    const path = copyOf(small);
    const before = readFileSync(path);
    expectOneLine(cli(path, ['retention', '--max-sessions', '2', '--apply']), /Archive and delete these \d+ sessions: not asked, since this is not a terminal; nothing was changed \(add --yes/);
    const id = [...contents(small).keys()][0] ?? '';
    expectOneLine(cli(path, ['delete', id]), /not a terminal; nothing was changed/);
    expectOneLine(cli(path, ['compact', '--apply']), /not a terminal; nothing was changed|Nothing to compact/);
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  it('a session that joins the plan after it was shown is left for the next run', async () => {
    const path = copyOf(small);
    const config = parseSessionConfig({ maxSessions: 4, archiveDir: join(tempDir('sk-guards-'), 'archive') });
    const plan = await dryRun({ db: path, config });
    expect(plan.evict.length).toBeGreaterThan(2);
    // What the user saw: the plan less its last session, as if OpenCode wrote a session meanwhile.
    const shown = plan.evict.slice(0, -1).map((e) => e.id);
    const logged: string[] = [];
    const result = await applyRetention({ db: path, config, cacheDir: join(dir, 'cache'), seen: new Set(shown), log: (line) => logged.push(line) });
    expect([...result.evicted].sort()).toEqual([...shown].sort());
    expect(contents(path).has(plan.evict.at(-1)?.id ?? '')).toBe(true);
    expect(logged.join('\n')).toMatch(/1 more qualified after the plan was shown and were left for the next run/);
  });
});

describe('restore input that is not a session', () => {
  it.each([
    ['[{"info":{"id":"ses_x"}}]', /#0 \(ses_x\): .*missing/],
    ['[{"info":{"id":"ses_a","directory":"/p","title":"t","time":{"created":1,"updated":2}},"messages":[]}, 17]', /#1/],
    ['{"not":"an array"', /./],
  ])('%s is refused and nothing is inserted', (text, pattern) => {
    const path = copyOf(small);
    const before = contents(path);
    const file = join(tempDir('sk-guards-'), 'bad.json');
    writeFileSync(file, text);
    expectOneLine(cli(path, ['restore', file]), pattern);
    expect(contents(path)).toEqual(before);
  });
});

describe('what session-keeper does not know', () => {
  it('a table that cascades from session and that the archiver does not know stops every delete, naming it', () => {
    const path = copyOf(small);
    const db = new Database(path);
    db.exec(`CREATE TABLE session_pin (session_id text NOT NULL REFERENCES session(id) ON DELETE CASCADE, note text)`);
    const id = db.prepare(`SELECT id FROM session WHERE parent_id IS NULL LIMIT 1`).pluck().get() as string;
    db.prepare(`INSERT INTO session_pin VALUES (?, 'mine')`).run(id);
    db.close();
    const before = contents(path);
    expectOneLine(cli(path, ['retention', '--max-sessions', '2', '--apply', '--yes']), /session data in session_pin, .*nothing was deleted/);
    expectOneLine(cli(path, ['delete', id, '--yes']), /session_pin/);
    expect(contents(path)).toEqual(before);
  });

  it('an OpenCode 2.x file is read and named, and nothing in it is changed', () => {
    const path = copyOf(small);
    const db = new Database(path);
    db.exec(`CREATE TABLE session_v2 (id text PRIMARY KEY, data text)`);
    db.close();
    const before = readFileSync(path);
    expect(cli(path, ['stats']).stdout).toMatch(/Layout\s+OpenCode 2\.x/);
    expectOneLine(cli(path, ['retention', '--max-sessions', '2', '--apply', '--yes']), /OpenCode 2\.x file .*changes nothing in it yet; nothing was changed/);
    expect(readFileSync(path).equals(before)).toBe(true);
  });
});
