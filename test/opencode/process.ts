/**
 * Running the real OpenCode binary in a private HOME/XDG layout: the folder layout, its
 * environment and config, one-shot commands (`run`, `export`, `import`) and `opencode serve`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MODEL_ID, PROVIDER_ID } from './model-server.ts';

/** Where one OpenCode "machine" keeps everything, all under `root`. */
export interface OpenCodeLayout {
  root: string;
  home: string;
  configHome: string;
  dataHome: string;
  cacheHome: string;
  stateHome: string;
  /** `$XDG_DATA_HOME/opencode`: opencode.db, storage/, snapshot/, log/, tool-output/. */
  dataDir: string;
  dbPath: string;
  configFile: string;
}

export function layoutOf(root: string): OpenCodeLayout {
  const home = join(root, 'home');
  const dataHome = join(home, '.local', 'share');
  const configHome = join(home, '.config');
  return {
    root,
    home,
    configHome,
    dataHome,
    cacheHome: join(home, '.cache'),
    stateHome: join(home, '.local', 'state'),
    dataDir: join(dataHome, 'opencode'),
    dbPath: join(dataHome, 'opencode', 'opencode.db'),
    configFile: join(configHome, 'opencode', 'opencode.json'),
  };
}

/** Creates the folders and a git identity (OpenCode's snapshots and our commits use git). */
export function createLayout(root: string): OpenCodeLayout {
  const layout = layoutOf(root);
  for (const dir of [layout.home, layout.configHome, layout.dataHome, layout.cacheHome, layout.stateHome, join(layout.configHome, 'opencode')]) {
    mkdirSync(dir, { recursive: true });
  }
  writeFileSync(
    join(layout.home, '.gitconfig'),
    '[user]\n\tname = Session Keeper Tests\n\temail = tests@session-keeper.invalid\n[init]\n\tdefaultBranch = main\n[commit]\n\tgpgsign = false\n',
  );
  return layout;
}

// Only these are passed on: API keys or OPENCODE_* settings of the machine must not reach the tests.
const PASSED_ON = ['PATH', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'SHELL', 'USER', 'LOGNAME', 'TERM'];

export function openCodeEnv(layout: OpenCodeLayout): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const key of PASSED_ON) if (process.env[key] !== undefined) env[key] = process.env[key];
  return {
    ...env,
    HOME: layout.home,
    XDG_CONFIG_HOME: layout.configHome,
    XDG_DATA_HOME: layout.dataHome,
    XDG_CACHE_HOME: layout.cacheHome,
    XDG_STATE_HOME: layout.stateHome,
    OPENCODE_DISABLE_AUTOUPDATE: '1',
    OPENCODE_DISABLE_MODELS_FETCH: '1',
    OPENCODE_DISABLE_SHARE: '1',
  };
}

/** The global opencode.json: our scripted provider as the only model, every permission allowed. */
export function writeOpenCodeConfig(layout: OpenCodeLayout, baseURL: string): void {
  const config = {
    $schema: 'https://opencode.ai/config.json',
    model: `${PROVIDER_ID}/${MODEL_ID}`,
    small_model: `${PROVIDER_ID}/${MODEL_ID}`,
    autoupdate: false,
    share: 'disabled',
    permission: { '*': 'allow' },
    // Off by default in 1.18; on, old tool outputs get `state.time.compacted` as real users see.
    compaction: { prune: true },
    provider: {
      [PROVIDER_ID]: {
        npm: '@ai-sdk/openai-compatible',
        name: 'Scripted test model',
        options: { baseURL, apiKey: 'test-key' },
        models: {
          [MODEL_ID]: {
            name: 'Scripted 1',
            attachment: true,
            reasoning: true,
            tool_call: true,
            modalities: { input: ['text', 'image', 'pdf'], output: ['text'] },
            limit: { context: 200_000, output: 8_000 },
          },
        },
      },
    },
  };
  mkdirSync(join(layout.configHome, 'opencode'), { recursive: true });
  writeFileSync(layout.configFile, `${JSON.stringify(config, null, 2)}\n`);
}

