/**
 * Which processes have a file open, read from /proc/<pid>/fd (Linux). Processes of other users
 * are not readable without privileges and are skipped; elsewhere `checked` is false.
 */
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';
import type { HoldingProcess } from '../../../core/data-folder.js';

export interface OpenFileScan {
  checked: boolean;
  /** For each path asked about that some process holds: the pids. */
  holders: Map<string, number[]>;
}

/** Scans every readable process's descriptors once for any of `paths` (as /proc shows them: real paths). */
export function processesHolding(paths: readonly string[]): OpenFileScan {
  const holders = new Map<string, number[]>();
  if (!existsSync('/proc/self/fd')) return { checked: false, holders };
  const wanted = new Set(paths);
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name) && Number(name) !== process.pid);
  } catch {
    return { checked: false, holders };
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (!wanted.has(target)) continue;
      const list = holders.get(target) ?? [];
      if (!list.includes(Number(pid))) list.push(Number(pid));
      holders.set(target, list);
    }
  }
  return { checked: true, holders };
}

const readOr = (path: string, fallback: string): string => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
};

/** What /proc says a process is: its program name and its command line, cut short. */
export function describeProcess(pid: number): HoldingProcess {
  const args = readOr(`/proc/${pid}/cmdline`, '').split('\u0000').filter(Boolean);
  const name = readOr(`/proc/${pid}/comm`, '').trim() || basename(args[0] ?? '?');
  const command = args.join(' ').slice(0, 200);
  // The binary is `opencode` (Desktop's sidecar `opencode-cli`); a node process running session-keeper is not it.
  const isOpenCode = /opencode/i.test(name) || (/opencode/i.test(basename(args[0] ?? '')) && !/session-keeper/.test(command));
  return { pid, name, command, isOpenCode };
}
