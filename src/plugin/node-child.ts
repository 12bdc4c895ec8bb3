/**
 * Starting this package's own CLI under Node from inside OpenCode's Bun process (where
 * better-sqlite3 cannot load): finding a `node`, the background check that outlives OpenCode, and
 * the short read-only commands the agent's tool runs.
 */
import { spawn } from 'node:child_process';
import { accessSync, closeSync, constants, mkdirSync, openSync, statSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The CLI bundle (dist/bin/session-keeper.js), beside this file's own folder. */
export const CLI_PATH = fileURLToPath(new URL('../bin/session-keeper.js', import.meta.url));

type Env = Record<string, string | undefined>;

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export type NodeLookup = { ok: true; node: string } | { ok: false; why: string };

/**
 * The Node to run the CLI with: the configured one (plugin option `node`, else
 * `$SESSION_KEEPER_NODE`), else the first `node` on PATH. `process.execPath` is Bun here, never it.
 */
export function findNode(configured: string | undefined, env: Env = process.env): NodeLookup {
  const wanted = configured ?? (env['SESSION_KEEPER_NODE'] || undefined);
  if (wanted !== undefined) {
    if (isAbsolute(wanted) && isExecutableFile(wanted)) return { ok: true, node: wanted };
    if (!isAbsolute(wanted)) return { ok: false, why: `the configured Node "${wanted}" is not an absolute path` };
    return { ok: false, why: `the configured Node ${wanted} is not an executable file` };
  }
  const names = process.platform === 'win32' ? ['node.exe', 'node.cmd'] : ['node'];
  for (const dir of (env['PATH'] ?? '').split(delimiter)) {
    if (dir === '') continue;
    for (const name of names) {
      const candidate = join(dir, name);
      if (isExecutableFile(candidate)) return { ok: true, node: candidate };
    }
  }
  return { ok: false, why: 'Node.js was not found on PATH (set the plugin option "node" or SESSION_KEEPER_NODE to its path)' };
}

export interface Background {
  pid: number | undefined;
  /** Resolves with the exit code (null when killed by a signal), or rejects when it could not start. */
  exited: Promise<number | null>;
}

/**
 * Starts `node CLI args` detached, in its own process group, stdout ignored and stderr to
 * `stderrFile`: it holds none of OpenCode's pipes, so OpenCode neither waits for it nor kills it
 * when it exits, and a retention that outlasts a short `opencode run` still finishes whole.
 */
export function startDetached(node: string, args: readonly string[], options: { cwd: string; stderrFile: string; env?: Env }): Background {
  const errFd = openSync(options.stderrFile, 'a', 0o600);
  try {
    const child = spawn(node, [CLI_PATH, ...args], {
      cwd: options.cwd,
      env: options.env ?? process.env,
      detached: true,
      stdio: ['ignore', 'ignore', errFd],
      windowsHide: true,
    });
    const exited = new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code) => resolve(code));
    });
    child.unref();
    return { pid: child.pid, exited };
  } finally {
    closeSync(errFd);
  }
}

export interface Captured {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node CLI args` to completion, output collected (the tool's read-only `stats`). */
export function runCaptured(node: string, args: readonly string[], options: { cwd: string; signal?: AbortSignal; timeoutMs: number }): Promise<Captured> {
  return new Promise((resolve, reject) => {
    const child = spawn(node, [CLI_PATH, ...args], { cwd: options.cwd, env: process.env, stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => err.push(chunk));
    const stop = (): void => {
      child.kill('SIGTERM');
    };
    const timer = setTimeout(stop, options.timeoutMs);
    options.signal?.addEventListener('abort', stop, { once: true });
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', stop);
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

/** Creates `dir` (0700) when missing. */
export function ensureDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}
