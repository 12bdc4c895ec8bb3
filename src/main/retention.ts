/**
 * Retention: size warnings, the eviction plan, and applying it. It only orchestrates: each run
 * opens one reader and one writer and hands them down. Every deletion is preceded by an archive
 * that was written, fsynced, renamed into place and read back verified (unless the user turned
 * archiving off); a session that changed after it was archived is not deleted.
 */
import { existsSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ApplyResult } from '../core/api.js';
import { formatBytes } from '../core/bytes.js';
import type { SessionConfig } from '../core/config.js';
import { hasRetentionPolicy } from '../core/config.js';
import { redactSecrets, SkError } from '../core/errors.js';
import { ACTIVE_WINDOW_MS, DAY_MS, planRetention, type PlannedEviction, type RetentionPlan } from '../core/planner.js';
import { selectorNarrows, type SessionSelector } from '../core/selectors.js';
import { crossedThresholds, MB, type SizeWarning } from '../core/thresholds.js';
import { describeWriters } from '../core/data-folder.js';
import { archiveSource, writeArchive } from '../store/archive/archive-write.js';
import { AttachmentCache } from '../store/attachment-cache.js';
import { detectWriters, fileBytes, openReader, openWriter } from '../store/open-store.js';
import type { SessionReader } from '../store/reader.js';
import { copySessions } from '../store/transfer/copy.js';
import type { TableCounts } from '../store/session-items.js';
import type { ReclaimResult, SessionWriter } from '../store/writer.js';
import { applyCompaction, STARTUP_COMPARE_LIMIT } from './compaction.js';
import { WarnState, type OldestRoot } from './warn-state.js';

export type { ApplyResult };

export type RetentionPolicyInput = Pick<SessionConfig, 'maxSizeMB' | 'maxAgeDays' | 'maxSessions' | 'orderBy' | 'keep'>;

export interface RetentionOptions {
  db: string;
  config: SessionConfig;
  cacheDir: string;
  now?: number;
  log?: (line: string) => void;
  onProgress?: (event: RetentionProgress) => void;
  /**
   * The root sessions of the plan the user saw: apply evicts only these. One that qualifies only
   * since (OpenCode wrote meanwhile) is left for the next plan, never evicted unseen.
   */
  seen?: ReadonlySet<string>;
  /**
   * Called with the plan this run made, before anything is written: throws to refuse a run whose
   * plan is not the one the user saw (the UI's plan objects).
   */
  confirmPlan?: (plan: RetentionPlan) => void;
  /** Aborted (the UI's Cancel): the run stops between two session trees, whatever phase it is in. */
  signal?: AbortSignal;
  /** Test seam: runs with the archive's temporary file once written, before it is verified. */
  afterArchive?: (path: string) => void | Promise<void>;
  /**
   * OpenCode is using the file: only steps safe beside a writer run (deletes are short
   * transactions; the VACUUM after them waits). `detect` looks first (the utility process).
   */
  besideWriter?: boolean | 'detect';
  /**
   * Only these sessions are considered (`--project`, `--larger-than`, `--keep-latest`, ...); the
   * limits apply to them, and with no limit set every selected session is evicted.
   */
  selector?: SessionSelector;
}

/**
 * Where a run is, from the work itself: sessions written to the archive (`done` of `sessions`, with
 * the bytes written), read back verified, trees deleted (`deleted` of `of`, with the bytes the plan
 * said they free), and the reclaim (the file's size before, then the mode and size after).
 */
export type RetentionProgress =
  | { phase: 'plan'; evict: number }
  | { phase: 'archive'; path: string; sessions: number; done: number; bytes: number }
  | { phase: 'verify'; path: string; sessions: number; done: number; bytes: number }
  | { phase: 'delete'; deleted: number; of: number; bytes: number; ofBytes: number }
  | { phase: 'reclaim'; bytesBefore: number; mode?: ReclaimResult['mode']; bytesAfter?: number };

/** `retention --dry-run --json`: roots only, their children inside, with why each goes. */
export interface DryRunResult {
  evict: PlannedEviction[];
  /** Root sessions in the store when planned. */
  rootSessions: number;
  freesBytes: number;
  storeBytes: number;
  unmetSize: boolean;
  /** With an external primary: roots whose trees its server holds exactly now ("mirrored, no archive needed"). */
  mirrored?: string[];
}

