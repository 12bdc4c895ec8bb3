/**
 * Running a command under a memory limit for the whole process (not only the V8 heap), and
 * measuring its peak RSS either way.
 *
 * What works where (found on our Linux CI machines, 2 cores, no swap):
 *  - RLIMIT_DATA (`ulimit -d` in /bin/sh, then exec): since Linux 4.7 it caps private writable
 *    mappings, i.e. malloc'd and mmap'd memory that can become resident, while V8's large
 *    PROT_NONE reservations do not count. Calibrated: under a 200 MB limit Node allocates
 *    ~145 MB of Buffers with ~185 MB RSS, then `Array buffer allocation failed` (SQLite reports
 *    SQLITE_NOMEM). This is the enforcement used.
 *  - RLIMIT_AS is no use for Node: it reserves ~730 MB of address space before running any code.
 *  - util-linux `prlimit` crashed (SIGSEGV) here for every memory limit, even on /bin/true.
 *  - cgroups: the v2 hierarchy has no memory controller, and the v1 memory hierarchy holds the
 *    groups of whatever runs the machine, not ours to change. Not used.
 * Peak RSS comes from wait4's ru_maxrss through /usr/bin/time (the largest process of the
 * command, a pipeline included); without /usr/bin/time it is left null and only the limit holds.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

export type MemoryEnforcement = 'rlimit-data' | 'none';

export interface MemoryLimitOptions {
  /** The bound on peak resident memory: enforced as RLIMIT_DATA where that works, always measured. */
  rssBytes: number;
  /** For a node command: `--max-old-space-size` in MB, put before its arguments. */
  heapMB?: number;
  /** false: only measure (to show that a run goes over the bound when nothing stops it). */
  enforce?: boolean;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

export interface MemoryLimitedRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Peak RSS of the command's largest process, or null when it could not be measured. */
  peakRssBytes: number | null;
  /** How the bound was enforced for this run. */
  enforcement: MemoryEnforcement;
  /** Exit 0, no signal, and the measured peak (when there is one) within the bound. */
  withinLimit: boolean;
}

const TIME = '/usr/bin/time';
let probed: { enforcement: MemoryEnforcement; detail: string } | undefined;

/** Whether RLIMIT_DATA stops a 128 MB allocation under a 64 MB limit and allows it under 1 GB (probed once). */
export function memoryEnforcement(): { enforcement: MemoryEnforcement; detail: string } {
  if (probed) return probed;
  const allocate = (limitKB: number): number | null =>
    spawnSync('/bin/sh', ['-c', `ulimit -d ${limitKB} && exec "$0" -e "Buffer.alloc(128 << 20, 1)"`, process.execPath], {
      stdio: 'ignore',
    }).status;
  const stopped = allocate(64 * 1024) !== 0;
  const allowed = allocate(1024 * 1024) === 0;
  probed =
    stopped && allowed
      ? { enforcement: 'rlimit-data', detail: 'RLIMIT_DATA (ulimit -d) stops a 128 MB allocation under 64 MB and allows it under 1 GB' }
      : { enforcement: 'none', detail: `RLIMIT_DATA does not work here (stopped: ${stopped}, allowed: ${allowed}); peak RSS is only measured` };
  return probed;
}

/**
 * The command line that runs `command args` under `rssBytes` of memory (RLIMIT_DATA where that
 * works, else as given): for callers that spawn it themselves and talk to it while it runs.
 */
export function limitedCommand(command: string, args: readonly string[], rssBytes: number): { file: string; args: string[]; enforcement: MemoryEnforcement } {
  const enforcement = memoryEnforcement().enforcement;
  if (enforcement !== 'rlimit-data') return { file: command, args: [...args], enforcement };
  return { file: '/bin/sh', args: ['-c', `ulimit -d ${Math.ceil(rssBytes / 1024)} && exec "$@"`, 'sh', command, ...args], enforcement };
}

/** Runs `command args` synchronously under `options.rssBytes` of memory; see the file comment for how. */
export function runUnderMemoryLimit(command: string, args: readonly string[], options: MemoryLimitOptions): MemoryLimitedRun {
  const isNode = command === process.execPath || basename(command) === 'node';
  const argv = [...(isNode && options.heapMB !== undefined ? [`--max-old-space-size=${options.heapMB}`] : []), ...args];
  const enforcement: MemoryEnforcement = options.enforce === false ? 'none' : memoryEnforcement().enforcement;
  const limitKB = Math.ceil(options.rssBytes / 1024);
  // sh sets the limit on itself and execs the command, which keeps it (children inherit it too).
  const limited = enforcement === 'rlimit-data' ? ['/bin/sh', '-c', `ulimit -d ${limitKB} && exec "$@"`, 'sh', command, ...argv] : [command, ...argv];
  const measured = existsSync(TIME);
  const dir = mkdtempSync(join(tmpdir(), 'sk-memory-limit-'));
  const timeFile = join(dir, 'maxrss');
  try {
    const [file, ...rest] = measured ? [TIME, '-f', '%M', '-o', timeFile, ...limited] : limited;
    const result = spawnSync(file as string, rest, {
      encoding: 'utf8',
      env: options.env ?? process.env,
      maxBuffer: 64 * 1024 * 1024,
      timeout: options.timeoutMs ?? 300_000,
    });
    let peakRssBytes: number | null = null;
    if (measured && existsSync(timeFile)) {
      // GNU time writes "Command exited with non-zero status N" before the figure when it fails.
      const kb = Number(readFileSync(timeFile, 'utf8').trim().split('\n').pop());
      if (Number.isFinite(kb) && kb > 0) peakRssBytes = kb * 1024;
    }
    const ok = result.status === 0 && result.signal === null;
    return {
      status: result.status,
      signal: result.signal,
      stdout: result.stdout,
      stderr: result.stderr,
      peakRssBytes,
      enforcement,
      withinLimit: ok && (peakRssBytes === null || peakRssBytes <= options.rssBytes),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
