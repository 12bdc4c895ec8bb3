/**
 * The OpenCode plugin's pieces outside OpenCode, on generated databases: `install-plugin` (the
 * loader, atomic, never over a foreign file without --force), `startup` (what the plugin runs:
 * warnings once per crossing, retention archived first, a report whole or not at all, failures
 * reported), and the built plugin module itself loaded in Node with a recording client in place of
 * OpenCode's SDK: the startup check, idle re-checks and their throttle, the tool, a missing Node.
 * (The same module inside the real OpenCode binary: test/opencode/plugin.test.ts.)
 */
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MB } from '../../src/core/thresholds.js';
import { generateFixture } from '../fixtures/generate.js';
import { CLI, ROOT, runCli, tempDir } from '../helpers/env.js';

const dir = tempDir('sk-plugin-');
const base = join(dir, 'base.db');
const ENTRY = join(ROOT, 'dist', 'plugin', 'opencode-plugin.js');
let homes = 0;

beforeAll(() => {
  generateFixture({ path: base, targetBytes: 3 * MB, seed: 15, rootSessions: 12, diffFiles: false });
});

/** A private HOME/XDG with a copy of the base database as OpenCode's own, and a `session` block. */
function home(session?: unknown): { root: string; db: string; env: Record<string, string>; configFile: string } {
  const root = join(dir, `home-${homes++}`);
  const data = join(root, 'data');
  mkdirSync(join(data, 'opencode'), { recursive: true });
  mkdirSync(join(root, 'config', 'opencode'), { recursive: true });
  const db = join(data, 'opencode', 'opencode.db');
  copyFileSync(base, db);
  const configFile = join(root, 'config', 'opencode', 'opencode.json');
  if (session !== undefined) writeFileSync(configFile, JSON.stringify({ session }));
  const env = { HOME: root, XDG_DATA_HOME: data, XDG_CONFIG_HOME: join(root, 'config'), XDG_CACHE_HOME: join(root, 'cache'), OPENCODE_DB: db };
  return { root, db, env, configFile };
}

const roots = (db: string): number => {
  const conn = new Database(db, { readonly: true });
  try {
    return conn.prepare('SELECT count(*) FROM session WHERE parent_id IS NULL').pluck().get() as number;
  } finally {
    conn.close();
  }
};

describe('install-plugin', () => {
  it('writes the loader into the global plugins folder, replaces its own, refuses a foreign file without --force', async () => {
    const h = home();
    const first = runCli(['--json', 'install-plugin'], { env: h.env });
    expect(first.status, first.stderr).toBe(0);
    const result = JSON.parse(first.stdout) as { path: string; replaced: string; configEntry: string };
    expect(result.path).toBe(join(h.root, 'config', 'opencode', 'plugins', 'session-keeper.js'));
    expect(result.replaced).toBe('none');
    expect(result.configEntry).toBe(JSON.stringify(pathToFileURL(ENTRY).href));
    const text = readFileSync(result.path, 'utf8');
    expect(text.split('\n')[0]).toBe('// session-keeper OpenCode plugin loader');
    expect(text).toContain(`export { default } from ${JSON.stringify(pathToFileURL(ENTRY).href)};`);
    // The loader loads, and what it exports is the plugin function.
    const loaded = (await import(pathToFileURL(result.path).href)) as { default: unknown };
    expect(typeof loaded.default).toBe('function');
    expect((loaded.default as { name: string }).name).toBe('SessionKeeperPlugin');

    const again = runCli(['--json', 'install-plugin'], { env: h.env });
    expect((JSON.parse(again.stdout) as { replaced: string }).replaced).toBe('ours');

    writeFileSync(result.path, 'export default async () => ({});\n');
    const refused = runCli(['install-plugin'], { env: h.env });
    expect(refused.status).toBe(2);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toContain('was not written by session-keeper');
    expect(readFileSync(result.path, 'utf8')).toBe('export default async () => ({});\n');

    const forced = runCli(['install-plugin', '--force', '--node', process.execPath], { env: h.env });
    expect(forced.status, forced.stderr).toBe(0);
    expect(forced.stdout).toContain(`"plugin": [["${pathToFileURL(ENTRY).href}", { "node": "${process.execPath}" }]]`);
    expect(readFileSync(result.path, 'utf8')).toContain(`{ node: ${JSON.stringify(process.execPath)}, ...options }`);
    // Nothing half-written is left where OpenCode loads every *.js.
    expect(readdirSync(join(h.root, 'config', 'opencode', 'plugins'))).toEqual(['session-keeper.js']);
  });

  it('--project writes into .opencode/plugins of the current folder; a relative --node and a folder in the way are refused', () => {
    const h = home();
    const project = join(h.root, 'project');
    mkdirSync(project);
    const run = (args: string[]) =>
      spawnSync(process.execPath, [CLI, ...args], { cwd: project, env: { ...process.env, ...h.env }, encoding: 'utf8' });
    expect(run(['install-plugin', '--project']).status).toBe(0);
    expect(existsSync(join(project, '.opencode', 'plugins', 'session-keeper.js'))).toBe(true);
    expect(existsSync(join(h.root, 'config', 'opencode', 'plugins'))).toBe(false);
    const relative = run(['install-plugin', '--node', 'node']);
    expect(relative.status).toBe(2);
    expect(relative.stderr).toContain('--node expects the absolute path');
    mkdirSync(join(h.root, 'config', 'opencode', 'plugins', 'session-keeper.js'), { recursive: true });
    const folder = run(['install-plugin', '--force']);
    expect(folder.status).toBe(2);
    expect(folder.stderr).toContain('is not a regular file');
  });
});

