/** Copies between the SQLite file and a server: `migrate --to` and `restore --from`. */
import { SkError } from '../core/errors.js';
import type { HeldVersion } from '../store/mirror-target.js';
import { openMirrorSource, openMirrorTarget, openReader, openWriter } from '../store/open-store.js';
import { copySessions, type CopyProgress, type CopyResult } from '../store/transfer/copy.js';
import { forgetOldestRoot } from './retention.js';
import { sourceIdFor } from './sync.js';

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
export async function restoreFrom(options: { db: string; from: string; roots: readonly string[]; stateDir?: string; onProgress?: (p: CopyProgress) => void }): Promise<CopyResult> {
  if (options.roots.length === 0) throw new SkError('usage', 'restore --from needs at least one session id');
  const ids = await scope(options.from, options.roots);
  const source = await openReader(options.from);
  try {
    const target = await openWriter(options.db);
    let before: Map<string, HeldVersion> | null = null;
    let result: CopyResult;
    try {
      before = await heldNow(options.from, ids ?? []);
      result = await copySessions(source, target, { ids, copy: 'absent', onProgress: options.onProgress });
      forgetOldestRoot(options.db);
    } finally {
      await target.close();
    }
    if (before) await recordRestoredBases(options, result.copiedIds, before);
    return result;
  } finally {
    await source.close();
  }
}

/** The server's versions of `ids` as the mirror sees them (null: its mirror state cannot be read). */
async function heldNow(from: string, ids: readonly string[]): Promise<Map<string, HeldVersion> | null> {
  try {
    const target = await openMirrorTarget(from);
    try {
      return await target.heldVersions(ids);
    } finally {
      await target.close();
    }
  } catch {
    return null; // a role that may read but not keep mirror state: the restore stands without it
  }
}

/**
 * A session restored from the server is the server's version: that is this file's mirror base for
 * it, so a later change here goes over it and the next sync reports no conflict. Recorded only for
 * sessions the server still holds at the digest seen before the copy, and that the file has not
 * changed since (same time_updated).
 */
async function recordRestoredBases(options: { db: string; from: string; stateDir?: string }, copied: readonly string[], before: Map<string, HeldVersion>): Promise<void> {
  if (copied.length === 0) return;
  const { sourceId, name } = sourceIdFor(options.db, options.stateDir);
  const file = openMirrorSource(options.db);
  try {
    const target = await openMirrorTarget(options.from);
    try {
      const [after, marks] = await Promise.all([target.heldVersions(copied), file.sessionMarks(copied)]);
      await target.registerSource(sourceId, name);
      for (const id of copied) {
        const was = before.get(id);
        const now = after.get(id);
        const mark = marks.get(id);
        if (!was || !now || was.digest === null || now.digest !== was.digest || !mark || mark.updated !== now.updated) continue;
        await target.recordBase(sourceId, id, { updated: now.updated, mark: mark.mark, digest: now.digest });
      }
    } finally {
      await target.close();
    }
  } catch {
    // The sessions are back and whole; without the base, the next sync compares digests instead.
  } finally {
    await file.close();
  }
}
