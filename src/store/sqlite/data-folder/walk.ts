/**
 * Disk usage as `du -sb` counts it (apparent sizes of files, folders and links; a hard-linked
 * file once), walked depth first with one open directory handle per level, so a folder of a
 * million loose git objects costs a few handles, never a list of its names.
 */
import { lstatSync, opendirSync, type Dir, type Stats } from 'node:fs';
import { join } from 'node:path';

export interface DiskUsage {
  bytes: number;
  entries: number;
}

/** Called for every entry below the walked path (not for the path itself). */
export type WalkVisitor = (path: string, stat: Stats, parents: readonly string[]) => void;

const lstatOrNull = (path: string): Stats | null => {
  try {
    return lstatSync(path);
  } catch {
    return null;
  }
};

/** Counts paths the way one `du -sb a b c` run does: an inode seen twice is counted once. */
export class UsageCounter {
  private readonly linked = new Set<string>();

  private counts(stat: Stats): boolean {
    if (stat.isDirectory() || stat.nlink <= 1) return true;
    const key = `${stat.dev}:${stat.ino}`;
    if (this.linked.has(key)) return false;
    this.linked.add(key);
    return true;
  }

  /** One entry alone (a file, or a folder without what it holds). */
  entry(path: string): DiskUsage {
    const stat = lstatOrNull(path);
    return stat && this.counts(stat) ? { bytes: stat.size, entries: 1 } : { bytes: 0, entries: 0 };
  }

  /** A path and, when it is a folder (not a link to one), everything below it; unreadable parts are skipped. */
  tree(path: string, visit?: WalkVisitor): DiskUsage {
    const usage = this.entry(path);
    const top = lstatOrNull(path);
    if (!top?.isDirectory()) return usage;
    const names: string[] = [];
    const open: { dir: Dir; path: string }[] = [];
    const enter = (dirPath: string): void => {
      try {
        open.push({ dir: opendirSync(dirPath), path: dirPath });
        names.push(dirPath);
      } catch {
        // unreadable folder: its own size was counted, its contents cannot be
      }
    };
    enter(path);
    while (open.length > 0) {
      const level = open[open.length - 1] as { dir: Dir; path: string };
      const dirent = level.dir.readSync();
      if (dirent === null) {
        level.dir.closeSync();
        open.pop();
        names.pop();
        continue;
      }
      const child = join(level.path, dirent.name);
      const stat = lstatOrNull(child);
      if (!stat) continue;
      if (this.counts(stat)) {
        usage.bytes += stat.size;
        usage.entries++;
      }
      visit?.(child, stat, names);
      if (stat.isDirectory()) enter(child);
    }
    return usage;
  }
}

/** Lists one folder's entry names (empty when it is missing or unreadable), streamed. */
export function* folderEntries(path: string): Generator<string> {
  let dir: Dir;
  try {
    dir = opendirSync(path);
  } catch {
    return;
  }
  try {
    for (let dirent = dir.readSync(); dirent !== null; dirent = dir.readSync()) yield dirent.name;
  } finally {
    dir.closeSync();
  }
}