export interface OpenCodeRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  ms: number;
}

export interface RunOptions {
  /** Working directory; a session continued with `--session` must run in its own directory. */
  cwd: string;
  timeoutMs?: number;
  /** Send stdout to this file instead of collecting it (OpenCode's piped output can be cut short). */
  stdoutFile?: string;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Children die with the test process, whatever way it ends. */
function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of live) killGroup(c, 'SIGKILL');
    });
  }
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    // Its own process group: tools OpenCode started (bash) go too.
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // Already gone.
    }
  }
}

/** Runs `opencode <args>` to completion (or kills it at the timeout). */
export function runOpenCodeWith(bin: string, env: NodeJS.ProcessEnv, args: string[], options: RunOptions): Promise<OpenCodeRun> {
  const started = Date.now();
  const stdoutFd = options.stdoutFile === undefined ? undefined : openSync(options.stdoutFile, 'w');
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, {
      cwd: options.cwd,
      env,
      detached: true,
      stdio: ['ignore', stdoutFd ?? 'pipe', 'pipe'],
    });
    track(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (c: Buffer) => out.push(c));
    child.stderr?.on('data', (c: Buffer) => err.push(c));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child, 'SIGKILL');
    }, options.timeoutMs ?? 120_000);
    child.once('error', (error) => {
      clearTimeout(timer);
      if (stdoutFd !== undefined) closeSync(stdoutFd);
      reject(error);
    });
    child.once('close', (status, signal) => {
      clearTimeout(timer);
      if (stdoutFd !== undefined) closeSync(stdoutFd);
      resolve({
        status,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        timedOut,
        ms: Date.now() - started,
      });
    });
  });
}

/** One line saying why a run failed, for error messages. */
export function describeRun(args: string[], run: OpenCodeRun): string {
  const why = run.timedOut ? 'timed out' : `exited ${run.status ?? run.signal}`;
  const tail = run.stderr.replace(/\x1b\[[0-9;]*m/g, '').trim().split('\n').slice(-2).join(' | ');
  return `opencode ${args.map((a) => (a.length > 60 ? `${a.slice(0, 57)}...` : a)).join(' ')} ${why}${tail ? `: ${tail}` : ''}`;
}

export interface ServeHandle {
  baseUrl: string;
  stop(): Promise<void>;
}

/** Starts `opencode serve` on a free port and waits for it to say where it listens. */
export function startServe(bin: string, env: NodeJS.ProcessEnv, cwd: string, timeoutMs = 30_000): Promise<ServeHandle> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['serve', '--port', '0', '--hostname', '127.0.0.1'], { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    track(child);
    let seen = '';
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const stop = async (): Promise<void> => {
      killGroup(child, 'SIGTERM');
      const gone = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5_000))]);
      if (!gone) {
        killGroup(child, 'SIGKILL');
        await exited;
      }
    };
    const timer = setTimeout(() => {
      void stop();
      reject(new Error(`opencode serve did not report its address within ${timeoutMs} ms: ${seen.trim().slice(-300)}`));
    }, timeoutMs);
    const onData = (chunk: Buffer): void => {
      seen += chunk.toString('utf8');
      const match = /listening on (http:\/\/[^\s]+)/.exec(seen);
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        // Keep draining, or a full pipe would stall the server.
        child.stdout?.resume();
        resolve({ baseUrl: match[1].replace(/\/$/, ''), stop });
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (c: Buffer) => {
      seen += c.toString('utf8');
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`opencode serve exited (${code ?? signal}) before listening: ${seen.trim().slice(-300)}`));
    });
  });
}

/** Runs `fn` against a fresh `opencode serve`, which is always stopped afterwards. */
export async function withServeWith<T>(bin: string, env: NodeJS.ProcessEnv, cwd: string, fn: (baseUrl: string) => Promise<T>): Promise<T> {
  const serve = await startServe(bin, env, cwd);
  try {
    return await fn(serve.baseUrl);
  } finally {
    await serve.stop();
  }
}
