/**
 * Retention: size warnings, the eviction plan, and applying it. Every deletion is preceded by an
 * archive that was written, fsynced, renamed into place and read back verified (unless the user
 * turned archiving off); a session that changed after it was archived is not deleted.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ApplyResult } from '../core/api.js';
import type { SessionConfig } from '../core/config.js';
import { hasRetentionPolicy } from '../core/config.js';
import { redactSecrets, SkError } from '../core/errors.js';
import { dataHome } from '../core/paths.js';
import { ACTIVE_WINDOW_MS, DAY_MS, planRetention, type PlannedEviction, type RetentionPlan, type SessionFacts } from '../core/planner.js';
import { crossedThresholds, formatMB, MB, type SizeWarning } from '../core/thresholds.js';
import { AttachmentCache } from '../store/attachment-cache.js';
import { verifyArchive } from '../store/archive-file.js';
import { openDatabase, type OpenDatabase } from '../store/sqlite/open.js';
import { sessionTrees, writeArchive } from '../store/sqlite/sqlite-archive.js';
import { fileBytes, SqliteWriter, type ReclaimResult } from '../store/sqlite/sqlite-writer.js';

export type { ApplyResult };

/** Re-plans after reclaim at most this many times when the file is still over `maxSizeMB`. */
const MAX_ROUNDS = 3;

export type RetentionPolicyInput = Pick<SessionConfig, 'maxSizeMB' | 'maxAgeDays' | 'maxSessions' | 'orderBy' | 'keep'>;

export interface RetentionOptions {
  db: string;
  config: SessionConfig;
  cacheDir: string;
  now?: number;
  log?: (line: string) => void;
  onProgress?: (event: RetentionProgress) => void;
  /** Test seam: runs after the archive is in place and before it is verified. */
  afterArchive?: (path: string) => void | Promise<void>;
}

export type RetentionProgress =
  | { phase: 'plan'; evict: number }
  | { phase: 'archive'; path: string; sessions: number }
  | { phase: 'verify'; path: string }
  | { phase: 'delete'; deleted: number; of: number }
  | { phase: 'reclaim'; mode: ReclaimResult['mode'] };

/** `retention --dry-run --json`: roots only, their children inside, with why each goes. */
export interface DryRunResult {
  evict: PlannedEviction[];
  freesBytes: number;
  storeBytes: number;
  unmetSize: boolean;
}


interface SessionRowFacts {
  id: string;
  parentId: string | null;
  title: string;
  timeCreated: number;
  timeUpdated: number;
  timeArchived: number | null;
}

/** Live bytes: what the file would be after a full reclaim. */
function liveBytes(open: OpenDatabase): number {
  const { db } = open;
  const pageSize = db.pragma('page_size', { simple: true }) as number;
  return ((db.pragma('page_count', { simple: true }) as number) - (db.pragma('freelist_count', { simple: true }) as number)) * pageSize;
}

/**
 * Per-root facts for the planner: a root with its children, times taken as the latest in the
 * tree. With `withBytes`, each root's bytes are its tree's payload scaled by the file's overhead,
 * so that evicting it frees about that much once reclaimed.
 */
export function collectFacts(open: OpenDatabase, withBytes: boolean): { facts: SessionFacts[]; storeBytes: number } {
  const { db, schema } = open;
  const archived = schema.sessionColumns.has('time_archived') ? 'time_archived' : 'NULL';
  const rows = db
    .prepare(`SELECT id, parent_id AS parentId, title, time_created AS timeCreated, time_updated AS timeUpdated, ${archived} AS timeArchived FROM session`)
    .all() as SessionRowFacts[];
  const byId = new Map(rows.map((r) => [r.id, r]));
  const rootOf = (row: SessionRowFacts): string => {
    let current = row;
    for (let hops = 0; current.parentId && hops < 64; hops++) {
      const parent = byId.get(current.parentId);
      if (!parent) break;
      current = parent;
    }
    return current.id;
  };
  const bytesBySession = new Map<string, number>();
  let payloadTotal = 0;
  if (withBytes) {
    const add = (sql: string): void => {
      for (const r of db.prepare(sql).all() as { id: string; bytes: number }[]) {
        bytesBySession.set(r.id, (bytesBySession.get(r.id) ?? 0) + r.bytes);
        payloadTotal += r.bytes;
      }
    };
    add('SELECT session_id AS id, sum(octet_length(data)) AS bytes FROM message GROUP BY session_id');
    add('SELECT session_id AS id, sum(octet_length(data)) AS bytes FROM part GROUP BY session_id');
    if (schema.tables.has('event')) add('SELECT aggregate_id AS id, sum(octet_length(data)) AS bytes FROM event GROUP BY aggregate_id');
  }
  const storeBytes = liveBytes(open);
  const overhead = payloadTotal > 0 ? Math.max(1, storeBytes / payloadTotal) : 1;
  const roots = new Map<string, SessionFacts & { payload: number }>();
  for (const row of rows) {
    const rootId = rootOf(row);
    const root = byId.get(rootId) as SessionRowFacts;
    let facts = roots.get(rootId);
    if (!facts) {
      facts = { id: root.id, title: root.title, timeCreated: root.timeCreated, timeUpdated: root.timeUpdated, timeArchived: root.timeArchived, bytes: 0, children: [], payload: 0 };
      roots.set(rootId, facts);
    }
    if (row.id !== rootId) {
      facts.children.push(row.id);
      facts.timeUpdated = Math.max(facts.timeUpdated, row.timeUpdated);
    }
    facts.payload += bytesBySession.get(row.id) ?? 0;
  }
  const facts = [...roots.values()].map(({ payload, ...f }) => ({ ...f, bytes: Math.round(payload * overhead) }));
  return { facts, storeBytes };
}

