/**
 * What the read commands load: `list`, `show` and `stats` run in a child whose `--import` hook
 * records every module Node loads (ESM through a load hook, CommonJS through Module._load), each
 * chunk of the CLI bundle standing for the modules its source map lists, and
 * must load no server driver, no worker pool and, without a config file, no schema library or
 * JSONC parser, nor any other command's module. A config with settings for us is still validated
 * whole; one without them is parsed but needs no schema.
 * `stats` names the read and the write path large values take, in text and in `--json`.
 */
import Database from 'better-sqlite3';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { commandName } from '../../dist/cli/main.js';
import { generateFixture } from '../fixtures/generate.js';
import { CLI, parseJson, runCli, tempDir, type CliRun } from '../helpers/env.js';

const dir = tempDir('sk-cli-start-');
const db = join(dir, 'opencode.db');
const cacheDir = join(dir, 'cache');
const noConfig = join(dir, 'no-config');
const hooks = join(dir, 'hooks.mjs');
/** Where the bundle's chunks live (the CLI the tests run is its entry). */
const BUNDLE_DIR = dirname(CLI);
const recorder = join(dir, 'record.mjs');

/** Packages none of the read commands may load, whatever the config says about them. */
const NEVER_ON_READS = ['pg', 'mysql2', 'tedious', 'kysely', 'piscina', 'cli-progress'];
/** What only validating a config file needs. */
const CONFIG_ONLY = ['zod', 'jsonc-parser'];
/** Modules of the commands that write: loaded only when one of them runs. */
const OTHER_COMMANDS = ['cli/commands/sessions.js', 'cli/commands/trim.js', 'cli/commands/clean.js', 'cli/commands/plugin.js', 'cli/commands/external.js', 'cli/commands/sync.js', 'cli/commands/serve.js'];

interface Loaded {
  run: CliRun;
  packages: Set<string>;
  modules: string[];
  /** Files of ours Node loaded outside the bundle (dist-relative): none, when the bundle is whole. */
  unbundled: string[];
}

/** Runs the CLI with the recording hook; returns the packages (by name) and our modules (dist-relative) it loaded. */
function loading(args: string[], env: Record<string, string> = {}): Loaded {
  const log = join(dir, `loaded-${Math.random().toString(36).slice(2)}.txt`);
  writeFileSync(log, '');
  const run = runCli(args, {
    cacheDir,
    nodeArgs: ['--import', recorder],
    env: { XDG_CONFIG_HOME: noConfig, OPENCODE_CONFIG: '', OPENCODE_CONFIG_CONTENT: '', SK_LOADED_LOG: log, ...env },
  });
  const loadedFiles = readFileSync(log, 'utf8').split('\n').filter(Boolean);
  rmSync(log);
  const unbundled = loadedFiles.map((line) => /\/dist\/(.+\.js)$/.exec(line)?.[1]).filter((m): m is string => m !== undefined && !m.startsWith('bin/'));
  const lines = loadedFiles.flatMap(bundledSources);
  const packages = new Set<string>();
  for (const line of lines) {
    const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(line);
    if (match?.[1]) packages.add(match[1]);
  }
  const modules = lines.map((line) => /\/dist\/(.+\.js)$/.exec(line)?.[1]).filter((m): m is string => m !== undefined);
  return { run, packages, modules, unbundled };
}

/** A chunk of the CLI bundle stands for the files it was made of (its source map's sources); any other file for itself. */
function bundledSources(loaded: string): string[] {
  const path = loaded.startsWith('file:') ? fileURLToPath(loaded) : loaded;
  if (dirname(path) !== BUNDLE_DIR) return [path];
  if (!existsSync(`${path}.map`)) return []; // the bundler's own runtime helpers: no module of ours
  const map = JSON.parse(readFileSync(`${path}.map`, 'utf8')) as { sources: string[] };
  return map.sources.map((source) => resolve(BUNDLE_DIR, source));
}

