/**
 * The clean-ups of what nothing references, planned (read-only) and applied. Applying checks
 * every file again (same size and time, still referenced by nothing, a leftover pack file still
 * held by no process), archives what can be archived (orphan diffs, the legacy tree) into one
 * verified `.tar.gz`, and only then removes exactly the files archived. A kill at any point leaves
 * each file either in place or in a verified archive.
 */
import { lstatSync, rmdirSync, rmSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { planFrees, SNAPSHOT_TEMP_MIN_AGE_MS, type CleanFile, type CleanPlan, type CleanResult, type CleanTarget } from '../../../core/data-folder.js';
import { SkError } from '../../../core/errors.js';
import { verifyFilesArchive, writeFilesArchive, type FileToArchive } from '../../archive/files-archive.js';
import { mapSqliteError, openConnection } from '../connection.js';
import { assertIntact } from '../integrity.js';
import { acquireRunLock, type RunLock } from '../run-lock.js';
import { processesHolding } from './open-files.js';
import { SessionPresence } from './presence.js';
import { diffSessionId, findOrphanDiffs, findSnapshotTemp, LEGACY_JSON_DIRS, legacyJsonFiles, sessionDiffDir, snapshotDir, surveyLegacyJson } from './survey.js';
import { folderEntries } from './walk.js';

function withPresence<T>(dbPath: string, fn: (presence: SessionPresence, folder: string) => T): T {
  const conn = openConnection(dbPath, { readonly: true });
  try {
    const presence = SessionPresence.open(conn);
    try {
      return fn(presence, dirname(conn.path));
    } finally {
      presence.close();
    }
  } catch (error) {
    throw mapSqliteError(error, conn.path);
  } finally {
    conn.db.close();
  }
}

export function planFolderClean(dbPath: string, targets: readonly CleanTarget[], now = Date.now()): CleanPlan {
  return withPresence(dbPath, (presence, folder) => {
    const chosen = new Set(targets);
    const diffs = chosen.has('diffs') ? findOrphanDiffs(folder, presence) : null;
    const temp = chosen.has('snapshot-temp') ? findSnapshotTemp(folder, now) : null;
    const plan: Omit<CleanPlan, 'freesBytes'> = {
      targets: [...chosen],
      diffs: diffs && { files: diffs.files, bytes: diffs.bytes },
      snapshotTemp: temp && { files: temp.files, bytes: temp.bytes, heldOpen: temp.heldOpen, younger: temp.younger },
      legacyJson: chosen.has('legacy-json') ? surveyLegacyJson(folder, presence) : null,
    };
    return { ...plan, freesBytes: planFrees(plan) };
  });
}

/** Still the file that was planned (or archived): same size and modification time, a regular file. */
function unchanged(file: Pick<CleanFile, 'path' | 'bytes' | 'mtimeMs'>): boolean {
  try {
    const stat = lstatSync(file.path);
    return stat.isFile() && stat.size === file.bytes && stat.mtimeMs === file.mtimeMs;
  } catch {
    return false;
  }
}

/** Folders of the legacy tree that are empty once their files went (a folder with anything left stays). */
function removeEmptyLegacyFolders(folder: string): void {
  const root = join(folder, 'storage');
  const tryRemove = (path: string): void => {
    try {
      rmdirSync(path);
    } catch {
      // not empty, or already gone
    }
  };
  for (const dir of LEGACY_JSON_DIRS) {
    for (const owner of folderEntries(join(root, dir))) tryRemove(join(root, dir, owner));
    tryRemove(join(root, dir));
  }
}

export interface ApplyFolderClean {
  plan: CleanPlan;
  /** Where to archive orphan diffs and the legacy tree; null when archiving is off. */
  archivePath: string | null;
  now?: number;
}

/**
 * Applies a plan under the database's run lock (one changing session-keeper at a time), after a
 * quick_check: the orphan and legacy checks read the database, so a damaged one is refused. The
 * database is only read (a read-only connection never checkpoints or removes OpenCode's -wal).
 */
export async function applyFolderClean(dbPath: string, request: ApplyFolderClean): Promise<CleanResult> {
  const conn = openConnection(dbPath, { readonly: true });
  let lock: RunLock;
  try {
    assertIntact(conn);
    lock = acquireRunLock(conn.path);
  } catch (error) {
    conn.db.close();
    throw mapSqliteError(error, dbPath);
  }
  conn.db.close();
  try {
    return await cleanUnderLock(dbPath, request);
  } finally {
    lock.release();
  }
}

async function cleanUnderLock(dbPath: string, request: ApplyFolderClean): Promise<CleanResult> {
  const { plan } = request;
  const now = request.now ?? Date.now();
  const result: CleanResult = { archive: null, removed: { diffs: 0, snapshotTemp: 0, legacyJson: 0 }, skipped: 0, freedBytes: 0 };
  const checked = withPresence(dbPath, (presence, folder) => {
    const diffs = (plan.diffs?.files ?? []).filter((f) => {
      const id = diffSessionId(f.path);
      return id !== null && dirname(f.path) === sessionDiffDir(folder) && unchanged(f) && !presence.hasSession(id);
    });
    let legacy = false;
    if (plan.legacyJson?.ready) {
      const current = surveyLegacyJson(folder, presence);
      const same = (['sessions', 'messages', 'parts', 'entries', 'bytes'] as const).every((k) => current[k] === plan.legacyJson?.[k]);
      if (!current.ready || !same) throw new SkError('usage', `the pre-SQLite JSON tree in ${current.root} changed since the plan was made; nothing was removed: run the dry run again`);
      legacy = true;
    }
    return { folder, diffs, legacy };
  });
  const { folder } = checked;
  const held = processesHolding((plan.snapshotTemp?.files ?? []).map((f) => f.path)).holders;
  const packs = (plan.snapshotTemp?.files ?? []).filter((f) => f.path.startsWith(`${snapshotDir(folder)}/`) && unchanged(f) && now - f.mtimeMs >= SNAPSHOT_TEMP_MIN_AGE_MS && !held.has(f.path));
  result.skipped = (plan.diffs?.files.length ?? 0) - checked.diffs.length + (plan.snapshotTemp?.files.length ?? 0) - packs.length;

  // What goes: the archived files exactly (or, with archiving off, the checked ones).
  let diffsGoing: Pick<CleanFile, 'path' | 'bytes' | 'mtimeMs'>[] = checked.diffs;
  let legacyGoing: Pick<CleanFile, 'path' | 'bytes' | 'mtimeMs'>[] | null = null;
  if (request.archivePath && (checked.diffs.length > 0 || checked.legacy)) {
    const diffNames = new Set(checked.diffs.map((f) => f.path));
    function* toArchive(): Generator<FileToArchive> {
      for (const f of checked.diffs) yield { path: f.path, name: relative(folder, f.path) };
      if (checked.legacy) yield* legacyJsonFiles(folder);
    }
    const written = await writeFilesArchive(request.archivePath, toArchive());
    await verifyFilesArchive(written);
    result.archive = written.path;
    diffsGoing = written.files.filter((f) => diffNames.has(f.path));
    legacyGoing = written.files.filter((f) => !diffNames.has(f.path));
  } else if (checked.legacy) {
    legacyGoing = [];
    for (const file of legacyJsonFiles(folder)) {
      const stat = lstatSync(file.path);
      legacyGoing.push({ path: file.path, bytes: stat.size, mtimeMs: stat.mtimeMs });
    }
  }
  const remove = (file: Pick<CleanFile, 'path' | 'bytes' | 'mtimeMs'>): boolean => {
    if (!unchanged(file)) {
      result.skipped++;
      return false;
    }
    rmSync(file.path, { force: true });
    result.freedBytes += file.bytes;
    return true;
  };
  for (const file of diffsGoing) if (remove(file)) result.removed.diffs++;
  if (legacyGoing) {
    for (const file of legacyGoing) if (remove(file)) result.removed.legacyJson++;
    removeEmptyLegacyFolders(folder);
  }
  for (const file of packs) if (remove(file)) result.removed.snapshotTemp++;
  return result;
}
