/**
 * Archive files as the commands and the UI use them: sessions (with their child sessions) out to
 * a verified archive, and an archive's sessions back into the store.
 */
import { DAY_MS } from '../core/planner.js';
import { SkError } from '../core/errors.js';
import { archiveItems, verifyArchive } from '../store/archive/archive-read.js';
import { writeArchive } from '../store/archive/archive-write.js';
import { openReader, openWriter } from '../store/open-store.js';
import type { ImportResult } from '../store/writer.js';
import { forgetOldestRoot } from './retention.js';

export interface ArchiveRequest {
  db: string;
  output: string;
  /** Root sessions to archive (with their children). */
  sessions?: readonly string[];
  /** Root sessions created more than this many days ago. */
  olderThanDays?: number;
  now?: number;
}

export interface ArchiveOutcome {
  archive: string;
  sessions: number;
  bytes: number;
}

/** Writes the chosen sessions to `output`, then reads the file back and verifies it. */
export async function archiveSessions(request: ArchiveRequest): Promise<ArchiveOutcome> {
  const reader = await openReader(request.db);
  try {
    const roots = [...(request.sessions ?? [])];
    const missing = await reader.missingSessions(roots);
    if (missing[0] !== undefined) throw new SkError('not-found', `no session ${missing[0]} in ${request.db}`);
    if (request.olderThanDays !== undefined) {
      for (const id of await reader.rootsCreatedBefore((request.now ?? Date.now()) - request.olderThanDays * DAY_MS)) roots.push(id);
    }
    const ids = await reader.sessionTrees(roots);
    const written = await writeArchive(reader.exportSessions(ids), request.output);
    await verifyArchive(request.output, written.sessions);
    return { archive: written.path, sessions: written.sessions.length, bytes: written.bytes };
  } finally {
    await reader.close();
  }
}

/** Puts an archive's sessions back; sessions already present are skipped whole. */
export async function restoreArchive(db: string, file: string): Promise<ImportResult> {
  const writer = await openWriter(db);
  try {
    const result = await writer.importSessions(archiveItems(file), { existing: 'skip' });
    forgetOldestRoot(db);
    return result;
  } finally {
    await writer.close();
  }
}
