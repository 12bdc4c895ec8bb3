/**
 * One changing session-keeper per database: a lock file beside it (`<db>.session-keeper.lock`),
 * made with O_EXCL and holding the owner's pid, host and start time. A second writer is refused
 * with who holds it; a lock whose process is gone is taken over. Readers never take it.
 */
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { SkError } from '../../core/errors.js';

interface LockOwner {
  pid: number;
  host: string;
  since: number;
}

export interface RunLock {
  release(): void;
}

const lockPath = (db: string): string => `${db}.session-keeper.lock`;

function alive(owner: LockOwner): boolean {
  if (owner.host !== hostname()) return true; // another machine's process cannot be checked: assume it lives
  try {
    process.kill(owner.pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readOwner(path: string): LockOwner | null {
  try {
    const owner = JSON.parse(readFileSync(path, 'utf8')) as LockOwner;
    return typeof owner.pid === 'number' ? owner : null;
  } catch {
    return null;
  }
}

/** Throws SkError('locked') naming the holder when a live session-keeper holds the lock; takes nothing. */
export function refuseWhenLocked(db: string): void {
  const owner = readOwner(lockPath(db));
  if (owner && !(owner.pid === process.pid && owner.host === hostname()) && alive(owner)) throw lockedBy(owner, db);
}

function lockedBy(owner: LockOwner, db: string): SkError {
  const since = new Date(owner.since).toISOString().slice(11, 19);
  return new SkError('locked', `another session-keeper (pid ${owner.pid} on ${owner.host}, since ${since} UTC) is changing ${db}; try again when it has finished`);
}

/** Takes the database's lock, or throws SkError('locked') naming the process that holds it. */
export function acquireRunLock(db: string): RunLock {
  const path = lockPath(db);
  for (let attempt = 0; attempt < 2; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx', 0o600);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw new SkError('read-only', `cannot take the lock ${path}: ${(error as Error).message}`);
      const owner = readOwner(path);
      if (owner && owner.pid === process.pid && owner.host === hostname()) {
        throw new SkError('locked', `${db} is already being changed by this process`);
      }
      if (owner && alive(owner)) throw lockedBy(owner, db);
      // Its owner is gone (killed, crashed): the lock is stale.
      rmSync(path, { force: true });
      continue;
    }
    try {
      writeSync(fd, JSON.stringify({ pid: process.pid, host: hostname(), since: Date.now() } satisfies LockOwner));
    } finally {
      closeSync(fd);
    }
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        const owner = readOwner(path);
        if (owner?.pid === process.pid) rmSync(path, { force: true });
      },
    };
  }
  throw new SkError('locked', `cannot take the lock ${path}: it keeps coming back`);
}
