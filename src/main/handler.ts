/**
 * Answers typed requests (src/core/utility-protocol.ts) on top of the session service, retention and the
 * config file. Transport-free: the utility process feeds it messages from `process.parentPort`
 * or `process.send`; tests may call it directly. Never throws: every failure is an error reply.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { relative, resolve } from 'node:path';
import { getHeapStatistics } from 'node:v8';
import { parse as parseJsonc } from 'jsonc-parser';
import { checkSessionConfig, describeIssue, issuePath, mergeOverrides, unknownSessionKeys, type SessionConfig, type SessionConfigInput } from '../core/config.js';
import { oneLine, redactSecrets, SkError } from '../core/errors.js';
import { ACTIVE_WINDOW_MS, type PlannedEviction, type SessionFacts } from '../core/planner.js';
import {
  describeRequestError,
  errorReply,
  errorCodes,
  requestSchema,
  salvageId,
  type ApplyOutcome,
  type CompactOutcome,
  type EventBody,
  type FieldError,
  type Method,
  type PolicyOverride,
  type PlanResult,
  type ProgressView,
  type RestoreOutcome,
  type RunEnd,
  type RunView,
  type ProtocolErrorCode,
  type Reply,
  type Request,
  type ResultMap,
  type SettingsInput,
  type SettingsResult,
  type StartupResult,
} from '../core/utility-protocol.js';
import { browseSessions, SPACE_KINDS, type BrowseQuery, type BrowseResult, type BrowseSide } from '../core/browse.js';
import { checkSettingsForm } from '../core/settings-form.js';
import { syncStatusLine, type SyncStatusView } from '../core/sync-status.js';
import { fileBytes, openReader } from '../store/open-store.js';
import { archivePath, archiveSessions, listArchives, readHistory, recordRestore, recordRun, restoreFromArchive } from './archive-shelf.js';
import { applyCompaction, STARTUP_COMPARE_LIMIT } from './compaction.js';
import { configSaveTarget, loadConfig, saveSessionBlock } from './config-file.js';
import { testConnection } from './connection-test.js';
import { archiveThenDelete, dryRun, enforceAtStartup, applyRetention, mirrorOf, resolveBesideWriter, type RetentionProgress } from './retention.js';
import type { SessionService } from './service.js';
import type { KeptServer, ServerAccess } from './one-view.js';
import type { SessionReader } from '../store/reader.js';
import { defaultStatePath, WarnState } from './warn-state.js';

type Env = Record<string, string | undefined>;

/**
 * The browser's facts of one store: every root with its size, and the roots' projects; with
 * `space`, each session's bytes by kind (the file's side: the server's would cost a pass over it).
 */
async function sideOf(reader: SessionReader, space = false): Promise<BrowseSide> {
  const [{ facts }, projects, bytesByKind] = await Promise.all([
    reader.retentionFacts(true),
    reader.sessionProjects?.() ?? Promise.resolve(null),
    space ? (reader.sessionSpace?.() ?? Promise.resolve(undefined)) : Promise.resolve(undefined),
  ]);
  return { facts, rootProject: projects?.rootProject ?? new Map(), projects: projects?.projects ?? [], space: bytesByKind };
}

const oneView = () => import('./one-view.js');

export interface HandlerOptions {
  /** Null when the database could not be opened: requests that need it get `openError`. */
  service: SessionService | null;
  openError?: SkError | undefined;
  db: string;
  cacheDir: string;
  /** `--config PATH`: read and saved; default the global opencode.json[c]. */
  configPath?: string | undefined;
  /** Where "warned once" state lives; default `$XDG_DATA_HOME/session-keeper/state.json`. */
  statePath?: string | undefined;
  env?: Env;
  /** Events for the parent: progress, warnings, startup. */
  emit: (event: EventBody) => void;
  /** Answers `debugKillWorker` (tests only). */
  testHooks?: boolean;
  /** Tests only (with testHooks): each clean-up pauses this long between writing and verifying its archive, so a UI can be seen mid-run. */
  testRunPauseMs?: number;
}