/** The oldest root session's times, remembered between startups (see `nothingToDo`). */
interface OldestRoot {
  created: number | null;
  updated: number | null;
  /** When this was read; it is trusted for a day. */
  at: number;
}

/**
 * Cheap checks that tell, for the common case, that no limit is exceeded: no facts needed.
 * The age check needs the oldest root, which is a scan of the session table (its time columns
 * sit behind large JSON columns): it is remembered for a day, since new sessions are never older
 * than existing ones. (`restore` of old sessions is the exception: it is caught within that day.)
 */
function nothingToDo(open: OpenDatabase, policy: RetentionPolicyInput, now: number, remembered: OldestRoot | undefined): { idle: boolean; oldest?: OldestRoot } {
  const { db } = open;
  if (policy.maxSizeMB !== undefined && liveBytes(open) > policy.maxSizeMB * MB) return { idle: false };
  if (policy.maxSessions !== undefined) {
    const roots = db.prepare('SELECT count(*) FROM session WHERE parent_id IS NULL').pluck().get() as number;
    if (roots > policy.maxSessions) return { idle: false };
  }
  if (policy.maxAgeDays === undefined) return { idle: true };
  const cutoff = Math.min(now - policy.maxAgeDays * DAY_MS, now - ACTIVE_WINDOW_MS);
  let oldest = remembered && now - remembered.at < DAY_MS && remembered.at <= now ? remembered : undefined;
  if (!oldest) {
    const row = db.prepare('SELECT min(time_created) AS created, min(time_updated) AS updated FROM session WHERE parent_id IS NULL').get() as {
      created: number | null;
      updated: number | null;
    };
    oldest = { ...row, at: now };
  }
  const time = policy.orderBy === 'updated' ? oldest.updated : oldest.created;
  return { idle: time === null || time >= cutoff, oldest };
}

/** The plan, changing nothing. */
export function dryRun(options: Pick<RetentionOptions, 'db' | 'config' | 'now'>): DryRunResult {
  const open = openDatabase(options.db, { readonly: true });
  try {
    const plan = planOn(open, options.config, options.now ?? Date.now(), true);
    return { evict: plan.evict, freesBytes: plan.freesBytes, storeBytes: plan.remainingBytes + plan.freesBytes, unmetSize: plan.unmetSize };
  } finally {
    open.db.close();
  }
}

/** Bytes are needed to meet `maxSizeMB` and to show a plan; applying age or count limits needs none. */
function planOn(open: OpenDatabase, policy: RetentionPolicyInput, now: number, withBytes = policy.maxSizeMB !== undefined): RetentionPlan {
  const { facts, storeBytes } = collectFacts(open, withBytes);
  return planRetention({ sessions: facts, storeBytes, now, policy });
}

function archiveName(archiveDir: string, now: number): string {
  const stamp = new Date(now).toISOString().replace(/[:.]/g, '-');
  let path = join(archiveDir, `opencode-sessions-${stamp}.json.gz`);
  for (let n = 2; existsSync(path); n++) path = join(archiveDir, `opencode-sessions-${stamp}-${n}.json.gz`);
  return path;
}

/**
 * Archives (and verifies) the trees of `roots`, then deletes them, then reclaims. Used by
 * retention and by `delete`. Returns what happened; throws before deleting anything when the
 * archive cannot be written or verified.
 */