describe('startup (what the plugin runs)', () => {
  it('needs --yes to apply; warnings once per crossing; --warnings-only never evicts; the report is whole and 0600', () => {
    const h = home({ maxSessions: 4, warnAtMB: [1] });
    const report = join(h.root, 'report.json');
    const refused = runCli(['startup', '--report', report], { env: h.env });
    expect(refused.status).toBe(2);
    expect(JSON.parse(readFileSync(report, 'utf8'))).toMatchObject({ ok: false, mode: 'startup', error: expect.stringContaining('pass --yes') });
    expect(roots(h.db)).toBe(12);

    const warnOnly = runCli(['--json', 'startup', '--warnings-only', '--report', report], { env: h.env });
    expect(warnOnly.status, warnOnly.stderr).toBe(0);
    const first = JSON.parse(readFileSync(report, 'utf8')) as { ok: true; newWarnings: { thresholdMB: number; fix: string }[]; evicted: number };
    expect(first.newWarnings.map((w) => w.thresholdMB)).toEqual([1]);
    expect(first.newWarnings[0]?.fix).toMatch(/^run: session-keeper retention --max-size-mb 1 --apply/);
    expect(first.evicted).toBe(0);
    expect(roots(h.db)).toBe(12);
    expect(statSync(report).mode & 0o777).toBe(0o600);

    const applied = runCli(['--json', 'startup', '--yes', '--report', report], { env: h.env });
    expect(applied.status, applied.stderr).toBe(0);
    const second = JSON.parse(readFileSync(report, 'utf8')) as { ok: true; newWarnings: unknown[]; evicted: number; archive: string; notes: string[] };
    expect(second.newWarnings).toEqual([]);
    expect(second.evicted).toBe(8);
    expect(existsSync(second.archive)).toBe(true);
    expect(second.notes.some((n) => n.includes('evicted 8') && n.includes(second.archive))).toBe(true);
    expect(roots(h.db)).toBe(4);
    expect(readdirSync(h.root).filter((n) => n.includes('.tmp'))).toEqual([]);
  });

  it('compacts the event log when compactEvents is on, and not again until it has grown', () => {
    const h = home({ compactEvents: true });
    const events = (): number => {
      const conn = new Database(h.db, { readonly: true });
      try {
        return conn.prepare('SELECT count(*) FROM event').pluck().get() as number;
      } finally {
        conn.close();
      }
    };
    const before = events();
    const first = JSON.parse(runCli(['--json', 'startup', '--yes'], { env: h.env }).stdout) as { notes: string[] };
    const removed = before - events();
    expect(removed).toBeGreaterThan(0);
    expect(first.notes.some((n) => n.includes(`compacted OpenCode's event log: ${removed} superseded snapshots`))).toBe(true);
    expect(roots(h.db)).toBe(12);
    const second = JSON.parse(runCli(['--json', 'startup', '--yes'], { env: h.env }).stdout) as { notes: string[] };
    expect(second.notes).toEqual([]);
  });

  it('a broken session block is a failure report naming the key, and nothing changes', () => {
    const h = home({ maxSessions: 'many' });
    const report = join(h.root, 'report.json');
    const run = runCli(['startup', '--yes', '--report', report], { env: h.env });
    expect(run.status).toBe(1);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    const failed = JSON.parse(readFileSync(report, 'utf8')) as { ok: false; error: string };
    expect(failed.ok).toBe(false);
    expect(failed.error).toContain('session.maxSessions');
    expect(roots(h.db)).toBe(12);
  });
});