/** The reader and writer one run works with. */
interface Stores {
  reader: SessionReader;
  writer: SessionWriter;
}

async function withStores<T>(db: string, fn: (stores: Stores) => Promise<T>): Promise<T> {
  const reader = await openReader(db);
  try {
    const writer = await openWriter(db);
    try {
      return await fn({ reader, writer });
    } finally {
      await writer.close();
    }
  } finally {
    await reader.close();
  }
}

/** Bytes are needed to meet `maxSizeMB` and to show a plan; applying age or count limits needs none. */
async function planWith(reader: SessionReader, policy: RetentionPolicyInput, now: number, withBytes = policy.maxSizeMB !== undefined, selector?: SessionSelector): Promise<RetentionPlan> {
  const { facts, storeBytes } = await reader.retentionFacts(withBytes);
  if (!selector || !selectorNarrows(selector)) return planRetention({ sessions: facts, storeBytes, now, policy });
  if (selector.subagents) throw new SkError('usage', 'retention evicts whole session families; for child sessions alone use delete --subagents (or trim --subagents)');
  const chosen = new Set((await reader.selectSessions(selector, now)).map((s) => s.id));
  // Selectors without a limit: every selected session goes (pinned and active ones excepted).
  const limited = policy.maxAgeDays !== undefined || policy.maxSessions !== undefined || policy.maxSizeMB !== undefined;
  return planRetention({ sessions: facts.filter((f) => chosen.has(f.id)), storeBytes, now, policy: limited ? policy : { ...policy, maxSessions: 0 } });
}

/** The server the file is mirrored into when the config makes a server the primary store. */
export function mirrorOf(config: Pick<SessionConfig, 'storage' | 'connectionString'>): string | undefined {
  return config.storage !== 'sqlite' ? config.connectionString : undefined;
}

/** The plan, changing nothing (with a mirror, which planned roots its server holds exactly: no archive needed for those). */
export async function dryRun(options: Pick<RetentionOptions, 'db' | 'config' | 'now' | 'selector' | 'log'>): Promise<DryRunResult> {
  const reader = await openReader(options.db);
  try {
    const plan = await planWith(reader, options.config, options.now ?? Date.now(), true, options.selector);
    const result: DryRunResult = {
      evict: plan.evict,
      rootSessions: plan.remainingSessions + plan.evict.length,
      freesBytes: plan.freesBytes,
      storeBytes: plan.remainingBytes + plan.freesBytes,
      unmetSize: plan.unmetSize,
    };
    const mirror = mirrorOf(options.config);
    if (mirror && plan.evict.length > 0) result.mirrored = [...(await mirroredTrees(reader, options.db, mirror, plan.evict.map((e) => e.id), false, options.log)).roots];
    return result;
  } finally {
    await reader.close();
  }
}

/** A new archive's name in `archiveDir`: `<kind>-<time>.json.gz` (sessions), or another kind and ending. */
export function archiveName(archiveDir: string, now: number, kind = 'opencode-sessions', ending = '.json.gz'): string {
  const stamp = new Date(now).toISOString().replace(/[:.]/g, '-');
  let path = join(archiveDir, `${kind}-${stamp}${ending}`);
  for (let n = 2; existsSync(path); n++) path = join(archiveDir, `${kind}-${stamp}-${n}${ending}`);
  return path;
}

export type EvictOptions = Omit<RetentionOptions, 'config'> & {
  archive: boolean;
  archiveDir: string;
  archivePath?: string;
  offload?: string | undefined;
  /** The external primary the file is mirrored into (`storage` + `connectionString`): trees it holds exactly need no archive. */
  mirror?: string | undefined;
  /** `when-worth-it`: a small delete from a large file leaves the space inside it rather than rewriting it. */
  reclaim?: 'always' | 'when-worth-it';
  /** What the plan said each root frees: the delete phase's byte figures. */
  rootBytes?: ReadonlyMap<string, number>;
};
export type EvictResult = Omit<ApplyResult, 'bytesBefore' | 'archives' | 'unmetBytes'> & { bytesFreedRows: number };