/** A failure with a protocol-only code (busy, unavailable). */
export class ProtocolError extends Error {
  constructor(
    readonly code: ProtocolErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** `apply` refused a plan whose set changed: carries the new one. */
export class StalePlanError extends Error {
  constructor(readonly plan: PlanResult) {
    super('the database changed since this plan was made; here is the new plan (nothing was removed)');
  }
}

export class FieldsError extends SkError {
  constructor(
    message: string,
    readonly fields: FieldError[],
  ) {
    super('config', message);
  }
}

/** A plan as the utility keeps it: what `apply` re-checks and then runs. */
interface PlanRecord {
  result: PlanResult;
  /** The resolved settings it was made with (the saved ones, with its policy and exclusions). */
  config: SessionConfig;
  policy: PolicyOverride | undefined;
  exclude: string[];
  /** A plan of chosen root sessions (the browser), not of limits. */
  sessions: string[] | undefined;
  /** Its roots with their latest activity and children: the same inputs must give exactly this. */
  fingerprint: string;
}

/** Plans kept for `apply`; older ones are forgotten (the UI plans again). */
const KEPT_PLANS = 32;

function fingerprintOf(evict: readonly PlannedEviction[]): string {
  return JSON.stringify(evict.map((e) => [e.id, e.timeUpdated, [...e.children].sort()]));
}

/** The same inputs no longer give the same set: refused, with the plan they give now. */
class StalePlan extends Error {
  constructor() {
    super('the database changed since this plan was made; here is the new plan (nothing was removed)');
  }
}

function progressView(progress: RetentionProgress): ProgressView {
  return { ...progress };
}

const heap = { peak: 0 };
function sampleHeap(): number {
  const used = getHeapStatistics().used_heap_size;
  heap.peak = Math.max(heap.peak, used);
  return used;
}

export class RequestHandler {
  private readonly options: HandlerOptions;
  private readonly env: Env;
  private readonly statePath: string;
  private config: SessionConfig;
  private configError: string | null = null;
  private startupReport: StartupResult | null = null;
  private startupPromise: Promise<StartupResult> | null = null;
  private applying = false;
  private readonly plans = new Map<string, PlanRecord>();
  /** The clean-up running now, with what stops it. */
  private running: (RunView & { controller: AbortController; lastSent: number }) | null = null;
  private lastRun: RunEnd | null = null;
  /** The mirror into the configured server, when `storage` names one (started after startup). */
  private mirror: { status: SyncStatusView; stop: AbortController; done: Promise<void> } | null = null;
  /** The configured server's reader for one view (the browser's server-only sessions), kept between requests. */
  private kept: KeptServer | null = null;

  constructor(options: HandlerOptions) {
    this.options = options;
    this.env = options.env ?? process.env;
    this.statePath = options.statePath ?? defaultStatePath(this.env);
    this.config = this.loadSettings();
    setInterval(sampleHeap, 250).unref();
  }

  private get configFile(): string {
    return this.options.configPath ? resolve(this.options.configPath) : configSaveTarget(this.env);
  }

  /** The saved settings; on a broken file, the defaults (and the error kept for the UI). */
  private loadSettings(): SessionConfig {
    try {
      const path = this.options.configPath;
      // A --config file that does not exist yet is where settings will be saved: defaults until then.
      const config = path && !existsSync(path) ? checkSessionConfig({}, this.env) : { ok: true as const, config: loadConfig({ path, env: this.env }).config };
      if (!config.ok) throw new SkError('config', 'invalid defaults');
      this.configError = null;
      return config.config;
    } catch (error) {
      this.configError = oneLine(error);
      const fallback = checkSessionConfig({}, this.env);
      if (!fallback.ok) throw error;
      return fallback.config;
    }
  }

  /**
   * The size check and retention at startup, once. Every request that reads sessions waits for it,
   * so configured retention runs before the first session list is served.
   */
  startup(): Promise<StartupResult> {
    this.startupPromise ??= (async (): Promise<StartupResult> => {
      const started = performance.now();
      try {
        if (this.configError) throw new SkError('config', this.configError);
        if (!this.options.service) throw this.options.openError ?? new SkError('not-found', `cannot open ${this.options.db}`);
        const report = await enforceAtStartup({
          db: this.options.db,
          config: this.config,
          cacheDir: this.options.cacheDir,
          statePath: this.statePath,
          log: (line) => this.options.emit({ event: 'log', message: redactSecrets(line) }),
          onWarning: (w) => this.options.emit({ event: 'warning', thresholdMB: w.thresholdMB, message: w.message }),
          onProgress: (p) => this.options.emit({ event: 'progress', requestId: null, progress: progressView(p) }),
        });
        if (report.retention && report.retention.evicted.length > 0) {
          try {
            recordRun(this.statePath, this.options.db, 'startup', report.retention);
          } catch {
            // the history is a convenience: retention itself succeeded
          }
        }
        this.startupReport = {
          db: this.options.db,
          bytes: report.bytes,
          crossed: report.crossed,
          newWarnings: report.newWarnings,
          showDialog: report.newWarnings.length > 0,
          retention: report.retention,
          elapsedMs: report.elapsedMs,
          error: null,
        };
      } catch (error) {
        this.startupReport = {
          db: this.options.db,
          bytes: 0,
          crossed: [],
          newWarnings: [],
          showDialog: false,
          retention: null,
          elapsedMs: performance.now() - started,
          error: oneLine(error),
        };
      }
      this.options.emit({ event: 'startup', report: this.startupReport });
      // After startup retention (what it evicts is not sent first), before the first status is asked.
      if (this.startupReport.error === null) this.startMirror();
      return this.startupReport;
    })();
    return this.startupPromise;
  }

  /**
   * With a server as the primary store (`storage` + `connectionString`), mirrors the file into it
   * for as long as the process runs, beside OpenCode (the file is only read). Once, after startup.
   */
  startMirror(): void {
    const to = mirrorOf(this.config);
    if (this.mirror || !to || !this.options.service) return;
    const stop = new AbortController();
    const status: SyncStatusView = { state: 'starting', target: redactSecrets(to), mirrored: 0, pending: 0, conflicts: 0, serverNewer: 0, lastSyncedAt: null, error: null };
    const log = (line: string): void => this.options.emit({ event: 'log', message: redactSecrets(line) });
    const done = (async (): Promise<void> => {
      const { runSync, defaultSyncStateDir } = await import('./sync.js');
      await runSync({
        db: this.options.db,
        to,
        signal: stop.signal,
        stateDir: defaultSyncStateDir(this.env),
        log,
        onStatus: (s) => Object.assign(status, { state: s.state, target: s.target || status.target, mirrored: s.mirrored, pending: s.pending, conflicts: s.conflicts, serverNewer: s.serverNewer, lastSyncedAt: s.lastSyncedAt }),
      });
      status.state = 'stopped';
    })().catch((error: unknown) => {
      status.state = 'stopped';
      status.error = redactSecrets(oneLine(error));
      log(`sync: the mirror stopped: ${status.error}`);
    });
    this.mirror = { status, stop, done };
  }

  /** Stops the mirror (the session being written is rolled back whole on the server). */
  async stopMirror(): Promise<void> {
    this.mirror?.stop.abort();
    await this.mirror?.done;
  }

  /** Parses one incoming message and answers it; never throws. */
  async handle(message: unknown): Promise<Reply> {
    const parsed = requestSchema.safeParse(message);
    if (!parsed.success) return errorReply(salvageId(message), 'bad-request', describeRequestError(parsed.error));
    const request = parsed.data;
    try {
      const result = await this.dispatch(request);
      return { type: 'reply', id: request.id, ok: true, result };
    } catch (error) {
      return this.failure(request.id, error);
    }
  }

  private failure(id: string | number, error: unknown): Reply {
    if (error instanceof FieldsError) return errorReply(id, 'config', error.message, error.fields);
    if (error instanceof StalePlanError) return errorReply(id, 'stale-plan', error.message, undefined, error.plan);
    if (error instanceof ProtocolError) return errorReply(id, error.code, oneLine(error));
    const code: ProtocolErrorCode =
      error instanceof SkError && (errorCodes as readonly string[]).includes(error.code) ? (error.code as ProtocolErrorCode) : 'internal';
    return errorReply(id, code, oneLine(error));
  }

  private need(): SessionService {
    if (this.options.service) return this.options.service;
    throw this.options.openError ?? new SkError('not-found', `cannot open ${this.options.db}`);
  }

  private async dispatch(request: Request): Promise<ResultMap[Method]> {
    const service = this.options.service;
    switch (request.method) {
      case 'ping':
        return { pong: true, pid: process.pid };
      case 'health':
        return {
          pid: process.pid,
          heapUsed: sampleHeap(),
          heapPeak: heap.peak,
          workerHeapPeak: service?.workerHeapPeak ?? 0,
          rss: process.memoryUsage.rss(),
          workerThreads: service?.workerThreads() ?? 0,
          attachmentHandles: service?.handles.open ?? 0,
        };
      case 'startup':
        return this.startup();
      case 'remindLater':
        this.forgetWarnings();
        return { ok: true };
      case 'listSessions':
        await this.startup();
        return this.need().listSessions({ limit: request.params?.limit, cursor: request.params?.cursor ?? null });
      case 'showSession': {
        await this.startup();
        const page = { limit: request.params.limit, cursor: request.params.cursor ?? null };
        const server = await this.server();
        // With a server configured, a session the file no longer holds is paged from the server.
        if (server) return (await oneView()).showThrough(this.need(), server, request.params.sessionId, page);
        return this.need().showSession(request.params.sessionId, page);
      }
      case 'attachment': {
        await this.startup();
        const server = await this.server();
        const result = server ? await (await oneView()).attachmentThrough(this.need(), server, request.params.ref) : await this.need().attachment(request.params.ref);
        return { ...result, relPath: relative(this.options.cacheDir, result.path) };
      }
      case 'stats':
        await this.startup();
        return this.need().stats({ largest: request.params?.largest ?? 10, warnAtMB: this.config.warnAtMB });
      case 'plan':
        await this.startup();
        if (request.params?.sessions) return this.chosenPlan(request.params.sessions);
        return this.plan(request.params?.settings, request.params?.policy, request.params?.exclude ?? []);
      case 'apply':
        await this.startup();
        return this.apply(request.id, request.params.planId);
      case 'cancelRun':
        if (!this.running) return { cancelling: false };
        this.running.cancelling = true;
        this.running.controller.abort();
        return { cancelling: true };
      case 'runStatus': {
        const run = this.running;
        return { running: run ? { requestId: run.requestId, kind: run.kind, planId: run.planId, sessions: run.sessions, startedAt: run.startedAt, progress: run.progress, cancelling: run.cancelling } : null, last: this.lastRun };
      }
      case 'browseSessions':
        await this.startup();
        return this.browse(request.params ?? {});
      case 'setPinned':
        return this.setPinned(request.params.sessionId, request.params.pinned);
      case 'listArchives':
        this.config = this.loadSettings();
        return { archiveDir: this.config.archiveDir, archives: await listArchives(this.config.archiveDir) };
      case 'archiveContents':
        await this.startup();
        return { name: request.params.name, sessions: await archiveSessions(this.options.db, archivePath(this.config.archiveDir, request.params.name)) };
      case 'restoreArchive':
        await this.startup();
        return this.restore(request.params.name, request.params.sessionIds);
      case 'restoreFromServer':
        await this.startup();
        return this.restoreFromServer(request.id, request.params.sessionIds ?? [request.params.sessionId!]);
      case 'history':
        return { entries: readHistory(this.statePath, this.options.db) };
      case 'compact':
        await this.startup();
        return this.compact(request.id, request.params?.orphans ?? false);
      case 'getSettings':
        return this.settings();
      case 'saveSettings':
        return this.saveSettings(request.params.settings);
      case 'testConnection':
        return testConnection(request.params.storage, request.params.connectionString, { db: this.options.db });
      case 'syncStatus': {
        await this.startup();
        const status: SyncStatusView = this.mirror?.status ?? { state: 'off', target: null, mirrored: 0, pending: 0, conflicts: 0, serverNewer: 0, lastSyncedAt: null, error: null };
        return { ...status, line: syncStatusLine(status) };
      }
      case 'debugKillWorker': {
        if (!this.options.testHooks) throw new SkError('usage', 'debugKillWorker is answered only with SESSION_KEEPER_TEST_HOOKS=1');
        const killed = await this.need().terminateWorker();
        return { killed, threads: this.need().workerThreads() };
      }
    }
  }

  /** The `session` block as written in the settings file ({} when none or unreadable). */
  private rawBlock(): Record<string, unknown> {
    const path = this.configFile;
    if (!existsSync(path)) return {};
    try {
      const root: unknown = parseJsonc(readFileSync(path, 'utf8'), [], { allowTrailingComma: true });
      const block = root && typeof root === 'object' ? (root as Record<string, unknown>)['session'] : undefined;
      return block && typeof block === 'object' && !Array.isArray(block) ? (block as Record<string, unknown>) : {};
    } catch {
      return {};
    }
  }

  /**
   * Form values over the file's block (keys the form does not show, like `keep`, stay), a null
   * meaning "remove": validated the way the config file is, with errors per field.
   */
  private validate(settings: SettingsInput): { config: SessionConfig; merged: Record<string, unknown> } {
    // The form's own check first (the renderer ran the same one): its messages say what to type.
    const formErrors = checkSettingsForm(settings);
    if (formErrors.length > 0) throw new FieldsError(`Not saved: ${formErrors[0]!.message}`, formErrors);
    const merged: Record<string, unknown> = { ...this.rawBlock() };
    for (const [key, value] of Object.entries(settings)) {
      if (value === null) delete merged[key];
      else merged[key] = value;
    }
    const checked = checkSessionConfig(merged, this.env);
    if (checked.ok) return { config: checked.config, merged };
    const fields = checked.issues.map((issue) => ({
      field: issuePath('', issue.path) || 'session',
      message: describeIssue(merged, issue, '').replace(/^[^:]*: /, ''),
    }));
    throw new FieldsError(`invalid settings: ${describeIssue(merged, checked.issues[0] ?? { path: [], message: 'invalid' })}`, fields);
  }

  /** The settings a plan runs with: saved (or previewed) ones, its policy over them, its exclusions pinned. */
  private planConfig(settings: SettingsInput | undefined, policy: PolicyOverride | undefined, exclude: readonly string[]): SessionConfig {
    if (this.configError && !settings) throw new SkError('config', this.configError);
    let config = settings ? this.validate(settings).config : this.config;
    if (policy) config = mergeOverrides(config, policy, this.env);
    if (exclude.length > 0) config = { ...config, keep: [...new Set([...config.keep, ...exclude])] };
    return config;
  }

  private async plan(settings: SettingsInput | undefined, policy: PolicyOverride | undefined, exclude: string[]): Promise<PlanResult> {
    const config = this.planConfig(settings, policy, exclude);
    const result = await dryRun({ db: this.options.db, config });
    const plan: PlanResult = {
      planId: randomUUID(),
      applicable: settings === undefined,
      evict: result.evict,
      freesBytes: result.freesBytes,
      storeBytes: result.storeBytes,
      unmetSize: result.unmetSize,
      rootSessions: result.rootSessions,
      archive: config.archive,
      policy: { maxSizeMB: config.maxSizeMB ?? null, maxAgeDays: config.maxAgeDays ?? null, maxSessions: config.maxSessions ?? null },
      exclude,
    };
    if (plan.applicable) {
      this.keepPlan({ result: plan, config, policy, exclude, sessions: undefined, fingerprint: fingerprintOf(plan.evict) });
    }
    return plan;
  }

  private keepPlan(record: PlanRecord): void {
    this.plans.set(record.result.planId, record);
    for (const old of this.plans.keys()) {
      if (this.plans.size <= KEPT_PLANS) break;
      this.plans.delete(old);
    }
  }

  /**
   * A plan of chosen root sessions: each with its subtasks, except pinned ones and ones active in
   * the last hour (OpenCode may have them open), which it holds back and names.
   */
  private async chosenPlan(sessions: string[]): Promise<PlanResult> {
    this.config = this.loadSettings();
    if (this.configError) throw new SkError('config', this.configError);
    const config = this.config;
    const reader = await openReader(this.options.db);
    let facts: SessionFacts[];
    let storeBytes: number;
    try {
      ({ facts, storeBytes } = await reader.retentionFacts(true));
    } finally {
      await reader.close();
    }
    const byId = new Map(facts.map((f) => [f.id, f]));
    const pinned = new Set(config.keep);
    const activeSince = Date.now() - ACTIVE_WINDOW_MS;
    const evict: PlannedEviction[] = [];
    const held: NonNullable<PlanResult['held']> = [];
    for (const id of [...new Set(sessions)]) {
      const f = byId.get(id);
      if (!f) held.push({ id, why: 'not-found' });
      else if (pinned.has(id) || f.children.some((c) => pinned.has(c))) held.push({ id, why: 'pinned' });
      else if (f.timeUpdated > activeSince) held.push({ id, why: 'active' });
      else evict.push({ id: f.id, title: f.title, timeCreated: f.timeCreated, timeUpdated: f.timeUpdated, bytes: f.bytes, children: f.children, timeArchived: f.timeArchived, reasons: [] });
    }
    const freesBytes = evict.reduce((n, e) => n + e.bytes, 0);
    const plan: PlanResult = {
      planId: randomUUID(),
      applicable: true,
      evict,
      freesBytes,
      storeBytes,
      unmetSize: false,
      rootSessions: facts.length,
      archive: config.archive,
      policy: { maxSizeMB: null, maxAgeDays: null, maxSessions: null },
      exclude: [],
      held,
    };
    this.keepPlan({ result: plan, config, policy: undefined, exclude: [], sessions, fingerprint: fingerprintOf(evict) });
    return plan;
  }

  /**
   * Runs the plan `planId` names and nothing else: the saved settings must still be the ones it
   * was made with, and planning again inside the run (same reader as the deletes) must give the
   * same roots with the same latest activity; otherwise nothing is written and the new plan is
   * returned with the refusal.
   */
  private async apply(requestId: string | number, planId: string): Promise<ApplyOutcome> {
    if (this.applying) throw new ProtocolError('busy', 'a clean-up is already running');
    const record = this.plans.get(planId);
    if (!record) throw new SkError('not-found', 'this plan is no longer known (session-keeper restarted, or it was applied): plan again');
    this.config = this.loadSettings();
    if (this.configError) throw new SkError('config', this.configError);
    const stale = async (): Promise<never> => {
      this.plans.delete(planId);
      const fresh = record.sessions ? await this.chosenPlan(record.sessions) : await this.plan(undefined, record.policy, record.exclude);
      throw new StalePlanError(fresh);
    };
    const config = record.sessions ? this.config : this.planConfig(undefined, record.policy, record.exclude);
    if (JSON.stringify(config) !== JSON.stringify(record.config)) return stale();
    if (record.sessions) {
      // The same choice must give the same trees with the same activity, or it is not what was shown.
      const again = await this.chosenPlan(record.sessions);
      this.plans.delete(again.planId);
      if (fingerprintOf(again.evict) !== record.fingerprint) return stale();
    }
    this.applying = true;
    const controller = new AbortController();
    const run = { requestId, kind: 'clean-up' as const, planId, sessions: record.result.evict.length, startedAt: Date.now(), progress: null, cancelling: false, controller, lastSent: 0 };
    this.running = run;
    const end = (outcome: ApplyOutcome | null, error: string | null): void => {
      this.running = null;
      this.lastRun = { requestId, kind: 'clean-up', endedAt: Date.now(), outcome, error };
      this.options.emit({ event: 'runEnded', end: this.lastRun });
    };
    try {
      const result = record.sessions
        ? await this.removeChosen(record, config, controller.signal, (p) => this.progress(run, p))
        : await applyRetention({
        db: this.options.db,
        config,
        cacheDir: this.options.cacheDir,
        seen: new Set(record.result.evict.map((e) => e.id)),
        signal: controller.signal,
        afterArchive: this.options.testHooks && this.options.testRunPauseMs ? () => new Promise<void>((r) => setTimeout(r, this.options.testRunPauseMs)) : undefined,
        confirmPlan: (plan) => {
          if (fingerprintOf(plan.evict) !== record.fingerprint) throw new StalePlan();
        },
        // Beside a running OpenCode only the steps safe beside a writer run (no VACUUM).
        besideWriter: 'detect',
        log: (line) => this.options.emit({ event: 'log', message: redactSecrets(line) }),
        onProgress: (p) => this.progress(run, p),
      });
      this.plans.delete(planId);
      this.options.emit({ event: 'progress', requestId, progress: { phase: 'done' } });
      // Deleted sessions' attachments must not stay viewable through the files held open for them.
      if (result.evicted.length > 0) this.options.service?.handles.clear();
      end(result, null);
      try {
        recordRun(this.statePath, this.options.db, 'clean-up', result);
      } catch (error) {
        this.options.emit({ event: 'log', message: `session-keeper: the clean-up is not in the history: ${oneLine(error)}` });
      }
      return result;
    } catch (error) {
      if (error instanceof StalePlan) {
        this.running = null;
        this.applying = false;
        return stale();
      }
      end(null, oneLine(error));
      throw error;
    } finally {
      if (this.running === run) this.running = null;
      this.applying = false;
    }
  }

  /** Archives (verified) and removes the chosen trees, as `delete` does, with the run's progress and Cancel. */
  private async removeChosen(record: PlanRecord, config: SessionConfig, signal: AbortSignal, onProgress: (p: RetentionProgress) => void): Promise<ApplyOutcome> {
    const log = (line: string): void => this.options.emit({ event: 'log', message: redactSecrets(line) });
    const bytesBefore = fileBytes(this.options.db);
    const roots = record.result.evict.map((e) => e.id);
    const besideWriter = await resolveBesideWriter({ db: this.options.db, besideWriter: 'detect', log });
    onProgress({ phase: 'plan', evict: roots.length });
    const done = await archiveThenDelete(
      { db: this.options.db, cacheDir: this.options.cacheDir, archive: config.archive, archiveDir: config.archiveDir, besideWriter, signal, onProgress, log, reclaim: 'when-worth-it', rootBytes: new Map(record.result.evict.map((e) => [e.id, e.bytes])) },
      roots,
    );
    return {
      evicted: done.evicted,
      archive: done.archive,
      archives: done.archive ? [done.archive] : [],
      bytesBefore,
      bytesAfter: done.bytesAfter,
      changed: done.changed,
      reclaim: done.reclaim,
      unmetBytes: 0,
      ...(done.cancelled ? { cancelled: true, notReached: done.notReached ?? [] } : {}),
    };
  }

  /** Restores from an archive in archiveDir; one run at a time, as with clean-ups. */
  private async restore(name: string, sessionIds: string[] | undefined): Promise<{ restored: string[]; skipped: string[] }> {
    if (this.applying) throw new ProtocolError('busy', 'a clean-up is running; restore when it has ended');
    this.config = this.loadSettings();
    const path = archivePath(this.config.archiveDir, name);
    this.applying = true;
    try {
      const result = await restoreFromArchive(this.options.db, path, sessionIds);
      return { restored: result.imported.map((s) => s.id), skipped: result.skipped };
    } finally {
      this.applying = false;
    }
  }

  /**
   * Brings sessions the file no longer holds back from the configured server, as
   * `restore --from <server> <ids>` does (present sessions skipped, nothing deleted anywhere, each
   * tree's counts verified before the next): a run like a clean-up, in `runStatus`, stopped by
   * `cancelRun` between two trees, ended with `runEnded` and recorded in the history.
   */
  private async restoreFromServer(requestId: string | number, roots: string[]): Promise<RestoreOutcome> {
    if (this.applying) throw new ProtocolError('busy', 'a clean-up is running; restore when it has ended');
    this.config = this.loadSettings();
    if (this.configError) throw new SkError('config', this.configError);
    const from = mirrorOf(this.config);
    if (!from) throw new SkError('usage', 'no server is configured (the settings\' storage is SQLite): there is nothing to restore from');
    this.applying = true;
    const controller = new AbortController();
    const run = { requestId, kind: 'restore' as const, planId: '', sessions: roots.length, startedAt: Date.now(), progress: null as ProgressView | null, cancelling: false, controller, lastSent: 0 };
    this.running = run;
    const end = (restore: RestoreOutcome | null, error: string | null): void => {
      this.running = null;
      this.lastRun = { requestId, kind: 'restore', endedAt: Date.now(), outcome: null, restore, error };
      this.options.emit({ event: 'runEnded', end: this.lastRun });
    };
    const pause = this.options.testHooks && this.options.testRunPauseMs ? this.options.testRunPauseMs : 0;
    try {
      const { restoreFrom } = await import('./migration.js');
      const bytesBefore = fileBytes(this.options.db);
      const result = await restoreFrom({
        db: this.options.db,
        from,
        roots,
        signal: controller.signal,
        beforeTree: pause ? () => new Promise<void>((r) => setTimeout(r, pause)) : undefined,
        onProgress: (p) => {
          const view: ProgressView = { phase: 'restore', done: p.sessionsDone, sessions: p.sessionsTotal, bytes: p.bytesDone, ofBytes: p.bytesTotal };
          run.progress = view;
          const now = performance.now();
          if (now - run.lastSent < 100 && p.sessionsDone < p.sessionsTotal) return;
          run.lastSent = now;
          this.options.emit({ event: 'progress', requestId, progress: view });
        },
      });
      const target = redactSecrets(from);
      const outcome: RestoreOutcome = { restored: result.copiedIds, skipped: result.skippedIds, verified: result.verified, from: target, ...(result.cancelled ? { cancelled: true as const, notReached: result.notReached } : {}) };
      this.options.emit({ event: 'progress', requestId, progress: { phase: 'done' } });
      this.options.emit({ event: 'log', message: `session-keeper: restored ${result.copied} session(s) of ${roots.join(', ')} from ${target}${result.cancelled ? ' (cancelled)' : ''}` });
      end(outcome, null);
      try {
        recordRestore(this.statePath, this.options.db, { restored: outcome.restored.length, from: target, bytesBefore, bytesAfter: fileBytes(this.options.db), cancelled: result.cancelled });
      } catch (error) {
        this.options.emit({ event: 'log', message: `session-keeper: the restore is not in the history: ${oneLine(error)}` });
      }
      return outcome;
    } catch (error) {
      end(null, redactSecrets(oneLine(error)));
      throw error;
    } finally {
      if (this.running === run) this.running = null;
      this.applying = false;
    }
  }

  /**
   * A page of the session browser, from the facts the planner uses (sizes, never payloads). With a
   * server configured, its sessions join the file's, each marked where it lives; a server that
   * cannot be read leaves the file's sessions shown and says why.
   */
  private async browse(query: BrowseQuery): Promise<BrowseResult> {
    this.config = this.loadSettings();
    const to = mirrorOf(this.config);
    const kept = await this.server();
    // Bytes by kind cost whole-file passes (once per file state): asked only for a sort by them.
    const byKind = (SPACE_KINDS as readonly string[]).includes(query.sort ?? '');
    const [local, server] = await Promise.all([this.browseSide(this.options.db, byKind), kept ? kept.use(sideOf).then((side) => ({ side, error: null }), (error: unknown) => ({ side: undefined, error: redactSecrets(oneLine(error)) })) : undefined]);
    const result = browseSessions({ ...local, pinned: new Set(this.config.keep), server: server?.side }, query);
    return to && server ? { ...result, server: { target: redactSecrets(to), error: server.error } } : result;
  }

  private async browseSide(location: string, space: boolean): Promise<BrowseSide> {
    const reader = await openReader(location);
    try {
      return await sideOf(reader, space);
    } finally {
      await reader.close();
    }
  }

  /**
   * The configured server's reader for one view, kept open between requests (closed when idle, or
   * when the settings name another server); null when the settings name none.
   */
  private async server(): Promise<ServerAccess | null> {
    const to = mirrorOf(this.config);
    if (this.kept?.location === to) return this.kept;
    const { KeptServer } = await oneView();
    const old = this.kept;
    this.kept = to ? new KeptServer(to) : null;
    await old?.close();
    return this.kept;
  }

  /** `keep` as written in the file, with `sessionId` added or removed; the rest of the file untouched. */
  private setPinned(sessionId: string, pinned: boolean): { keep: string[] } {
    const raw = this.rawBlock()['keep'];
    const keep = Array.isArray(raw) ? raw.filter((k): k is string => typeof k === 'string') : [];
    const next = pinned ? (keep.includes(sessionId) ? keep : [...keep, sessionId]) : keep.filter((k) => k !== sessionId);
    if (JSON.stringify(next) !== JSON.stringify(keep)) saveSessionBlock(this.configFile, { keep: next });
    this.config = this.loadSettings();
    return { keep: next };
  }

  /** Progress as it happens, at most every 100 ms within a phase (a phase's first and last always go). */
  private progress(run: RunView & { lastSent: number }, progress: RetentionProgress): void {
    const view = progressView(progress);
    const now = performance.now();
    const last = view.phase === 'delete' ? view.deleted === view.of : view.phase === 'reclaim' ? view.mode !== undefined : view.done !== undefined && view.done === view.sessions;
    const changed = run.progress?.phase !== view.phase;
    run.progress = view;
    if (!changed && !last && now - run.lastSent < 100) return;
    run.lastSent = now;
    this.options.emit({ event: 'progress', requestId: run.requestId, progress: view });
  }

  /** The size-check dialog's "Compact history": every session stays; one run at a time with clean-ups. */
  private async compact(requestId: string | number, orphans: boolean): Promise<CompactOutcome> {
    if (this.applying) throw new ProtocolError('busy', 'a clean-up is already running');
    this.applying = true;
    try {
      const emit = (progress: ProgressView): void => this.options.emit({ event: 'progress', requestId, progress });
      const outcome = await applyCompaction({
        db: this.options.db,
        orphans,
        // The utility's own heap stays small: values this large keep their snapshots (see STARTUP_COMPARE_LIMIT).
        maxCompareBytes: STARTUP_COMPARE_LIMIT,
        besideWriter: 'detect',
        log: (line) => this.options.emit({ event: 'log', message: redactSecrets(line) }),
        onProgress: (p) => emit({ phase: 'compact', sessions: p.aggregatesDone, of: p.aggregatesTotal, deleted: p.eventsDeleted, bytes: p.bytesDeleted }),
      });
      emit({ phase: 'done' });
      return {
        eventsDeleted: outcome.compaction.deleted.count,
        bytesDeleted: outcome.compaction.deleted.bytes,
        orphanEventsDeleted: outcome.compaction.orphansDeleted.count,
        reclaim: outcome.reclaim.mode,
        bytesBefore: outcome.reclaim.bytesBefore,
        bytesAfter: outcome.reclaim.bytesAfter,
      };
    } finally {
      this.applying = false;
    }
  }

  private settings(): SettingsResult {
    const path = this.configFile;
    const raw = this.rawBlock();
    const warnings = unknownSessionKeys(raw).map((key) => `session.${key}: unknown key, kept in the file`);
    this.config = this.loadSettings();
    return { path, exists: existsSync(path), raw, resolved: this.configError ? null : { ...this.config }, error: this.configError, warnings };
  }

  /** Writes only the keys whose value changed, so the rest of the file stays exactly as the user left it. */
  private saveSettings(settings: SettingsInput): SettingsResult {
    const before = this.rawBlock();
    this.validate(settings);
    const defaults = checkSessionConfig({}, this.env);
    const defaultOf = (key: string): unknown => (defaults.ok ? (defaults.config as Record<string, unknown>)[key] : undefined);
    const block: Partial<SessionConfigInput> = {};
    const writable = block as Record<string, unknown>;
    for (const [key, value] of Object.entries(settings)) {
      if (value === null) {
        if (key in before) writable[key] = undefined;
      } else if (!(key in before) && JSON.stringify(defaultOf(key)) === JSON.stringify(value)) {
        // the default, not written before: leave the file without it
      } else if (JSON.stringify(before[key]) !== JSON.stringify(value)) {
        writable[key] = value;
      }
    }
    if (Object.keys(block).length > 0) saveSessionBlock(this.configFile, block);
    return this.settings();
  }

  /** "Remind me later": the thresholds crossed warn again at the next start. */
  private forgetWarnings(): void {
    const state = WarnState.load(this.statePath);
    state.forgetWarnings(this.options.db);
    state.save();
  }
}