export async function archiveThenDelete(
  options: Omit<RetentionOptions, 'config'> & { archive: boolean; archiveDir: string; archivePath?: string; offload?: string | undefined },
  roots: readonly string[],
): Promise<Omit<ApplyResult, 'bytesBefore' | 'archives'> & { bytesFreedRows: number }> {
  const now = options.now ?? Date.now();
  let archive: string | null = null;
  let archivedAt: Map<string, number> | undefined;
  if (options.archive) {
    const read = openDatabase(options.db, { readonly: true });
    try {
      const ids = sessionTrees(read, roots);
      const updated = read.db.prepare('SELECT time_updated FROM session WHERE id = ?').pluck();
      archivedAt = new Map(ids.map((id) => [id, updated.get(id) as number]));
      const path = options.archivePath ?? archiveName(resolve(options.archiveDir), now);
      options.onProgress?.({ phase: 'archive', path, sessions: ids.length });
      const written = await writeArchive(read, ids, path);
      await options.afterArchive?.(path);
      options.onProgress?.({ phase: 'verify', path });
      await verifyArchive(path, written.sessions);
      archive = path;
    } finally {
      read.db.close();
    }
  }
  let offloaded: string | null = null;
  if (options.offload) {
    // Offload: the trees are copied into the external database and verified there (counts and
    // digests) before anything leaves the local file; a failure throws before the delete.
    const read = openDatabase(options.db, { readonly: true });
    let ids: string[];
    try {
      ids = sessionTrees(read, roots);
      if (!archivedAt) {
        const updated = read.db.prepare('SELECT time_updated FROM session WHERE id = ?').pluck();
        archivedAt = new Map(ids.map((id) => [id, updated.get(id) as number]));
      }
    } finally {
      read.db.close();
    }
    options.log?.(`session-keeper: moving ${ids.length} session${ids.length === 1 ? '' : 's'} to ${redactSecrets(options.offload)} before deleting them here`);
    const { migrateToExternal } = await import('../store/external/migrate.js');
    const copied = await migrateToExternal({ source: options.db, target: options.offload, sessionIds: ids });
    if (!copied.verified) throw new SkError('corrupt', `offload to ${copied.target} did not verify; nothing was deleted`);
    offloaded = copied.target;
  }
  const writer = new SqliteWriter(options.db);
  try {
    const deleted = writer.deleteSessions(roots, archivedAt);
    options.onProgress?.({ phase: 'delete', deleted: deleted.deleted.length, of: roots.length });
    new AttachmentCache(options.cacheDir).forgetParts(new Set(deleted.partIds));
    const reclaimed = writer.reclaim();
    options.onProgress?.({ phase: 'reclaim', mode: reclaimed.mode });
    return {
      evicted: deleted.deleted,
      archive,
      offload: offloaded,
      bytesAfter: reclaimed.bytesAfter,
      changed: deleted.changed,
      reclaim: reclaimed.mode,
      bytesFreedRows: reclaimed.bytesBefore - reclaimed.bytesAfter,
    };
  } finally {
    writer.close();
  }
}

/** Plans and applies retention; repeats (a few rounds) while the file is still over `maxSizeMB`. */
export async function applyRetention(options: RetentionOptions): Promise<ApplyResult> {
  const { config } = options;
  const now = options.now ?? Date.now();
  const bytesBefore = fileBytes(options.db);
  const result: ApplyResult = { evicted: [], archive: null, archives: [], bytesBefore, bytesAfter: bytesBefore, changed: [], reclaim: 'none' };
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const open = openDatabase(options.db, { readonly: true });
    let plan: RetentionPlan;
    try {
      plan = planOn(open, config, now);
    } finally {
      open.db.close();
    }
    const roots = plan.evict.map((e) => e.id).filter((id) => !result.changed.includes(id));
    options.onProgress?.({ phase: 'plan', evict: roots.length });
    if (roots.length === 0) break;
    const done = await archiveThenDelete({ ...options, archive: config.archive, archiveDir: config.archiveDir, offload: config.offload }, roots);
    if (done.offload) result.offload = done.offload;
    result.evicted = result.evicted.concat(done.evicted);
    result.changed = result.changed.concat(done.changed);
    if (done.archive) result.archives.push(done.archive);
    result.archive ??= done.archive;
    result.bytesAfter = done.bytesAfter;
    if (done.reclaim !== 'none') result.reclaim = done.reclaim;
    const reasons = [
      config.maxAgeDays !== undefined ? `older than ${config.maxAgeDays} days` : null,
      config.maxSessions !== undefined ? `beyond ${config.maxSessions} sessions` : null,
      config.maxSizeMB !== undefined ? `to fit ${config.maxSizeMB} MB` : null,
    ].filter(Boolean);
    options.log?.(
      `Warning: session-keeper evicted ${done.evicted.length} OpenCode session${done.evicted.length === 1 ? '' : 's'} (${reasons.join(', ')})` +
        `${done.archive ? `; archived to ${done.archive}` : '; not archived (archiving is off)'}${done.offload ? `; moved to ${done.offload}` : ''}. Database ${formatMB(bytesBefore)} -> ${formatMB(done.bytesAfter)}.`,
    );
    if (config.maxSizeMB === undefined || done.bytesAfter <= config.maxSizeMB * MB || done.evicted.length === 0) break;
  }
  return result;
}

