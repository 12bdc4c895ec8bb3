/**
 * `stats`' `files`: each place of OpenCode's data folder (the database's folder) with its size as
 * `du -sb` counts it, what it is, what a clean-up frees now and what removing the rest costs. The
 * places split the folder: their bytes add up to the folder's own `du -sb`. OpenCode Desktop's
 * state file, outside the folder, comes last.
 */
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { PLACE_TEXT, type FolderPlace, type PlaceName } from '../../../core/data-folder.js';
import { JsonStreamScanner } from '../../../core/json-stream.js';
import type { SqliteConnection } from '../connection.js';
import { OPENCODE_DB_NAME, SessionPresence } from './presence.js';
import { findOrphanDiffs, findSnapshotTemp, LEGACY_JSON_DIRS, sessionDiffDir, snapshotDir, surveyLegacyJson } from './survey.js';
import { folderEntries, UsageCounter, type DiskUsage } from './walk.js';

type Env = Record<string, string | undefined>;

const place = (name: PlaceName, path: string, usage: DiskUsage, reclaimable = 0, inDataFolder = true): FolderPlace => ({
  name,
  path,
  bytes: usage.bytes,
  entries: usage.entries,
  reclaimable,
  reclaim: reclaimable > 0 ? PLACE_TEXT[name].reclaim : null,
  what: PLACE_TEXT[name].what,
  cost: PLACE_TEXT[name].cost,
  inDataFolder,
});

const sum = (a: DiskUsage, b: DiskUsage): DiskUsage => ({ bytes: a.bytes + b.bytes, entries: a.entries + b.entries });
const NONE: DiskUsage = { bytes: 0, entries: 0 };

/**
 * A folder is walked only when it is OpenCode's: named `opencode` or holding its `storage/` or
 * `snapshot/` (a `--db` in a home folder must not walk the home folder).
 */
export function isOpenCodeDataFolder(folder: string): boolean {
  return basename(folder) === 'opencode' || existsSync(join(folder, 'storage')) || existsSync(join(folder, 'snapshot'));
}

/** Where OpenCode Desktop keeps `opencode.global.dat` (Electron's app-data folder, per platform). */
export function desktopStateCandidates(env: Env = process.env): string[] {
  const home = env['HOME'] ?? homedir();
  const app = 'ai.opencode.desktop';
  const dirs = [
    join(env['XDG_CONFIG_HOME'] || join(home, '.config'), app),
    join(env['XDG_DATA_HOME'] || join(home, '.local', 'share'), app),
    join(home, 'Library', 'Application Support', app),
  ];
  if (env['APPDATA']) dirs.push(join(env['APPDATA'], app));
  return [...new Set(dirs)].map((dir) => join(dir, 'opencode.global.dat'));
}

/** Bytes of each top-level key's value, read in 1 MB pieces (the file can be hundreds of MB). */
function topLevelKeyBytes(path: string): { key: string; bytes: number }[] {
  const sizes = new Map<string, number>();
  const scanner = new JsonStreamScanner({
    select: (p) => p.length === 1,
    chunk: (p, bytes) => sizes.set(String(p[0]), (sizes.get(String(p[0])) ?? 0) + bytes.length),
    end: () => undefined,
  });
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(1024 * 1024);
    for (let n = readSync(fd, buffer); n > 0; n = readSync(fd, buffer)) scanner.write(buffer.subarray(0, n));
    scanner.finish();
  } catch {
    // not JSON as expected: the file's size is still told
  } finally {
    closeSync(fd);
  }
  return [...sizes].map(([key, bytes]) => ({ key, bytes })).sort((a, b) => b.bytes - a.bytes).slice(0, 5);
}

export interface PlacesOptions {
  /** Free pages of the database: what `vacuum` gives back. */
  freeBytes: number;
  now?: number;
  env?: Env;
}

export function dataFolderPlaces(conn: SqliteConnection, options: PlacesOptions): FolderPlace[] {
  const folder = dirname(conn.path);
  const counter = new UsageCounter();
  const dbName = basename(conn.path);
  const databaseFiles = [dbName, `${dbName}-wal`, `${dbName}-shm`];
  const database = databaseFiles.map((name) => counter.entry(join(folder, name))).reduce(sum, NONE);
  const places: FolderPlace[] = [place('database', conn.path, database, options.freeBytes)];
  if (isOpenCodeDataFolder(folder)) {
    const presence = SessionPresence.open(conn);
    try {
      const top = new Set(databaseFiles);
      let others = NONE;
      for (const name of folderEntries(folder)) {
        const base = name.replace(/-(wal|shm)$/, '');
        if (!top.has(name) && OPENCODE_DB_NAME.test(base)) {
          top.add(name);
          others = sum(others, counter.entry(join(folder, name)));
        }
      }
      if (others.entries > 0) places.push(place('other-databases', folder, others));
      const snapshot = findSnapshotTemp(folder, options.now ?? Date.now(), counter);
      places.push(place('snapshot', snapshotDir(folder), snapshot.usage, snapshot.bytes));
      const diffs = findOrphanDiffs(folder, presence, counter);
      places.push(place('session-diffs', sessionDiffDir(folder), diffs.usage, diffs.bytes));
      const legacy = surveyLegacyJson(folder, presence, counter);
      places.push(place('legacy-json', join(folder, 'storage'), { bytes: legacy.bytes, entries: legacy.entries }, legacy.ready ? legacy.bytes : 0));
      // The rest of storage/: the folder itself, the migration marker, anything OpenCode adds.
      const known = new Set<string>(['session_diff', ...LEGACY_JSON_DIRS]);
      let storage = counter.entry(join(folder, 'storage'));
      for (const name of folderEntries(join(folder, 'storage'))) if (!known.has(name)) storage = sum(storage, counter.tree(join(folder, 'storage', name)));
      places.push(place('storage-other', join(folder, 'storage'), storage));
      for (const [name, dir] of [['tool-output', 'tool-output'], ['log', 'log'], ['repos', 'repos'], ['archive', 'archive']] as const) {
        top.add(dir);
        const usage = counter.tree(join(folder, dir));
        if (usage.entries > 0) places.push(place(name, join(folder, dir), usage));
      }
      for (const name of ['snapshot', 'storage']) top.add(name);
      let other = counter.entry(folder);
      for (const name of folderEntries(folder)) if (!top.has(name)) other = sum(other, counter.tree(join(folder, name)));
      places.push(place('other', folder, other));
    } finally {
      presence.close();
    }
  }
  for (const path of desktopStateCandidates(options.env)) {
    const usage = new UsageCounter().entry(path);
    if (usage.entries === 0) continue;
    places.push({ ...place('desktop-state', path, usage, 0, false), keys: topLevelKeyBytes(path) });
  }
  return places;
}
