/** Small one-shot store operations the commands share: checking ids, reclaiming space. */
import { openReader, openWriter } from '../store/open-store.js';
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

/** Gives free pages back (`reclaim`), or converts the file to auto_vacuum=INCREMENTAL once. */
export async function reclaimSpace(db: string, how: 'reclaim' | 'convert-incremental'): Promise<ReclaimResult> {
  const writer = await openWriter(db);
  try {
    return how === 'reclaim' ? await writer.reclaim() : await writer.convertToIncremental();
  } finally {
    await writer.close();
  }
}