/** The roots whose whole trees the mirror's server holds exactly as they are now, with the marks a delete must still find. */
async function mirroredTrees(
  reader: SessionReader,
  db: string,
  mirror: string,
  roots: readonly string[],
  catchUp: boolean,
  log?: (line: string) => void,
): Promise<{ roots: Set<string>; marks: Map<string, string> }> {
  const trees = new Map<string, string[]>();
  for (const root of roots) trees.set(root, await reader.sessionTrees([root]));
  const { mirroredExactly } = await import('./mirror-check.js');
  const check = await mirroredExactly(db, reader, mirror, [...trees.values()].flat(), { catchUp });
  if (check.unavailable) log?.(`session-keeper: the mirror's server cannot be asked (${check.unavailable}); evicted sessions are archived as usual`);
  const mirrored = new Set([...trees].filter(([, tree]) => tree.every((id) => check.mirrored.has(id))).map(([root]) => root));
  return { roots: mirrored, marks: check.marks };
}

/**
 * Archives (and verifies) the trees of `roots`, then deletes them, then reclaims. Throws before
 * deleting anything when the archive or the offload cannot be written and verified.
 */
async function evictTrees(stores: Stores, options: EvictOptions, roots: readonly string[]): Promise<EvictResult> {
  const { reader, writer } = stores;
  const now = options.now ?? Date.now();
  // A damaged file is refused before anything is written or deleted.
  await writer.assertIntact();
  const ids = await reader.sessionTrees(roots);
  // What each session was when it left: a tree that changes after this is kept.
  const versions = await reader.sessionVersions(ids);
  // With an external primary, trees its server holds exactly (verified, unchanged since) need no archive.
  const mirrored = options.mirror ? await mirroredTrees(reader, options.db, options.mirror, roots, true, options.log) : { roots: new Set<string>(), marks: new Map<string, string>() };
  const leaving = mirrored.roots.size ? await reader.sessionTrees(roots.filter((r) => !mirrored.roots.has(r))) : ids;
  /** Rows per table of each session, as archived (or copied): a delete must find exactly these. */
  let counts: ReadonlyMap<string, TableCounts> | undefined;
  let archive: string | null = null;
  const cancelled = (): EvictResult => ({ evicted: [], archive: null, offload: null, bytesAfter: fileBytes(options.db), changed: [], reclaim: 'none', bytesFreedRows: 0, cancelled: true, notReached: [...roots] });
  if (options.archive && leaving.length > 0) {
    const path = options.archivePath ?? archiveName(resolve(options.archiveDir), now);
    options.onProgress?.({ phase: 'archive', path, sessions: leaving.length, done: 0, bytes: 0 });
    let archivedBytes = 0;
    // Verified before it takes its name: an archive under its name has always been checked.
    let written: Awaited<ReturnType<typeof writeArchive>>;
    try {
      const source = archiveSource(reader, leaving, path);
      written = await writeArchive(source.items, path, {
        secondHalf: source.secondHalf,
        verify: true,
        signal: options.signal,
        onSession: (done, bytes) => {
          archivedBytes = bytes;
          options.onProgress?.({ phase: 'archive', path, sessions: leaving.length, done, bytes });
        },
        afterWrite: () => options.onProgress?.({ phase: 'verify', path, sessions: leaving.length, done: 0, bytes: archivedBytes }),
        // A hook that may change the file makes the verification wait for it (never behind the writer).
        beforeVerify: options.afterArchive,
        onVerified: (done) => options.onProgress?.({ phase: 'verify', path, sessions: leaving.length, done, bytes: archivedBytes }),
      });
    } catch (error) {
      // Cancelled while archiving: the unfinished file is gone and nothing was deleted.
      if (options.signal?.aborted) return cancelled();
      throw error;
    }
    archive = path;
    counts = new Map(written.sessions.map((s) => [s.id, s.counts]));
  }
  if (options.signal?.aborted) {
    if (archive) rmSync(archive, { force: true });
    return cancelled();
  }
  const unused = async (error: unknown): Promise<never> => {
    // When nothing was deleted, an archive written for this run is an orphan: removed, not left to pile up.
    if (archive && (await reader.missingSessions(ids)).length === 0) rmSync(archive, { force: true });
    throw error;
  };
  let offloaded: string | null = null;
  if (options.offload && leaving.length > 0) {
    // The trees are copied into the external database and verified there (counts and digests)
    // before anything leaves the local file; a failure throws before the delete.
    options.log?.(`session-keeper: moving ${ids.length} session${ids.length === 1 ? '' : 's'} to ${redactSecrets(options.offload)} before deleting them here`);
    try {
      const target = await openWriter(options.offload, { bulk: true });
      try {
        const copied = await copySessions(reader, target, { ids: leaving, copy: 'all' });
        if (!copied.verified) throw new SkError('corrupt', `offload to ${copied.target} did not verify; nothing was deleted`);
        offloaded = copied.target;
        counts ??= copied.counts;
      } finally {
        await target.close();
      }
    } catch (error) {
      return unused(error);
    }
  }
  const expected = new Map(ids.map((id) => [id, { updated: versions.get(id) ?? Number.NaN, counts: counts?.get(id), mark: mirrored.marks.get(id) }]));
  let deleted: Awaited<ReturnType<SessionWriter['deleteTrees']>>;
  const ofBytes = roots.reduce((n, root) => n + (options.rootBytes?.get(root) ?? 0), 0);
  let done = 0;
  let freed = 0;
  options.onProgress?.({ phase: 'delete', deleted: 0, of: roots.length, bytes: 0, ofBytes });
  try {
    deleted = await writer.deleteTrees(roots, {
      expected,
      signal: options.signal,
      onTree: (root, gone) => {
        done += 1;
        if (gone) freed += options.rootBytes?.get(root) ?? 0;
        options.onProgress?.({ phase: 'delete', deleted: done, of: roots.length, bytes: freed, ofBytes });
      },
    });
  } catch (error) {
    return unused(error);
  }
  if (deleted.deleted.length === 0 && archive) {
    rmSync(archive, { force: true });
    archive = null;
  }
  new AttachmentCache(options.cacheDir).forgetParts(new Set(deleted.partIds));
  if (deleted.notReached.length > 0) {
    // Cancelled between two trees: what was deleted is whole, the rest is untouched, the archive
    // (which holds both) stays; the VACUUM is left for later (SQLite reuses the free pages).
    return {
      evicted: deleted.deleted,
      archive,
      offload: offloaded,
      bytesAfter: fileBytes(options.db),
      changed: deleted.changed,
      reclaim: 'none',
      bytesFreedRows: 0,
      cancelled: true,
      notReached: deleted.notReached,
    };
  }
  options.onProgress?.({ phase: 'reclaim', bytesBefore: fileBytes(options.db) });
  let reclaimed: ReclaimResult;
  try {
    reclaimed = await writer.reclaim({ onlyWhenWorthIt: options.reclaim === 'when-worth-it', besideWriter: options.besideWriter === true });
  } catch (error) {
    if (!(error instanceof SkError)) throw error;
    const what = `${deleted.deleted.length} session${deleted.deleted.length === 1 ? ' was' : 's were'} deleted${archive ? ` (archived to ${archive})` : ''}`;
    throw new SkError(error.code, `${what}, but ${error.message}`);
  }
  options.onProgress?.({ phase: 'reclaim', bytesBefore: reclaimed.bytesBefore, mode: reclaimed.mode, bytesAfter: reclaimed.bytesAfter });
  return {
    evicted: deleted.deleted,
    mirrored: deleted.deleted.filter((root) => mirrored.roots.has(root)),
    archive,
    offload: offloaded,
    bytesAfter: reclaimed.bytesAfter,
    changed: deleted.changed,
    reclaim: reclaimed.mode,
    bytesFreedRows: reclaimed.bytesBefore - reclaimed.bytesAfter,
  };
}

