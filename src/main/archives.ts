/**
 * Archive files as the commands and the UI use them: sessions (with their child sessions) out to
 * a verified archive, and an archive's sessions back into the store.
 */
import { DAY_MS } from '../core/planner.js';
import { SkError } from '../core/errors.js';
import { selectorNarrows, type SessionSelector } from '../core/selectors.js';
import { archiveItems } from '../store/archive/archive-read.js';
import { archiveSource, writeArchive, writeExportFiles } from '../store/archive/archive-write.js';
import { openReader, openWriter } from '../store/open-store.js';
import type { ImportResult } from '../store/writer.js';
import { checkOutputFile, checkOutputFolder } from './output-paths.js';
import { forgetOldestRoot } from './retention.js';

export interface ArchiveRequest {
  db: string;
  /** An archive file, or with `split` a folder for one `<sessionID>.json` per session. */
  output: string;
  /** Root sessions to archive (with their children); with no selector, every session. */
  sessions?: readonly string[];
  /** Root sessions created more than this many days ago. */
  olderThanDays?: number;
  /** Sessions chosen by selectors (`--subagents`, `--project`, `--larger-than`, `--keep-latest`, `--older-than`). */
  selector?: SessionSelector;
  /** One file per session in OpenCode's export shape, for `opencode import`. */
  split?: boolean;
  /** Replace existing files. */
  force?: boolean;
  cacheDir: string;
  now?: number;
}

export interface ArchiveOutcome {
  /** The archive file, or the folder of a split archive. */
  archive: string;
  sessions: number;
  bytes: number;
  /** With `split`: the files written. */
  files?: string[];
}

/** Writes the chosen sessions out, then reads what was written back and verifies it. */
export async function archiveSessions(request: ArchiveRequest): Promise<ArchiveOutcome> {
  const context = { db: request.db, cacheDir: request.cacheDir, force: request.force ?? false };
  const output = request.split ? checkOutputFolder(request.output, context) : checkOutputFile(request.output, context, 'archive');
  const reader = await openReader(request.db);
  try {
    const roots = [...(request.sessions ?? [])];
    const missing = await reader.missingSessions(roots);
    if (missing[0] !== undefined) throw new SkError('not-found', `no session ${missing[0]} in ${request.db}`);
    if (request.olderThanDays !== undefined) {
      for (const id of await reader.rootsCreatedBefore((request.now ?? Date.now()) - request.olderThanDays * DAY_MS)) roots.push(id);
    }
    const narrows = request.selector !== undefined && selectorNarrows(request.selector);
    if (request.selector && narrows) for (const s of await reader.selectSessions(request.selector, request.now ?? Date.now())) roots.push(s.id);
    const everything = request.sessions === undefined && request.olderThanDays === undefined && !narrows;
    const ids = everything ? await reader.allSessionIds() : await reader.sessionTrees(roots);
    if (request.split) {
      const files = await writeExportFiles(reader.exportSessions(ids), output, context.force, { verify: true });
      return { archive: output, sessions: files.length, bytes: files.reduce((n, f) => n + f.bytes, 0), files: files.map((f) => f.path) };
    }
    const source = archiveSource(reader, ids, output);
    const written = await writeArchive(source.items, output, { verify: true, secondHalf: source.secondHalf });
    return { archive: written.path, sessions: written.sessions.length, bytes: written.bytes };
  } finally {
    await reader.close();
  }
}

/** Puts an archive's sessions back; sessions already present are skipped whole. */
export async function restoreArchive(db: string, file: string): Promise<ImportResult> {
  // Every object is checked before the first one goes in: a malformed one later in the file inserts nothing.
  for await (const item of archiveItems(file)) void item;
  const writer = await openWriter(db);
  try {
    const result = await writer.importSessions(archiveItems(file), { existing: 'skip' });
    forgetOldestRoot(db);
    return result;
  } finally {
    await writer.close();
  }
}