interface Recorded {
  logs: { level: string; message: string }[];
  toasts: { message: string; variant: string }[];
}

type Hooks = {
  event: (input: { event: { type: string } }) => Promise<void>;
  tool: Record<string, { execute(args: Record<string, never>, context: { sessionID: string; directory: string; abort: AbortSignal }): Promise<string> }>;
};

describe('the plugin module, loaded in Node', () => {
  const saved = { ...process.env };
  let h: ReturnType<typeof home>;
  beforeAll(() => {
    h = home({ warnAtMB: [1] });
    // The plugin reads OpenCode's environment: here, this process's.
    Object.assign(process.env, h.env);
  });
  afterAll(() => {
    for (const key of Object.keys(h.env)) {
      if (saved[key] === undefined) delete process.env[key];
      else process.env[key] = saved[key];
    }
  });

  const recording = (): { client: unknown; seen: Recorded } => {
    const seen: Recorded = { logs: [], toasts: [] };
    const client = {
      app: { log: async ({ body }: { body: { level: string; message: string } }) => void seen.logs.push(body) },
      tui: { showToast: async ({ body }: { body: { message: string; variant: string } }) => void seen.toasts.push(body) },
    };
    return { client, seen };
  };
  const delivered = (): number => {
    const folder = join(h.env.XDG_DATA_HOME, 'session-keeper', 'plugin', 'delivered');
    return existsSync(folder) ? readdirSync(folder).filter((n) => n.endsWith('.json')).length : 0;
  };
  const until = async (what: () => boolean, ms = 30_000): Promise<void> => {
    const deadline = Date.now() + ms;
    while (!what()) {
      if (Date.now() > deadline) throw new Error('timed out');
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  it('warns once at start, re-checks on idle (throttled), answers the tool, and says in one line when Node is missing', async () => {
    const { SessionKeeperPlugin } = (await import(pathToFileURL(ENTRY).href)) as { SessionKeeperPlugin: (input: unknown, options?: unknown) => Promise<Hooks> };
    const { client, seen } = recording();
    const hooks = await SessionKeeperPlugin({ client, directory: h.root, worktree: h.root }, { node: process.execPath, recheckMinutes: 0.0001 });
    await until(() => delivered() === 1);
    await until(() => seen.toasts.length === 1);
    expect(seen.toasts[0]?.variant).toBe('warning');
    expect(seen.toasts[0]?.message).toContain('OpenCode database is');
    expect(seen.logs.filter((l) => l.level === 'warn')).toHaveLength(1);

    // Idle: the size again, nothing new crossed, nothing shown.
    await hooks.event({ event: { type: 'session.idle' } });
    await until(() => delivered() === 2);
    expect(seen.toasts).toHaveLength(1);
    // A threshold crossed since: the next idle shows it.
    writeFileSync(h.configFile, JSON.stringify({ session: { warnAtMB: [1, 2] } }));
    await new Promise((r) => setTimeout(r, 20));
    await hooks.event({ event: { type: 'session.idle' } });
    await until(() => delivered() === 3);
    await until(() => seen.toasts.length === 2);
    expect(seen.logs.every((l) => l.message.startsWith('session-keeper:'))).toBe(true);

    const answer = await hooks.tool['session_storage']?.execute({}, { sessionID: 'ses_x', directory: h.root, abort: new AbortController().signal });
    expect(answer).toContain('Payload by table');
    expect(answer).toContain(h.db);

    // The default throttle: an idle right after the start check starts nothing.
    const quiet = recording();
    const throttled = await SessionKeeperPlugin({ client: quiet.client, directory: h.root, worktree: h.root }, { node: process.execPath });
    await until(() => delivered() === 4);
    await throttled.event({ event: { type: 'session.idle' } });
    await new Promise((r) => setTimeout(r, 1500));
    expect(delivered()).toBe(4);

    const missing = recording();
    const none = await SessionKeeperPlugin({ client: missing.client, directory: h.root, worktree: h.root }, { node: join(h.root, 'no-such-node') });
    await until(() => missing.seen.logs.length === 1);
    await none.event({ event: { type: 'session.idle' } });
    await new Promise((r) => setTimeout(r, 300));
    expect(missing.seen.logs).toHaveLength(1);
    expect(missing.seen.logs[0]?.message).toContain('is not an executable file');
    expect(missing.seen.toasts).toEqual([]);
    expect(delivered()).toBe(4);
    expect(await none.tool['session_storage']?.execute({}, { sessionID: 'ses_x', directory: h.root, abort: new AbortController().signal })).toContain('cannot run');
  });
});
