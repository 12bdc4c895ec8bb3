/**
 * Compacting OpenCode's event log: what it would free (a plan, read-only), and doing it (the
 * file checked first, one writer, then the space given back). It removes only snapshots that a
 * newer one equal to the current row supersedes: every session, its export and its replay stay
 * the same (see src/store/sqlite/event-compaction.ts for the rule).
 */
import type { CompactionPlan, CompactionProgress, CompactionResult } from '../core/compaction.js';
import { describeWriters } from '../core/data-folder.js';
import { detectWriters, openReader, openWriter } from '../store/open-store.js';
import type { ReclaimResult } from '../store/writer.js';

/** Values larger than this are not compared at startup: comparing costs SQLite ~8x the value in native memory. */
export const STARTUP_COMPARE_LIMIT = 64 * 1024 * 1024;

export interface CompactionRequest {
  db: string;
  orphans?: boolean;
  maxCompareBytes?: number;
  onProgress?: (progress: CompactionProgress) => void;
  signal?: AbortSignal;
  /**
   * OpenCode is using the file: the deletes run (short transactions), the VACUUM after them waits.
   * `detect`: find out (what was found is said through `log`).
   */
  besideWriter?: boolean | 'detect';
  log?: (line: string) => void;
}

export async function planCompaction(request: Omit<CompactionRequest, 'onProgress' | 'signal' | 'besideWriter'>): Promise<CompactionPlan> {
  const reader = await openReader(request.db);
  try {
    return await reader.compactionPlan({ orphans: request.orphans ?? false, ...(request.maxCompareBytes ? { maxCompareBytes: request.maxCompareBytes } : {}) });
  } finally {
    await reader.close();
  }
}

export interface CompactionOutcome {
  compaction: CompactionResult;
  reclaim: ReclaimResult;
}

export async function applyCompaction(request: CompactionRequest): Promise<CompactionOutcome> {
  let besideWriter = request.besideWriter ?? false;
  if (besideWriter === 'detect') {
    const line = describeWriters(await detectWriters(request.db), request.db);
    if (line) request.log?.(`session-keeper: ${line}; snapshots are removed in short transactions beside it, and the VACUUM that gives the space back waits for a time OpenCode is closed (session-keeper vacuum).`);
    besideWriter = line !== null;
  }
  const writer = await openWriter(request.db);
  try {
    await writer.assertIntact();
    const compaction = await writer.compactEvents({
      orphans: request.orphans ?? false,
      ...(request.maxCompareBytes ? { maxCompareBytes: request.maxCompareBytes } : {}),
      ...(request.onProgress ? { onProgress: request.onProgress } : {}),
      ...(request.signal ? { signal: request.signal } : {}),
    });
    const reclaim = await writer.reclaim({ besideWriter });
    return { compaction, reclaim };
  } finally {
    await writer.close();
  }
}
