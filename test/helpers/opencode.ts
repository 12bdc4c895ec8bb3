/**
 * The real OpenCode (opencode-ai from npm) for tests: the installed binary, fresh copies of a data
 * folder it wrote (see test/opencode/build-data.ts for the scenarios), and ways to run it again.
 */
import Database from 'better-sqlite3';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import type { ClassicMessage, JsonObject } from '../opencode/api.ts';
import { cachedOpenCodeData, type Manifest, type ManifestSession } from '../opencode/build-data.ts';
import { installOpenCode } from '../opencode/install.ts';
import { startModelServer, type ModelServer, type ModelServerOptions } from '../opencode/model-server.ts';
import {
  describeRun, layoutOf, openCodeEnv, runOpenCodeWith, withServeWith, writeOpenCodeConfig,
  type OpenCodeLayout, type OpenCodeRun,
} from '../opencode/process.ts';

export { apiMessages, listSessions, classicMessages, v2Messages } from '../opencode/api.ts';
export type { ClassicMessage, ClassicSessionInfo, SessionMessage, SessionV2Info } from '../opencode/api.ts';
export type { Manifest, ManifestSession, StorageLayout } from '../opencode/build-data.ts';
export type { OpenCodeRun } from '../opencode/process.ts';
export { startModelServer, type ModelServer };

/** The installed binary: `.cache/opencode/<version>/install/node_modules/opencode-<os>-<arch>/bin/opencode`. */
export async function realOpenCode(): Promise<{ bin: string; version: string }> {
  const { bin, version } = await installOpenCode();
  return { bin, version };
}

export interface OpenCodeData {
  /** The copy's root: home/, project/ (the git repository the sessions ran in), scratch/, exports/. */
  root: string;
  home: string;
  /** Everything OpenCode needs to find this copy: HOME, XDG_*, OPENCODE_DISABLE_*; nothing of the machine's own. */
  env: NodeJS.ProcessEnv;
  /** `$XDG_DATA_HOME/opencode`. */
  dataDir: string;
  dbPath: string;
  /** The sessions' git repository in this copy (run `--session` continuations here, after relocation). */
  projectDir: string;
  layout: OpenCodeLayout;
  manifest: Manifest;
  bin: string;
  version: string;
  /** Starts the scripted model and points this copy's opencode.json at it (close it when done). */
  startModel(options?: ModelServerOptions): Promise<ModelServer>;
  /** The manifest's sessions of one scenario. */
  sessions(scenario: string): ManifestSession[];
  /** Deletes the copy. */
  remove(): void;
}

/**
 * How long a beforeAll that calls realOpenCodeData() should allow: the first call in a clean
 * checkout installs OpenCode and builds the data folder (1.5 to 2.5 minutes on 2 cores), and a
 * second test file asking meanwhile waits for that build.
 */
export const OPENCODE_DATA_TIMEOUT_MS = 600_000;

/** A model address nothing listens on: a copy runs nothing by accident before startModel(). */
const NO_MODEL = 'http://127.0.0.1:9/v1';

/**
 * Points the copy's rows at the copy's own folders. OpenCode runs a continued session in the
 * session's recorded directory (and, from another directory, 1.18.33 hangs after answering), so
 * without this a continuation would work in the shared cache. Only `session.directory`,
 * `session.path` (global project), `project.worktree` and `project_directory.directory` change;
 * paths inside JSON (message `path.cwd`, tool inputs, events) keep the build's paths.
 */
