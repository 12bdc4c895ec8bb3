/**
 * Where a command may write: never onto the database or its -wal/-shm, never inside the attachment
 * cache, never onto something that is not a regular file (a device, a folder), and onto an existing
 * file only when the user said --force. Checked before anything is read or written.
 */
import { existsSync, lstatSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { SkError } from '../core/errors.js';

export interface OutputContext {
  /** The SQLite file the command works on (a connection string protects nothing on disk). */
  db: string;
  cacheDir: string;
  force: boolean;
}

/** The path as it will be reached: its folder's real path, and its own name. */
function realTarget(path: string): string {
  const full = resolve(path);
  try {
    return realpathSync(full);
  } catch {
    let parent = dirname(full);
    const tail = [basename(full)];
    // The nearest folder that exists decides where the new file really lands.
    while (!existsSync(parent) && dirname(parent) !== parent) {
      tail.unshift(basename(parent));
      parent = dirname(parent);
    }
    try {
      return resolve(realpathSync(parent), ...tail);
    } catch {
      return full;
    }
  }
}

const inside = (root: string, path: string): boolean => {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel) && !rel.split(sep).includes('..'));
};

function sameFile(a: string, b: string): boolean {
  try {
    const [x, y] = [statSync(a), statSync(b)];
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false;
  }
}

function refuseProtected(target: string, context: OutputContext, what: string): void {
  const db = realTarget(context.db);
  for (const own of [db, `${db}-wal`, `${db}-shm`, `${db}-journal`]) {
    if (target === own || sameFile(target, own)) throw new SkError('usage', `${what} ${target} is the database${own === db ? '' : `'s ${own.slice(db.length + 1)} file`}; choose another path`);
  }
  const cache = realTarget(context.cacheDir);
  if (inside(cache, target)) throw new SkError('usage', `${what} ${target} is inside the attachment cache ${cache}; choose another path`);
}

/** Checks a file a command is about to create (an archive, a decoded attachment); returns its absolute path. */
export function checkOutputFile(path: string, context: OutputContext, what = 'output'): string {
  const target = realTarget(path);
  refuseProtected(target, context, what);
  if (existsSync(path) || existsSync(target)) {
    const stat = lstatSync(existsSync(path) ? path : target);
    if (!stat.isFile() && !stat.isSymbolicLink()) throw new SkError('usage', `${what} ${resolve(path)} exists and is not a regular file`);
    if (!statSync(target).isFile()) throw new SkError('usage', `${what} ${resolve(path)} exists and is not a regular file`);
    if (!context.force) throw new SkError('usage', `${what} ${resolve(path)} exists (add --force to replace it)`);
  }
  return target;
}

/** Checks a folder a command will write files into (`archive --split`); returns its absolute path. */
export function checkOutputFolder(path: string, context: OutputContext, what = 'output folder'): string {
  const target = realTarget(path);
  refuseProtected(target, context, what);
  if (existsSync(target) && !statSync(target).isDirectory()) throw new SkError('usage', `${what} ${resolve(path)} exists and is not a folder`);
  return target;
}
