/**
 * Is anyone else using this database? A process holding the file (or its -wal/-shm) open, seen
 * in /proc, or a connection committing while we watch: `PRAGMA data_version` moves, or the WAL
 * changes size or time. Said before any destructive step; VACUUM waits for a quiet file.
 */
import { realpathSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WriterPresence } from '../../../core/data-folder.js';
import { openConnection } from '../connection.js';
import { describeProcess, processesHolding } from './open-files.js';

const walMark = (path: string): string => {
  try {
    const stat = statSync(`${path}-wal`);
    return `${stat.size}:${stat.mtimeMs}`;
  } catch {
    return 'none';
  }
};

const realPath = (path: string): string => {
  try {
    return realpathSync(path);
  } catch {
    // -wal and -shm come and go: their folder's real path with their own name
    return join(realpathSync(dirname(path)), basename(path));
  }
};

export interface DetectOptions {
  /** How long to watch for commits; 0 checks processes only. */
  watchMs?: number;
}

export async function detectWriters(dbPath: string, options: DetectOptions = {}): Promise<WriterPresence> {
  const watchMs = options.watchMs ?? 250;
  const main = realPath(dbPath);
  const scan = processesHolding([main, `${main}-wal`, `${main}-shm`]);
  const pids = [...new Set([...scan.holders.values()].flat())].sort((a, b) => a - b);
  let committing = false;
  if (watchMs > 0) {
    const conn = openConnection(dbPath, { readonly: true });
    try {
      const version = (): number => conn.db.pragma('data_version', { simple: true }) as number;
      const before = { version: version(), wal: walMark(dbPath) };
      await sleep(watchMs);
      committing = version() !== before.version || walMark(dbPath) !== before.wal;
    } finally {
      conn.db.close();
    }
  }
  return { processes: pids.map(describeProcess), committing, processesChecked: scan.checked, watchedMs: watchMs };
}