function relocate(dbPath: string, from: string, to: string): void {
  const db = new Database(dbPath);
  try {
    db.pragma('busy_timeout = 5000');
    const swap = (table: string, column: string, oldPrefix: string, newPrefix: string): void => {
      // OR REPLACE: a directory OpenCode already recorded for the copy's path would clash on the key.
      db.prepare(
        `UPDATE OR REPLACE ${table} SET ${column} = ? || substr(${column}, ?) WHERE ${column} = ? OR substr(${column}, 1, ?) = ?`,
      ).run(newPrefix, oldPrefix.length + 1, oldPrefix, oldPrefix.length + 1, `${oldPrefix}/`);
    };
    db.transaction(() => {
      swap('session', 'directory', from, to);
      swap('project', 'worktree', from, to);
      swap('project_directory', 'directory', from, to);
      // Sessions of the global project keep their directory without the leading slash as `path`.
      swap('session', 'path', from.replace(/^\//, ''), to.replace(/^\//, ''));
    })();
  } finally {
    db.close();
  }
}

/**
 * A fresh copy (in a temp folder) of the cached data folder and its HOME/XDG layout, ready to run
 * OpenCode against again. `relocate: false` keeps every row byte for byte as OpenCode wrote it;
 * its directories then name the temp folder it was built in, which no longer exists.
 */
export async function realOpenCodeData(options: { relocate?: boolean } = {}): Promise<OpenCodeData> {
  const cache = await cachedOpenCodeData();
  const root = mkdtempSync(join(tmpdir(), 'sk-opencode-'));
  const locks = join(layoutOf(cache.root).stateHome, 'opencode', 'locks');
  cpSync(cache.root, root, {
    recursive: true,
    // Lock folders a stopped OpenCode left behind belong to processes of the build, not to the copy.
    filter: (src) => src !== locks && !src.startsWith(`${locks}${sep}`),
  });
  const layout = layoutOf(root);
  writeOpenCodeConfig(layout, NO_MODEL);
  if (options.relocate ?? true) relocate(layout.dbPath, cache.manifest.buildRoot, root);
  const env = openCodeEnv(layout);
  return {
    root,
    home: layout.home,
    env,
    dataDir: layout.dataDir,
    dbPath: layout.dbPath,
    projectDir: join(root, 'project'),
    layout,
    manifest: cache.manifest,
    bin: cache.bin,
    version: cache.version,
    async startModel(modelOptions?: ModelServerOptions): Promise<ModelServer> {
      const model = await startModelServer(modelOptions);
      writeOpenCodeConfig(layout, model.baseURL);
      return model;
    },
    sessions: (scenario) => cache.manifest.sessions.filter((s) => s.scenario === scenario),
    remove: () => rmSync(root, { recursive: true, force: true }),
  };
}

export interface RunOpenCodeOptions {
  /** Defaults to the env's HOME (no repository, nothing to harm). */
  cwd?: string;
  timeoutMs?: number;
  stdoutFile?: string;
}

function homeOf(env: NodeJS.ProcessEnv): string {
  if (env.HOME === undefined) throw new Error('the OpenCode env has no HOME: use realOpenCodeData().env');
  return env.HOME;
}

/** `opencode <args>` with the env of a data copy; resolves with the exit status, never throws on it. */
export async function runOpenCode(env: NodeJS.ProcessEnv, args: string[], options: RunOpenCodeOptions = {}): Promise<OpenCodeRun> {
  const { bin } = await realOpenCode();
  return runOpenCodeWith(bin, env, args, { cwd: options.cwd ?? homeOf(env), timeoutMs: options.timeoutMs, stdoutFile: options.stdoutFile });
}

/** What `opencode export` prints: the session's API form and its messages with their parts. */
export interface ExportedSession {
  info: JsonObject & { id: string; title: string };
  messages: ClassicMessage[];
}

/**
 * `opencode export <id>` into a file (OpenCode's piped stdout is cut once the pipe buffer is full
 * when it exits: 64 or 128 KiB), parsed.
 */
export async function exportSession(env: NodeJS.ProcessEnv, sessionId: string, options: { cwd?: string; file?: string } = {}): Promise<{ file: string; exported: ExportedSession }> {
  const dir = join(homeOf(env), 'exports');
  mkdirSync(dir, { recursive: true });
  const file = options.file ?? join(dir, `${sessionId}.json`);
  const args = ['export', sessionId];
  const run = await runOpenCode(env, args, { cwd: options.cwd, stdoutFile: file });
  if (run.status !== 0 || !existsSync(file)) throw new Error(describeRun(args, run));
  const text = readFileSync(file, 'utf8');
  try {
    return { file, exported: JSON.parse(text) as ExportedSession };
  } catch {
    throw new Error(`opencode export ${sessionId} printed no JSON (${text.length} chars): ${text.slice(0, 200)}`);
  }
}

/** `opencode import <file>` in `cwd` (the session moves into that directory's project). */
export async function importSession(env: NodeJS.ProcessEnv, file: string, options: { cwd?: string } = {}): Promise<OpenCodeRun> {
  const args = ['import', file];
  const run = await runOpenCode(env, args, { cwd: options.cwd });
  if (run.status !== 0) throw new Error(describeRun(args, run));
  return run;
}

/** Runs `fn` with the base URL of a fresh `opencode serve` (in `cwd`), always stopped afterwards. */
export async function withServe<T>(env: NodeJS.ProcessEnv, fn: (baseUrl: string) => Promise<T>, options: { cwd?: string } = {}): Promise<T> {
  const { bin } = await realOpenCode();
  return withServeWith(bin, env, options.cwd ?? homeOf(env), fn);
}