/** Which thresholds have already warned, per database: each warns once until the size drops below it. */
interface WarnState {
  warned: Record<string, number[]>;
  oldest?: Record<string, OldestRoot>;
}

function statePath(env: Record<string, string | undefined> = process.env): string {
  return join(dataHome(env), 'session-keeper', 'state.json');
}

function readState(path: string): WarnState {
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as WarnState;
    return parsed && typeof parsed.warned === 'object' ? parsed : { warned: {} };
  } catch {
    return { warned: {} };
  }
}

function saveState(path: string, state: WarnState): void {
  mkdirSync(join(path, '..'), { recursive: true, mode: 0o700 });
  writeFileSync(`${path}.tmp`, JSON.stringify(state), { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}

/** After sessions were put back (`restore`), the remembered oldest root may be wrong: forget it. */
export function forgetOldestRoot(db: string, path = statePath()): void {
  const state = readState(path);
  const key = resolve(db);
  if (!state.oldest?.[key]) return;
  delete state.oldest[key];
  saveState(path, state);
}

export interface StartupReport {
  bytes: number;
  /** Every threshold the database is over. */
  crossed: SizeWarning[];
  /** Thresholds crossed since the last warning (the dialog shows these). */
  newWarnings: SizeWarning[];
  retention: ApplyResult | null;
  elapsedMs: number;
}

/**
 * One call for the utility process and `retention --apply` at startup: the size check with its
 * warnings, then retention when a policy is set. With nothing to do it touches only a stat, a
 * small state file and (with a policy) a few cheap counts.
 */
export async function enforceAtStartup(
  options: RetentionOptions & { statePath?: string; onWarning?: (warning: SizeWarning) => void },
): Promise<StartupReport> {
  const started = performance.now();
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  if (!existsSync(options.db)) throw new SkError('not-found', `no database at ${options.db} (set --db or OPENCODE_DB)`);
  const bytes = statSync(options.db).size + (existsSync(`${options.db}-wal`) ? statSync(`${options.db}-wal`).size : 0);
  const crossed = crossedThresholds(bytes, options.config.warnAtMB);
  const stateFile = options.statePath ?? statePath();
  const state = readState(stateFile);
  const key = resolve(options.db);
  const before = new Set(state.warned[key] ?? []);
  const newWarnings = crossed.filter((w) => !before.has(w.thresholdMB));
  const nowCrossed = crossed.map((w) => w.thresholdMB).sort((a, b) => a - b);
  let stateChanged = newWarnings.length > 0 || nowCrossed.length !== before.size;
  state.warned[key] = nowCrossed;
  const top = newWarnings[0];
  if (top) {
    log(top.message);
    options.onWarning?.(top);
  }
  let retention: ApplyResult | null = null;
  if (hasRetentionPolicy(options.config)) {
    const now = options.now ?? Date.now();
    const open = openDatabase(options.db, { readonly: true });
    let check: ReturnType<typeof nothingToDo>;
    try {
      check = nothingToDo(open, options.config, now, state.oldest?.[key]);
    } finally {
      open.db.close();
    }
    if (check.oldest && check.oldest !== state.oldest?.[key]) {
      state.oldest = { ...state.oldest, [key]: check.oldest };
      stateChanged = true;
    }
    if (!check.idle) {
      if (stateChanged) saveState(stateFile, state);
      retention = await applyRetention({ ...options, log });
      // Evictions moved the oldest root: read it afresh next time.
      if (state.oldest) delete state.oldest[key];
      stateChanged = true;
    }
  }
  if (stateChanged) saveState(stateFile, state);
  return { bytes, crossed, newWarnings, retention, elapsedMs: performance.now() - started };
}
