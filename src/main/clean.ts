/**
 * `clean`: the data folder's clean-ups of what nothing references (orphan session diffs,
 * leftover snapshot pack files, the pre-SQLite JSON tree). The plan is read-only; applying takes
 * the database's run lock, refuses a damaged database (the orphan and legacy checks read it), and
 * archives before anything is removed unless archiving is off. The database itself is never written.
 */
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { CleanPlan, CleanResult, CleanTarget } from '../core/data-folder.js';
import { applyFolderClean, planFolderClean } from '../store/open-store.js';
import { archiveName } from './retention.js';

export interface CleanRequest {
  db: string;
  targets: readonly CleanTarget[];
  now?: number;
}

export async function planClean(request: CleanRequest): Promise<CleanPlan> {
  return planFolderClean(request.db, request.targets, request.now);
}

export interface ApplyCleanRequest {
  db: string;
  /** The plan that was shown: nothing outside it is removed. */
  plan: CleanPlan;
  archive: boolean;
  archiveDir: string;
  now?: number;
}

export async function applyClean(request: ApplyCleanRequest): Promise<CleanResult> {
  const now = request.now ?? Date.now();
  let archivePath: string | null = null;
  if (request.archive) {
    const dir = resolve(request.archiveDir);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    archivePath = archiveName(dir, now, 'opencode-files', '.tar.gz');
  }
  return applyFolderClean(request.db, { plan: request.plan, archivePath, now });
}