beforeAll(() => {
  generateFixture({ path: db, targetBytes: 4 * 1024 * 1024, seed: 11, diffFiles: false });
  mkdirSync(noConfig, { recursive: true });
  writeFileSync(
    hooks,
    `import { appendFileSync } from 'node:fs';
let log;
export async function initialize(data) { log = data.log; }
export async function load(url, context, next) { appendFileSync(log, url + '\\n'); return next(url, context); }
`,
  );
  writeFileSync(
    recorder,
    `import Module, { register } from 'node:module';
import { appendFileSync } from 'node:fs';
const log = process.env.SK_LOADED_LOG;
register(${JSON.stringify(new URL(`file://${hooks}`).href)}, { data: { log } });
const load = Module._load;
Module._load = function (request, parent, isMain) {
  try { appendFileSync(log, Module._resolveFilename(request, parent, isMain) + '\\n'); } catch {}
  return load.apply(this, arguments);
};
`,
  );
});

describe('the read commands load only what they run', () => {
  it('list: no driver, pool, schema library, JSONC parser or other command', () => {
    const { run, packages, modules, unbundled } = loading(['--db', db, '--json', 'list', '--limit', '50']);
    expect(parseJson<{ sessions: unknown[] }>(run).sessions.length).toBeGreaterThan(0);
    // The hook saw the run: the CLI, its parser and the SQLite driver are there, out of the bundle.
    expect(modules).toContain('cli/main.js');
    expect(modules).toContain('main/service.js');
    expect(unbundled).toEqual([]);
    expect([...packages]).toEqual(expect.arrayContaining(['commander', 'better-sqlite3']));
    expect([...packages].filter((p) => NEVER_ON_READS.includes(p) || CONFIG_ONLY.includes(p))).toEqual([]);
    expect(modules.filter((m) => OTHER_COMMANDS.includes(m))).toEqual([]);
    // Neither the data-folder walk nor the writer is a page's business.
    expect(modules.filter((m) => m.startsWith('store/sqlite/data-folder/') || m === 'store/sqlite/sqlite-writer.js' || m === 'store/sqlite/session-import.js')).toEqual([]);
  });

  it('list with a cursor, show and stats: the same packages stay out', () => {
    const first = parseJson<{ sessions: { id: string }[]; nextCursor: string }>(runCli(['--db', db, '--json', 'list', '--limit', '2'], { cacheDir }));
    const runs = [
      loading(['--db', db, '--json', 'list', '--limit', '2', '--cursor', first.nextCursor]),
      loading(['--db', db, '--json', 'show', first.sessions[0]?.id as string]),
      loading(['--db', db, '--json', 'stats']),
    ];
    for (const { run, packages, modules } of runs) {
      expect(run.status, run.stderr).toBe(0);
      expect([...packages].filter((p) => NEVER_ON_READS.includes(p) || CONFIG_ONLY.includes(p))).toEqual([]);
      expect(modules.filter((m) => OTHER_COMMANDS.includes(m))).toEqual([]);
    }
    // A bad cursor is still refused, checked without the schema library.
    const bad = loading(['--db', db, 'list', '--cursor', Buffer.from('[1,""]').toString('base64url')]);
    expect(bad.run.status).toBe(2);
    expect(bad.run.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^session-keeper: invalid cursor: /)]);
    expect(bad.packages.has('zod')).toBe(false);
  });

  it('a config file that exists is validated whole: a bad value is one line, and a good one is used', () => {
    const configHome = join(dir, 'config-bad');
    mkdirSync(join(configHome, 'opencode'), { recursive: true });
    const file = join(configHome, 'opencode', 'opencode.json');
    writeFileSync(file, JSON.stringify({ session: { maxSizeMB: 'big' } }));
    const bad = loading(['--db', db, 'list'], { XDG_CONFIG_HOME: configHome });
    expect(bad.run.status).toBe(1);
    expect(bad.run.stderr.trim().split('\n')).toEqual([`session-keeper: config ${file}: session.maxSizeMB: expected a positive number, got "big"`]);
    expect(bad.packages.has('zod')).toBe(true);

    writeFileSync(file, JSON.stringify({ session: { maxSizeMB: 500, typo: 1 } }));
    const good = loading(['--db', db, '--json', 'list', '--limit', '3'], { XDG_CONFIG_HOME: configHome });
    expect(parseJson<{ sessions: unknown[] }>(good.run).sessions).toHaveLength(3);
    expect([...good.packages].filter((p) => NEVER_ON_READS.includes(p))).toEqual([]);
    // The retention dry run reads the same file: its limit is the config's.
    const plan = loading(['--db', db, '--json', 'retention'], { XDG_CONFIG_HOME: configHome });
    expect(plan.run.status, plan.run.stderr).toBe(0);
    expect(plan.run.stderr).toContain('session.typo: unknown key, ignored');
    expect(plan.modules).toContain('cli/commands/sessions.js');
  });

  it('a config file without settings for us is parsed (JSONC) but needs no schema; a broken one is still one line', () => {
    const configHome = join(dir, 'config-other');
    mkdirSync(join(configHome, 'opencode'), { recursive: true });
    const file = join(configHome, 'opencode', 'opencode.jsonc');
    writeFileSync(file, '// OpenCode\'s own settings only\n{"model": "anthropic/claude", "theme": "dark",}\n');
    const other = loading(['--db', db, '--json', 'list', '--limit', '3'], { XDG_CONFIG_HOME: configHome });
    expect(parseJson<{ sessions: unknown[] }>(other.run).sessions).toHaveLength(3);
    expect(other.packages.has('jsonc-parser')).toBe(true);
    expect(other.packages.has('zod')).toBe(false);
    writeFileSync(file, '{\n  "session": {\n');
    const broken = loading(['--db', db, 'list'], { XDG_CONFIG_HOME: configHome });
    expect(broken.run.status).toBe(1);
    expect(broken.run.stderr.trim().split('\n')).toEqual([expect.stringMatching(new RegExp(`^session-keeper: config ${file}:3:1: syntax error: `))]);
  });

  it('help still lists every command, and a misspelt one is still suggested', () => {
    const help = runCli(['--help']);
    expect(help.status).toBe(0);
    for (const name of ['stats', 'list', 'show', 'attachment', 'retention', 'archive', 'restore', 'delete', 'vacuum', 'compact', 'serve', 'clean', 'trim', 'startup', 'install-plugin', 'migrate', 'sync']) {
      expect(help.stdout).toMatch(new RegExp(`^  ${name}\\b`, 'm'));
    }
    const typo = runCli(['--db', db, 'retentoin']);
    expect(typo.status).toBe(2);
    expect(typo.stderr).toContain("(Did you mean retention?)");
    const sub = runCli(['--db', db, 'compact', '--help']);
    expect(sub.status).toBe(0);
    expect(sub.stdout).toContain('--dry-run');
  });

  it('the command name is found past the global options and their values', () => {
    expect(commandName(['--db', 'list', 'stats'])).toBe('stats');
    expect(commandName(['--db=x.db', '--json', 'show', 'ses_1'])).toBe('show');
    expect(commandName(['--config', 'c.json', '--cache-dir', 'd', 'trim', '--reasoning'])).toBe('trim');
    expect(commandName(['--json'])).toBeUndefined();
    expect(commandName(['--', 'list'])).toBe('list');
  });
});

describe('stats names the paths large values take', () => {
  it('with the extension: read in chunks, written from a spill file filled in place', () => {
    const stats = parseJson<{ valueReads?: string; valueWrites?: string }>(runCli(['--db', db, '--json', 'stats'], { cacheDir }));
    expect(stats.valueReads).toBe('chunked');
    expect(stats.valueWrites).toBe('lazy');
    const text = runCli(['--db', db, 'stats'], { cacheDir });
    expect(text.stdout).toMatch(/^Values +large ones read in chunks \(sk_chunks\); written from a spill file, filled in place by SQLite \(sk_text_zeros \+ sk_blob_write_file\)$/m);
  });

  it('a trigger on part: written by sk_file_text, since a trigger would see the zeros', () => {
    const triggered = join(dir, 'triggered.db');
    generateFixture({ path: triggered, targetBytes: 1024 * 1024, seed: 3, diffFiles: false });
    const handle = new Database(triggered);
    handle.exec("CREATE TRIGGER part_seen AFTER INSERT ON part BEGIN SELECT 1; END");
    handle.close();
    const stats = parseJson<{ valueWrites?: string }>(runCli(['--db', triggered, '--json', 'stats'], { cacheDir }));
    expect(stats.valueWrites).toBe('file');
    expect(runCli(['--db', triggered, 'stats'], { cacheDir }).stdout).toContain('written from a spill file SQLite reads into the value (sk_file_text');
  });

  it('with the extension turned off: both sides whole', () => {
    const env = { SESSION_KEEPER_NO_CHUNK_EXTENSION: '1' };
    const stats = parseJson<{ valueReads?: string; valueWrites?: string }>(runCli(['--db', db, '--json', 'stats'], { cacheDir, env }));
    expect(stats).toMatchObject({ valueReads: 'whole', valueWrites: 'whole' });
    expect(runCli(['--db', db, 'stats'], { cacheDir, env }).stdout).toMatch(/^Values +large ones read whole \(the sk_chunks extension is not loaded\); written whole from memory/m);
  });
});
