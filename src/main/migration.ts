/** Copies between the SQLite file and a server: `migrate --to` and `restore --from`. */
import { SkError } from '../core/errors.js';
import { openReader, openWriter } from '../store/open-store.js';
import { copySessions, type CopyProgress, type CopyResult } from '../store/transfer/copy.js';
import { forgetOldestRoot } from './retention.js';

export type { CopyProgress, CopyResult };

/** The sessions a copy covers: the given roots with their children, or every session. */
async function scope(location: string, roots: readonly string[] | undefined): Promise<string[] | undefined> {
  if (!roots) return undefined;
  const reader = await openReader(location);
  try {
    const missing = await reader.missingSessions(roots);
    if (missing[0] !== undefined) throw new SkError('not-found', `no session ${missing[0]} in ${reader.location}`);
    return await reader.sessionTrees(roots);
  } finally {
    await reader.close();
  }
}

/** Copies the file's sessions (or `roots` with their children) to the server: resumable, verified. */
export async function migrateTo(options: { db: string; to: string; roots?: readonly string[]; onProgress?: (p: CopyProgress) => void }): Promise<CopyResult> {
  const ids = await scope(options.db, options.roots);
  const source = await openReader(options.db);
  try {
    const target = await openWriter(options.to, { bulk: true });
    try {
      return await copySessions(source, target, { ids, copy: 'changed', onProgress: options.onProgress });
    } finally {
      await target.close();
    }
  } finally {
    await source.close();
  }
}

/** Brings sessions (with their children) back from a server into the file, byte for byte; present ones are skipped. */
export async function restoreFrom(options: { db: string; from: string; roots: readonly string[]; onProgress?: (p: CopyProgress) => void }): Promise<CopyResult> {
  if (options.roots.length === 0) throw new SkError('usage', 'restore --from needs at least one session id');
  const ids = await scope(options.from, options.roots);
  const source = await openReader(options.from);
  try {
    const target = await openWriter(options.db);
    try {
      const result = await copySessions(source, target, { ids, copy: 'absent', onProgress: options.onProgress });
      forgetOldestRoot(options.db);
      return result;
    } finally {
      await target.close();
    }
  } finally {
    await source.close();
  }
}
