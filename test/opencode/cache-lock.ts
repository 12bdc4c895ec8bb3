/**
 * A lock between processes (vitest runs test files in separate forks) over one cache entry:
 * `mkdir` is atomic, so the process that creates the lock folder owns it; others wait. A lock whose
 * owner process is gone, or that is older than `staleMs`, is taken over.
 */
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

interface LockOwner {
  pid: number;
  time: number;
}

function ownerOf(lockDir: string): LockOwner | undefined {
  try {
    const parsed: unknown = JSON.parse(readFileSync(join(lockDir, 'owner.json'), 'utf8'));
    if (typeof parsed === 'object' && parsed !== null && 'pid' in parsed && 'time' in parsed) {
      const { pid, time } = parsed as Record<string, unknown>;
      if (typeof pid === 'number' && typeof time === 'number') return { pid, time };
    }
  } catch {
    // No owner file yet (the owner is between mkdir and write) or a torn one: judged by age below.
  }
  return undefined;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The stale owner's identity (to re-check just before removing it), or undefined when the lock is live. */
function staleOwner(lockDir: string, staleMs: number): string | undefined {
  const owner = ownerOf(lockDir);
  if (owner !== undefined) return !isAlive(owner.pid) || Date.now() - owner.time > staleMs ? `${owner.pid}@${owner.time}` : undefined;
  try {
    return Date.now() - statSync(lockDir).mtimeMs > 10_000 ? 'no owner' : undefined;
  } catch {
    return 'gone';
  }
}

function identity(lockDir: string): string {
  const owner = ownerOf(lockDir);
  return owner === undefined ? 'no owner' : `${owner.pid}@${owner.time}`;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs `work` while holding `lockDir`; waits up to `waitMs` for another holder to finish. */
export async function withCacheLock<T>(lockDir: string, work: () => Promise<T>, options: { staleMs?: number; waitMs?: number } = {}): Promise<T> {
  const staleMs = options.staleMs ?? 15 * 60_000;
  const deadline = Date.now() + (options.waitMs ?? 20 * 60_000);
  for (;;) {
    try {
      mkdirSync(lockDir);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const stale = staleOwner(lockDir, staleMs);
      // Another waiter may have taken the lock over meanwhile: remove it only if it is still the stale one.
      if (stale !== undefined && (stale === 'gone' || identity(lockDir) === stale)) {
        rmSync(lockDir, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for the cache lock ${lockDir}`);
      await sleep(250);
    }
  }
  writeFileSync(join(lockDir, 'owner.json'), JSON.stringify({ pid: process.pid, time: Date.now() } satisfies LockOwner));
  try {
    return await work();
  } finally {
    rmSync(lockDir, { recursive: true, force: true });
  }
}
