/**
 * Answers typed requests (src/core/utility-protocol.ts) on top of the session service, retention and the
 * config file. Transport-free: the utility process feeds it messages from `process.parentPort`
 * or `process.send`; tests may call it directly. Never throws: every failure is an error reply.
 */
import { existsSync, readFileSync } from 'node:fs';
import { relative, resolve } from 'node:path';
import { getHeapStatistics } from 'node:v8';
import { parse as parseJsonc } from 'jsonc-parser';
import { checkSessionConfig, describeIssue, issuePath, mergeOverrides, unknownSessionKeys, type SessionConfig, type SessionConfigInput } from '../core/config.js';
import { oneLine, redactSecrets, SkError } from '../core/errors.js';
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
  type ProtocolErrorCode,
  type Reply,
  type Request,
  type ResultMap,
  type SettingsInput,
  type SettingsResult,
  type StartupResult,
} from '../core/utility-protocol.js';
import { applyCompaction, STARTUP_COMPARE_LIMIT } from './compaction.js';
import { configSaveTarget, loadConfig, saveSessionBlock } from './config-file.js';
import { testConnection } from './connection-test.js';
import { dryRun, enforceAtStartup, applyRetention, mirrorOf, type RetentionProgress } from './retention.js';
import { syncStatusLine, type SyncStatusView } from '../core/sync-status.js';
import type { SessionService } from './service.js';
import { defaultStatePath, WarnState } from './warn-state.js';

type Env = Record<string, string | undefined>;

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

export class FieldsError extends SkError {
  constructor(
    message: string,
    readonly fields: FieldError[],
  ) {
    super('config', message);
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
  /** The mirror into the configured server, when `storage` names one (started after startup). */
  private mirror: { status: SyncStatusView; stop: AbortController; done: Promise<void> } | null = null;

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
      case 'showSession':
        await this.startup();
        return this.need().showSession(request.params.sessionId, { limit: request.params.limit, cursor: request.params.cursor ?? null });
      case 'attachment': {
        await this.startup();
        const result = await this.need().attachment(request.params.ref);
        return { ...result, relPath: relative(this.options.cacheDir, result.path) };
      }
      case 'stats':
        await this.startup();
        return this.need().stats({ largest: request.params?.largest ?? 10, warnAtMB: this.config.warnAtMB });
      case 'plan':
        await this.startup();
        return this.plan(request.params?.settings, request.params?.policy);
      case 'apply':
        await this.startup();
        return this.apply(request.id, request.params?.policy);
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

  private async plan(settings: SettingsInput | undefined, policy: PolicyOverride | undefined): Promise<PlanResult> {
    let config = settings ? this.validate(settings).config : this.config;
    if (policy) config = mergeOverrides(config, policy, this.env);
    const result = await dryRun({ db: this.options.db, config });
    return {
      evict: result.evict,
      freesBytes: result.freesBytes,
      storeBytes: result.storeBytes,
      unmetSize: result.unmetSize,
      policy: { maxSizeMB: config.maxSizeMB ?? null, maxAgeDays: config.maxAgeDays ?? null, maxSessions: config.maxSessions ?? null },
    };
  }

  private async apply(requestId: string | number, policy: PolicyOverride | undefined): Promise<ApplyOutcome> {
    if (this.applying) throw new ProtocolError('busy', 'a clean-up is already running');
    if (this.configError) throw new SkError('config', this.configError);
    const config = policy ? mergeOverrides(this.config, policy, this.env) : this.config;
    this.applying = true;
    try {
      const result = await applyRetention({
        db: this.options.db,
        config,
        cacheDir: this.options.cacheDir,
        // Beside a running OpenCode only the steps safe beside a writer run (no VACUUM).
        besideWriter: 'detect',
        log: (line) => this.options.emit({ event: 'log', message: redactSecrets(line) }),
        onProgress: (p) => this.options.emit({ event: 'progress', requestId, progress: progressView(p) }),
      });
      this.options.emit({ event: 'progress', requestId, progress: { phase: 'done' } });
      // Deleted sessions' attachments must not stay viewable through the files held open for them.
      if (result.evicted.length > 0) this.options.service?.handles.clear();
      return result;
    } finally {
      this.applying = false;
    }
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
