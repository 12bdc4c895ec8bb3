/**
 * Temporary files this process is writing (archives on their way, decoded attachments): named
 * with the writer's pid, so that a Ctrl-C or a kill leaves nothing behind for long. The shells
 * call `removeTempFiles()` on SIGINT/SIGTERM; a later run sweeps what a killed one left.
 */
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const open = new Set<string>();

/** A temp name beside `target` that says whose it is: `.<name>.<pid>.<random>.tmp`. */
export function tempNameFor(dir: string, name: string, random: string): string {
  return join(dir, `.${name}.${process.pid}.${random}.tmp`);
}

export function trackTempFile(path: string): void {
  open.add(path);
}

export function untrackTempFile(path: string): void {
  open.delete(path);
}

/** Removes every temp file this process still has open (on an interrupt, before exiting). */
export function removeTempFiles(): void {
  for (const path of open) rmSync(path, { force: true });
  open.clear();
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes temp files in `dir` left by processes that are gone (killed mid-write). */
export function sweepTempFiles(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const swept: string[] = [];
  for (const name of names) {
    const match = /^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$/.exec(name);
    if (!match || alive(Number(match[1]))) continue;
    rmSync(join(dir, name), { force: true });
    swept.push(name);
  }
  return swept;
}
