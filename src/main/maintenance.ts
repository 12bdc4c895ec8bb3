/** Small one-shot store operations the commands share: checking ids, reclaiming space. */
import type { WriterPresence } from '../core/data-folder.js';
import type { SelectedSession, SessionSelector } from '../core/selectors.js';
import { detectWriters, openReader, openWriter, refuseWhenLocked } from '../store/open-store.js';
import type { ReclaimResult } from '../store/writer.js';

/** Those of `ids` that are not sessions in `db`, in the given order. */
export async function missingSessions(db: string, ids: readonly string[]): Promise<string[]> {
  const reader = await openReader(db);
  try {
    return await reader.missingSessions(ids);
  } finally {
    await reader.close();
  }
}

/** The sessions a selector chooses in `db`, most recently active first. */
export async function selectedSessions(db: string, selector: SessionSelector, now = Date.now()): Promise<SelectedSession[]> {
  const reader = await openReader(db);
  try {
    return await reader.selectSessions(selector, now);
  } finally {
    await reader.close();
  }
}

/** Gives free pages back (`reclaim`), or converts the file to auto_vacuum=INCREMENTAL once. */
export async function reclaimSpace(db: string, how: 'reclaim' | 'convert-incremental', options: { besideWriter?: boolean } = {}): Promise<ReclaimResult> {
  const writer = await openWriter(db);
  try {
    return how === 'reclaim' ? await writer.reclaim(options) : await writer.convertToIncremental();
  } finally {
    await writer.close();
  }
}

/** Refuses (one line naming it) when another session-keeper is changing `db`. */
export function refuseWhenBusy(db: string): void {
  refuseWhenLocked(db);
}

/** Who else uses the database: processes holding it open (Linux /proc), commits seen while watching `watchMs`. */
export function whoElseWrites(db: string, watchMs?: number): Promise<WriterPresence> {
  return detectWriters(db, watchMs === undefined ? {} : { watchMs });
}