/** Archives (and verifies) the trees of `roots`, deletes them and reclaims: retention's step, and `delete`. */
export function archiveThenDelete(options: EvictOptions, roots: readonly string[]): Promise<EvictResult> {
  return withStores(options.db, (stores) => evictTrees(stores, options, roots));
}

/**
 * Plans once and applies exactly that plan: the sessions a dry run at this moment would show,
 * never more. When reclaiming leaves the file still over `maxSizeMB` (the plan's estimate fell
 * short), that is said and left for the next run to plan, not evicted unseen.
 */
async function applyWith(stores: Stores, options: RetentionOptions): Promise<ApplyResult> {
  const { config } = options;
  const now = options.now ?? Date.now();
  const bytesBefore = fileBytes(options.db);
  const result: ApplyResult = { evicted: [], archive: null, archives: [], bytesBefore, bytesAfter: bytesBefore, changed: [], reclaim: 'none', unmetBytes: 0 };
  // A run someone follows is shown in bytes too: its plan needs them whatever the limits.
  const plan = await planWith(stores.reader, config, now, config.maxSizeMB !== undefined || options.onProgress !== undefined, options.selector);
  options.confirmPlan?.(plan);
  const seen = options.seen;
  const roots = plan.evict.map((e) => e.id).filter((id) => seen === undefined || seen.has(id));
  const unseen = plan.evict.length - roots.length;
  options.onProgress?.({ phase: 'plan', evict: roots.length });
  if (roots.length === 0) return result;
  const rootBytes = new Map(plan.evict.map((e) => [e.id, e.bytes]));
  const done = await evictTrees(stores, { ...options, archive: config.archive, archiveDir: config.archiveDir, offload: config.offload, mirror: mirrorOf(config), rootBytes }, roots);
  if (done.cancelled) {
    result.cancelled = true;
    result.notReached = done.notReached ?? [];
  }
  if (done.offload) result.offload = done.offload;
  if (done.mirrored?.length) result.mirrored = done.mirrored;
  result.evicted = done.evicted;
  result.changed = done.changed;
  if (done.archive) result.archives.push(done.archive);
  result.archive = done.archive;
  result.bytesAfter = done.bytesAfter;
  result.reclaim = done.reclaim;
  if (config.maxSizeMB !== undefined) result.unmetBytes = Math.max(0, done.bytesAfter - config.maxSizeMB * MB);
  const reasons = [
    config.maxAgeDays !== undefined ? `older than ${config.maxAgeDays} days` : null,
    config.maxSessions !== undefined ? `beyond ${config.maxSessions} sessions` : null,
    config.maxSizeMB !== undefined ? `to fit ${config.maxSizeMB} MB` : null,
  ].filter(Boolean);
  options.log?.(
    `Warning: session-keeper evicted ${done.evicted.length} OpenCode session${done.evicted.length === 1 ? '' : 's'} (${reasons.join(', ')})` +
      `${done.mirrored?.length ? `; ${done.mirrored.length} held exactly by ${redactSecrets(mirrorOf(config) ?? '')} (mirrored, no archive needed)` : ''}` +
      `${done.archive ? `; archived to ${done.archive}` : done.mirrored?.length === done.evicted.length ? '' : '; not archived (archiving is off)'}${done.offload ? `; moved to ${done.offload}` : ''}. Database ${formatBytes(bytesBefore)} -> ${formatBytes(done.bytesAfter)}.` +
      (done.changed.length ? ` ${done.changed.length} changed after they were archived and were kept.` : '') +
      (unseen > 0 ? ` ${unseen} more qualified after the plan was shown and were left for the next run.` : '') +
      (done.cancelled ? ` Cancelled: ${done.notReached?.length ?? 0} planned sessions were left as they were.` : '') +
      (result.unmetBytes > 0 ? ` Still ${formatBytes(result.unmetBytes)} over ${config.maxSizeMB} MB: the next run plans more.` : ''),
  );
  return result;
}

