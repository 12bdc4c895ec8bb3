/**
 * What the data folder holds that nothing references: session diff files whose session is in no
 * OpenCode database, leftover `tmp_*` pack files in the snapshot repositories (git's own rule for
 * `git prune`: older than the expiry, here a day), and the pre-SQLite JSON tree, with whether
 * every session in it (its messages and parts too) is in a database. Ids come from the file
 * paths, as OpenCode's own migration takes them; no file's contents are read.
 */
import { lstatSync, type Stats } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { SNAPSHOT_TEMP_MIN_AGE_MS, type CleanFile, type FileSet, type LegacyJsonSurvey } from '../../../core/data-folder.js';
import { processesHolding } from './open-files.js';
import type { SessionPresence } from './presence.js';
import { folderEntries, UsageCounter, type DiskUsage } from './walk.js';

/** The folders of `storage/` that OpenCode's JSON-to-SQLite migration reads. */
export const LEGACY_JSON_DIRS = ['project', 'session', 'message', 'part', 'todo', 'permission', 'session_share'] as const;
const ID_FILE = /^((?:ses|msg|prt)_[0-9A-Za-z]+)\.json$/;
/** How many missing ids a survey names per kind. */
const NAMED = 5;

export const sessionDiffDir = (folder: string): string => join(folder, 'storage', 'session_diff');
export const snapshotDir = (folder: string): string => join(folder, 'snapshot');

const lstatOrNull = (path: string): Stats | null => {
  try {
    return lstatSync(path);
  } catch {
    return null;
  }
};

/** The session a diff file belongs to, from its name (`ses_….json`), or null for anything else. */
export const diffSessionId = (path: string): string | null => /^(ses_[0-9A-Za-z]+)\.json$/.exec(basename(path))?.[1] ?? null;

const fileOf = (path: string, stat: Stats): CleanFile => ({ path, bytes: stat.size, mtimeMs: stat.mtimeMs });

/** Diff files (`ses_….json`) whose session is in no OpenCode database of the folder. */
export function findOrphanDiffs(folder: string, presence: SessionPresence, counter = new UsageCounter()): FileSet & { usage: DiskUsage } {
  const dir = sessionDiffDir(folder);
  const files: CleanFile[] = [];
  const usage = counter.tree(dir, (path, stat, parents) => {
    if (parents.length !== 1 || !stat.isFile()) return;
    const id = diffSessionId(path);
    if (id && !presence.hasSession(id)) files.push(fileOf(path, stat));
  });
  return { files, bytes: files.reduce((n, f) => n + f.bytes, 0), usage };
}

/** A file git left in `objects/pack/` while writing a pack (`tmp_pack_*`, `tmp_idx_*`, ...). */
const isPackTemp = (path: string, stat: Stats, parents: readonly string[]): boolean => {
  const parent = parents[parents.length - 1];
  const grand = parents[parents.length - 2];
  return stat.isFile() && basename(path).startsWith('tmp_') && parent !== undefined && basename(parent) === 'pack' && grand !== undefined && basename(grand) === 'objects';
};

export interface SnapshotTemp extends FileSet {
  /** Old enough, but some process has it open: kept. */
  heldOpen: number;
  /** Younger than a day: a git process may still be writing it. */
  younger: number;
  usage: DiskUsage;
}

export function findSnapshotTemp(folder: string, now: number, counter = new UsageCounter()): SnapshotTemp {
  const candidates: CleanFile[] = [];
  let younger = 0;
  const usage = counter.tree(snapshotDir(folder), (path, stat, parents) => {
    if (!isPackTemp(path, stat, parents)) return;
    if (now - stat.mtimeMs < SNAPSHOT_TEMP_MIN_AGE_MS) younger++;
    else candidates.push(fileOf(path, stat));
  });
  const open = candidates.length ? processesHolding(candidates.map((f) => f.path)).holders : new Map<string, number[]>();
  const files = candidates.filter((f) => !open.has(f.path));
  return { files, bytes: files.reduce((n, f) => n + f.bytes, 0), heldOpen: candidates.length - files.length, younger, usage };
}

/**
 * Walks the legacy tree: sessions from `session/<projectID>/<id>.json`, their messages from
 * `message/<sessionID>/<id>.json`, those messages' parts from `part/<messageID>/<id>.json`; each
 * looked up in the databases. Files no session leads to are counted as unowned.
 */
export function surveyLegacyJson(folder: string, presence: SessionPresence, counter = new UsageCounter()): LegacyJsonSurvey {
  const root = join(folder, 'storage');
  const survey: LegacyJsonSurvey = {
    root,
    present: false,
    sessions: 0,
    messages: 0,
    parts: 0,
    entries: 0,
    bytes: 0,
    unowned: 0,
    missing: { sessions: [], messages: [], parts: [], count: 0 },
    ready: false,
  };
  const miss = (kind: 'sessions' | 'messages' | 'parts', id: string): void => {
    survey.missing.count++;
    if (survey.missing[kind].length < NAMED) survey.missing[kind].push(id);
  };
  const sessions = new Set<string>();
  const messages = new Set<string>();
  /** `<dir>/<owner>/<id>.json` files of the session, message and part folders, in that order. */
  const lookups: Partial<Record<(typeof LEGACY_JSON_DIRS)[number], (owner: string, id: string) => void>> = {
    session: (_project, id) => {
      survey.sessions++;
      sessions.add(id);
      if (!presence.hasSession(id)) miss('sessions', id);
    },
    message: (sessionId, id) => {
      if (!sessions.has(sessionId)) {
        survey.unowned++;
        return;
      }
      survey.messages++;
      messages.add(id);
      if (!presence.hasMessage(id, sessionId)) miss('messages', id);
    },
    part: (messageId, id) => {
      if (!messages.has(messageId)) {
        survey.unowned++;
        return;
      }
      survey.parts++;
      if (!presence.hasPart(id)) miss('parts', id);
    },
  };
  for (const dir of LEGACY_JSON_DIRS) {
    const lookup = lookups[dir];
    const usage = counter.tree(join(root, dir), (path, stat, parents) => {
      if (!lookup || parents.length !== 2 || !stat.isFile()) return;
      const id = ID_FILE.exec(basename(path))?.[1];
      if (id) lookup(basename(parents[1] as string), id);
    });
    survey.bytes += usage.bytes;
    survey.entries += usage.entries;
    if (usage.entries > 0) survey.present = true;
  }
  survey.ready = survey.present && survey.missing.count === 0;
  return survey;
}

/** Every regular file of the legacy tree, for the archive (a generator: the tree is never listed whole). */
export function* legacyJsonFiles(folder: string): Generator<{ path: string; name: string }> {
  const root = join(folder, 'storage');
  const named = (path: string): { path: string; name: string } => ({ path, name: relative(folder, path) });
  for (const dir of LEGACY_JSON_DIRS) {
    for (const entry of folderEntries(join(root, dir))) {
      const top = join(root, dir, entry);
      const stat = lstatOrNull(top);
      if (stat?.isFile()) yield named(top);
      if (!stat?.isDirectory()) continue;
      // One owner's folder at a time (a session's messages, a message's parts): never the whole tree's names.
      const found: { path: string; name: string }[] = [];
      new UsageCounter().tree(top, (path, inner) => {
        if (inner.isFile()) found.push(named(path));
      });
      yield* found;
    }
  }
}
