/**
 * The archives a person can see and restore from in the UI: the session archives in `archiveDir`
 * (sessions, size, date), the root sessions one holds, restoring one tree or all of them, and the
 * history of past clean-ups (one JSON line per run beside the warning state).
 */
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { redactSecrets, SkError } from '../core/errors.js';
import type { ApplyResult } from '../core/api.js';
import type { ArchiveListEntry, ArchiveSessionEntry, HistoryEntry } from '../core/utility-protocol.js';
import { archiveItems } from '../store/archive/archive-read.js';
import { openReader, openWriter } from '../store/open-store.js';
import type { SessionItem } from '../store/session-items.js';
import type { ImportResult } from '../store/writer.js';
import { forgetOldestRoot } from './retention.js';

/** Names our session archives take (`archiveName`); other files in the folder are not ours to list. */
const ARCHIVE_NAME = /^opencode-sessions-[0-9TZ-]+(?:-\d+)?\.json(?:\.gz)?$/;

/** The archive `name` inside `archiveDir`, refusing anything that is not one of ours there. */
export function archivePath(archiveDir: string, name: string): string {
  if (name !== basename(name) || !ARCHIVE_NAME.test(name)) throw new SkError('usage', `${name} is not a session archive name`);
  const path = join(resolve(archiveDir), name);
  if (!existsSync(path)) throw new SkError('not-found', `no archive ${name} in ${archiveDir}`);
  return path;
}

interface Header {
  id: string;
  parentId: string | null;
  title: string;
  timeCreated: number;
}

/** The sessions an archive holds, from their headers (the archive is read once, streamed). */
async function headers(path: string): Promise<Header[]> {
  const out: Header[] = [];
  for await (const item of archiveItems(path)) {
    if (item.kind !== 'session') continue;
    const row = item.header.session;
    out.push({ id: String(row['id']), parentId: row['parent_id'] == null ? null : String(row['parent_id']), title: String(row['title'] ?? ''), timeCreated: Number(row['time_created'] ?? 0) });
  }
  return out;
}

/** Remembered per file state: listing does not read an unchanged archive twice. */
const remembered = new Map<string, { key: string; headers: Header[] }>();

async function headersOf(path: string): Promise<Header[]> {
  const st = statSync(path);
  const key = `${st.size}:${st.mtimeMs}`;
  const hit = remembered.get(path);
  if (hit?.key === key) return hit.headers;
  const found = await headers(path);
  remembered.set(path, { key, headers: found });
  return found;
}

/** The session archives in `archiveDir`, newest first. */
export async function listArchives(archiveDir: string): Promise<ArchiveListEntry[]> {
  const dir = resolve(archiveDir);
  if (!existsSync(dir)) return [];
  const entries: ArchiveListEntry[] = [];
  for (const name of readdirSync(dir)) {
    if (!ARCHIVE_NAME.test(name)) continue;
    const path = join(dir, name);
    const st = statSync(path);
    let roots = 0;
    let sessions = 0;
    let error: string | null = null;
    try {
      const found = await headersOf(path);
      sessions = found.length;
      roots = found.filter((s) => s.parentId === null || !found.some((o) => o.id === s.parentId)).length;
    } catch (e) {
      error = (e as Error).message;
    }
    entries.push({ name, path, bytes: st.size, time: st.mtimeMs, sessions, roots, error });
  }
  return entries.sort((a, b) => b.time - a.time || b.name.localeCompare(a.name));
}

/** The root sessions of an archive, each with its subtasks and whether the store has it now. */
export async function archiveSessions(db: string, path: string): Promise<ArchiveSessionEntry[]> {
  const found = await headersOf(path);
  const ids = new Set(found.map((s) => s.id));
  const roots = found.filter((s) => s.parentId === null || !ids.has(s.parentId));
  const reader = await openReader(db);
  let missing: Set<string>;
  try {
    missing = new Set(await reader.missingSessions(roots.map((r) => r.id)));
  } finally {
    await reader.close();
  }
  return roots.map((r) => ({ id: r.id, title: r.title, timeCreated: r.timeCreated, subtasks: treeOf(found, r.id).length - 1, present: !missing.has(r.id) }));
}

function treeOf(found: readonly Header[], root: string): string[] {
  const tree = [root];
  for (let i = 0; i < tree.length; i++) for (const s of found) if (s.parentId === tree[i]) tree.push(s.id);
  return tree;
}

/** The items of the sessions in `keep`, in the archive's order. */
async function* only(path: string, keep: ReadonlySet<string>): AsyncGenerator<SessionItem> {
  let inside = false;
  for await (const item of archiveItems(path)) {
    if (item.kind === 'session') inside = keep.has(String(item.header.session['id']));
    if (inside) yield item;
    if (item.kind === 'end') inside = false;
  }
}

/**
 * Puts sessions back from an archive: the trees of `roots`, or every session. Every object of the
 * file is checked before the first goes in; sessions already present are skipped whole.
 */
export async function restoreFromArchive(db: string, path: string, roots?: readonly string[]): Promise<ImportResult> {
  for await (const item of archiveItems(path)) void item;
  let keep: Set<string> | null = null;
  if (roots) {
    const found = await headersOf(path);
    keep = new Set(roots.flatMap((r) => treeOf(found, r)));
    const unknown = roots.filter((r) => !found.some((s) => s.id === r));
    if (unknown.length > 0) throw new SkError('not-found', `${basename(path)} does not hold ${unknown.join(', ')}`);
  }
  const writer = await openWriter(db);
  try {
    const result = await writer.importSessions(keep ? only(path, keep) : archiveItems(path), { existing: 'skip' });
    forgetOldestRoot(db);
    return result;
  } finally {
    await writer.close();
  }
}

/** Where past clean-ups are recorded: beside the warning state. */
export function historyPath(statePath: string): string {
  return join(dirname(statePath), 'history.jsonl');
}

export function recordRun(statePath: string, db: string, kind: HistoryEntry['kind'], outcome: ApplyResult, at = Date.now()): void {
  const entry: HistoryEntry = {
    at,
    db,
    kind,
    removed: outcome.evicted.length,
    bytesBefore: outcome.bytesBefore,
    bytesAfter: outcome.bytesAfter,
    archives: outcome.archives.map((a) => basename(a)),
    cancelled: outcome.cancelled === true,
  };
  const path = historyPath(statePath);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  appendFileSync(path, `${JSON.stringify(entry)}\n`, { mode: 0o600 });
}

/** A restore from a server, as one history line: what came back, from where (password already masked). */
export function recordRestore(statePath: string, db: string, restore: { restored: number; from: string; bytesBefore: number; bytesAfter: number; cancelled: boolean }, at = Date.now()): void {
  const entry: HistoryEntry = { at, db, kind: 'restore', removed: 0, bytesBefore: restore.bytesBefore, bytesAfter: restore.bytesAfter, archives: [], cancelled: restore.cancelled, restored: restore.restored, from: redactSecrets(restore.from) };
  const path = historyPath(statePath);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  appendFileSync(path, `${JSON.stringify(entry)}\n`, { mode: 0o600 });
}

/** Past clean-ups of `db`, newest first (a damaged line is skipped, not fatal). */
export function readHistory(statePath: string, db: string, limit = 50): HistoryEntry[] {
  const path = historyPath(statePath);
  if (!existsSync(path)) return [];
  const out: HistoryEntry[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      const entry = JSON.parse(line) as HistoryEntry;
      if (entry.db === db) out.push(entry);
    } catch {
      // a line cut by a crash: the others stand
    }
  }
  return out.reverse().slice(0, limit);
}