/** Plans and applies retention; repeats (a few rounds) while the file is still over `maxSizeMB`. */
export async function applyRetention(options: RetentionOptions): Promise<ApplyResult> {
  const besideWriter = await resolveBesideWriter(options);
  return withStores(options.db, (stores) => applyWith(stores, { ...options, besideWriter }));
}

/** `detect`: whether another process uses the file, said in the log when one does. */
export async function resolveBesideWriter(options: Pick<RetentionOptions, 'db' | 'besideWriter' | 'log'>): Promise<boolean> {
  if (options.besideWriter !== 'detect') return options.besideWriter ?? false;
  const line = describeWriters(await detectWriters(options.db), options.db);
  if (line) options.log?.(`session-keeper: ${line}; sessions are removed in short transactions beside it, and the VACUUM that gives the space back to the disk waits for a time OpenCode is closed (session-keeper vacuum).`);
  return line !== null;
}

/**
 * Cheap checks that tell, for the common case, that no limit is exceeded: no facts needed.
 * The age check needs the oldest root, which is a scan of the session table (its time columns
 * sit behind large JSON columns): it is remembered for a day, since new sessions are never older
 * than existing ones. (`restore` of old sessions is the exception: it forgets what was remembered.)
 */
async function nothingToDo(
  reader: SessionReader,
  policy: RetentionPolicyInput,
  now: number,
  remembered: OldestRoot | undefined,
): Promise<{ idle: boolean; oldest?: OldestRoot }> {
  if (policy.maxSizeMB !== undefined || policy.maxSessions !== undefined) {
    const size = await reader.storeSize();
    if (policy.maxSizeMB !== undefined && size.liveBytes > policy.maxSizeMB * MB) return { idle: false };
    if (policy.maxSessions !== undefined && size.rootSessions > policy.maxSessions) return { idle: false };
  }
  if (policy.maxAgeDays === undefined) return { idle: true };
  const cutoff = Math.min(now - policy.maxAgeDays * DAY_MS, now - ACTIVE_WINDOW_MS);
  let oldest = remembered && now - remembered.at < DAY_MS && remembered.at <= now ? remembered : undefined;
  oldest ??= { ...(await reader.oldestRoot()), at: now };
  const time = policy.orderBy === 'updated' ? oldest.updated : oldest.created;
  return { idle: time === null || time >= cutoff, oldest };
}

