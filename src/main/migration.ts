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
  const scoped = await scope(options.db, options.roots);
  const source = await openReader(options.db);
  try {
    const ids = scoped ?? (await source.allSessionIds());
    // The progress total is summed on another thread while the server's schema is checked or made.
    const bytesTotal = source.contentBytesAside?.(ids);
    bytesTotal?.catch(() => undefined);
    const target = await openWriter(options.to, { bulk: true });
    try {
      return await copySessions(source, target, { ids, copy: 'changed', onProgress: options.onProgress, bytesTotal });
    } finally {
      await target.close();
    }
  } finally {
    await source.close();
  }
}

/** What `restoreFrom` did: the copy's figures over every tree it reached, and the roots a Cancel left. */
export type RestoreResult = CopyResult & { cancelled: boolean; notReached: string[] };

export interface RestoreOptions {
  db: string;
  from: string;
  roots: readonly string[];
  /** Where this file's mirror identity is kept (the sync state folder). */
  stateDir?: string;
  onProgress?: (p: CopyProgress) => void;
  /** Aborted: stop between two session trees; every tree reached is in the file whole and verified. */
  signal?: AbortSignal;
  /** Tests only: before each tree is copied (so a run can be seen, and cancelled, mid-way). */
  beforeTree?: (root: string) => Promise<void>;
}

/**
 * Brings sessions (with their children) back from a server into the file, byte for byte; present
 * ones are skipped. With a `signal`, one copy per root's tree, each verified before the next, so a
 * Cancel between two trees leaves only whole, checked trees behind; without, one copy of them all.
 */
export async function restoreFrom(options: RestoreOptions): Promise<RestoreResult> {
  if (options.roots.length === 0) throw new SkError('usage', 'restore --from needs at least one session id');
  const roots = [...new Set(options.roots)];
  // Nothing can stop it (the CLI): one copy of every tree, without a round of queries per tree.
  const stoppable = options.signal !== undefined || options.beforeTree !== undefined;
  const trees: string[][] = [];
  {
    const reader = await openReader(options.from);
    try {
      const missing = await reader.missingSessions(roots);
      if (missing[0] !== undefined) throw new SkError('not-found', `no session ${missing[0]} in ${reader.location}`);
      if (stoppable) for (const root of roots) trees.push(await reader.sessionTrees([root]));
      else trees.push(await reader.sessionTrees(roots));
    } finally {
      await reader.close();
    }
  }
  const source = await openReader(options.from);
  try {
    const target = await openWriter(options.db);
    let held: Map<string, HeldVersion> | null = null;
    let outcome: RestoreResult;
    try {
      held = await heldNow(options.from, trees.flat());
      const total = { sessions: trees.reduce((n, t) => n + t.length, 0), bytes: await source.contentBytes(trees.flat()) };
      const before = { sessions: 0, bytes: 0 };
      let result: RestoreResult | null = null;
      const notReached: string[] = [];
      for (const [i, ids] of trees.entries()) {
        await options.beforeTree?.(roots[i]!);
        if (options.signal?.aborted) {
          notReached.push(...roots.slice(i));
          break;
        }
        // Progress over the whole restore, not the one tree.
        const onProgress = (p: CopyProgress): void =>
          options.onProgress?.({ ...p, sessionsDone: before.sessions + p.sessionsDone, sessionsTotal: total.sessions, bytesDone: before.bytes + p.bytesDone, bytesTotal: total.bytes });
        const one = await copySessions(source, target, { ids, copy: 'absent', onProgress });
        before.sessions += ids.length;
        if (stoppable) before.bytes += await source.contentBytes(ids);
        result = result ? merged(result, one) : { ...one, cancelled: false, notReached };
      }
      forgetOldestRoot(options.db);
      outcome = result
        ? { ...result, cancelled: notReached.length > 0, notReached }
        : { target: target.location, sessions: 0, copied: 0, skipped: 0, copiedIds: [], skippedIds: [], messages: 0, parts: 0, rows: 0, bytes: 0, elapsedMs: 0, verified: true, counts: new Map(), cancelled: true, notReached };
    } finally {
      await target.close();
    }
    if (held) await recordRestoredBases(options, outcome.copiedIds, held);
    return outcome;
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

/** Two trees' copies as one. */
function merged(a: RestoreResult, b: CopyResult): RestoreResult {
  return {
    ...a,
    sessions: a.sessions + b.sessions,
    copied: a.copied + b.copied,
    skipped: a.skipped + b.skipped,
    copiedIds: [...a.copiedIds, ...b.copiedIds],
    skippedIds: [...a.skippedIds, ...b.skippedIds],
    messages: a.messages + b.messages,
    parts: a.parts + b.parts,
    rows: a.rows + b.rows,
    bytes: a.bytes + b.bytes,
    elapsedMs: a.elapsedMs + b.elapsedMs,
    verified: a.verified && b.verified,
    counts: new Map([...a.counts, ...b.counts]),
  };
}