/** After sessions were put back (`restore`), the remembered oldest root may be wrong: forget it. */
export function forgetOldestRoot(db: string, statePath?: string): void {
  const state = WarnState.load(statePath);
  state.forgetOldest(db);
  state.save();
}

/** Startup compacts the event log once this many events were appended since it last did. */
const COMPACT_AFTER_EVENTS = 2000;

export interface StartupReport {
  bytes: number;
  /** Every threshold the database is over. */
  crossed: SizeWarning[];
  /** Thresholds crossed since the last warning (the dialog shows these). */
  newWarnings: SizeWarning[];
  retention: ApplyResult | null;
  /** Event snapshots compacted at this start (`compactEvents`), or null. */
  compaction: { events: number; bytes: number } | null;
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
  const bytes = fileBytes(options.db);
  const crossed = crossedThresholds(bytes, options.config.warnAtMB);
  const state = WarnState.load(options.statePath);
  const before = state.warned(options.db);
  const newWarnings = crossed.filter((w) => !before.has(w.thresholdMB));
  state.setCrossed(options.db, crossed.map((w) => w.thresholdMB));
  const top = newWarnings[0];
  if (top) {
    log(top.message);
    options.onWarning?.(top);
  }
  let retention: ApplyResult | null = null;
  let compaction: StartupReport['compaction'] = null;
  /** Looked up once, before the first destructive step (the utility process runs beside OpenCode). */
  let besideWriter: boolean | undefined;
  const compacting = options.config.compactEvents === true;
  if (hasRetentionPolicy(options.config) || compacting) {
    const now = options.now ?? Date.now();
    const remembered = state.oldest(options.db);
    const reader = await openReader(options.db);
    try {
      if (hasRetentionPolicy(options.config)) {
        const check = await nothingToDo(reader, options.config, now, remembered);
        if (check.oldest && check.oldest !== remembered) state.setOldest(options.db, check.oldest);
        if (!check.idle) {
          state.save();
          besideWriter ??= await resolveBesideWriter({ ...options, besideWriter: options.besideWriter ?? 'detect', log });
          const writer = await openWriter(options.db);
          try {
            retention = await applyWith({ reader, writer }, { ...options, log, besideWriter });
          } finally {
            await writer.close();
          }
          // Evictions moved the oldest root: read it afresh next time.
          state.forgetOldest(options.db);
        }
      }
      // After retention (what it evicted is not compacted first), and only once the log has grown.
      const mark = compacting ? (await reader.storeSize()).eventLogMark : 0;
      const last = state.compactedAt(options.db);
      if (compacting && (last === undefined || mark - last >= COMPACT_AFTER_EVENTS || mark < last)) {
        besideWriter ??= await resolveBesideWriter({ ...options, besideWriter: options.besideWriter ?? 'detect', log });
        const done = await applyCompaction({ db: options.db, maxCompareBytes: STARTUP_COMPARE_LIMIT, besideWriter });
        compaction = { events: done.compaction.deleted.count, bytes: done.compaction.deleted.bytes };
        state.setCompacted(options.db, mark);
        if (compaction.events > 0) log(`session-keeper: compacted OpenCode's event log: ${compaction.events} superseded snapshots (${formatBytes(compaction.bytes)}) removed; every session kept.`);
      }
    } finally {
      await reader.close();
    }
  }
  state.save();
  return { bytes, crossed, newWarnings, retention, compaction, elapsedMs: performance.now() - started };
}
