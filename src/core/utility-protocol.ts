/**
 * The typed request protocol between the shells (Electron main, web mode, tests) and the utility
 * process, and between the renderer and its shell. Every message that crosses a process boundary
 * is parsed with these schemas; anything unknown or malformed gets an error reply, never a crash.
 *
 *   request  {type: 'request', id, method, params}
 *   reply    {type: 'reply', id, ok: true, result} | {type: 'reply', id, ok: false, error}
 *   event    {type: 'event', event: ...}             (progress, warnings, startup, restarts)
 *
 * Attachment bytes do not travel as replies: a shell opens a stream (`stream-open`) and the
 * utility answers on it from the file handle it holds, `head` first, then `chunk`s as the shell
 * asks for them (`pull`), then `end`. In Electron a stream is a MessagePortMain of its own; over
 * Node's IPC channel its messages travel as `{type: 'stream', stream, body}`.
 */
import { z } from 'zod';
import type { SyncStatusView } from './sync-status.js';
import type { SkErrorCode } from './errors.js';
import type { ApplyResult, AttachmentResult, ListResult, ShowResult, StatsResult } from './api.js';
import type { PlannedEviction } from './planner.js';
import { BROWSE_SORTS, SESSION_WHERE, type BrowseResult } from './browse.js';
import { STORAGE_KINDS } from './storage.js';

/** Strings from the renderer are bounded: nothing it sends may be large. */
const id = z.union([z.number().int().nonnegative(), z.string().min(1).max(64)]);
const sessionId = z.string().min(1).max(128);
const cursor = z.string().max(512).nullable().optional();
const limit = z.number().int().min(1).max(1000).optional();
const planId = z.string().min(1).max(64);

/**
 * Settings as the user typed them: the `session` block's input form, keys optional. A key set to
 * null is removed from the file when saved. Validated for real by `checkSessionConfig`.
 */
export const settingsInputSchema = z.record(z.string().max(64), z.unknown()).refine((v) => Object.keys(v).length <= 32, {
  message: 'too many keys',
});
export type SettingsInput = z.infer<typeof settingsInputSchema>;

/** One-off limits for "archive and clean up now", over the saved settings. */
export const policyOverrideSchema = z
  .object({
    maxSizeMB: z.number().positive().optional(),
    maxAgeDays: z.number().positive().optional(),
    maxSessions: z.number().int().min(1).optional(),
  })
  .strict();
export type PolicyOverride = z.infer<typeof policyOverrideSchema>;

export const requestBodySchema = z.discriminatedUnion('method', [
  z.object({ method: z.literal('ping'), params: z.object({}).strict().optional() }),
  z.object({ method: z.literal('health'), params: z.object({}).strict().optional() }),
  z.object({ method: z.literal('startup'), params: z.object({}).strict().optional() }),
  z.object({ method: z.literal('remindLater'), params: z.object({}).strict().optional() }),
  z.object({ method: z.literal('listSessions'), params: z.object({ limit, cursor }).strict().optional() }),
  z.object({ method: z.literal('showSession'), params: z.object({ sessionId, limit, cursor }).strict() }),
  z.object({ method: z.literal('attachment'), params: z.object({ ref: z.string().min(1).max(160) }).strict() }),
  z.object({ method: z.literal('stats'), params: z.object({ largest: z.number().int().min(0).max(100).optional() }).strict().optional() }),
  /**
   * Dry run: the saved settings, or `settings` (unsaved form values: the live preview, never
   * applicable), with `policy` over them and `exclude` kept out of this one clean-up. The answer
   * is a plan object: its id, its inputs and the exact set of root sessions it removes.
   */
  z.object({
    method: z.literal('plan'),
    params: z
      .object({
        settings: settingsInputSchema.optional(),
        policy: policyOverrideSchema.optional(),
        exclude: z.array(sessionId).max(1000).optional(),
        /** Exactly these root sessions (the browser's selection) instead of the limits. */
        sessions: z.array(sessionId).min(1).max(1000).optional(),
      })
      .strict()
      .optional(),
  }),
  /**
   * Archive and clean up exactly the plan `planId` names, after the utility checked that the same
   * inputs still give the same set (else a `stale-plan` error carrying the new plan). Progress
   * arrives as events carrying this request's id.
   */
  z.object({ method: z.literal('apply'), params: z.object({ planId }).strict() }),
  /** Stops the running clean-up between two session trees (nothing half-deleted; the archive kept). */
  z.object({ method: z.literal('cancelRun'), params: z.object({}).strict().optional() }),
  /** The clean-up running now (a reopened dialog or a reloaded page shows it), and the last one that ended. */
  z.object({ method: z.literal('runStatus'), params: z.object({}).strict().optional() }),
  /** One page of root sessions for the session browser: search by title, sort, one project; totals per project. */
  z.object({
    method: z.literal('browseSessions'),
    params: z
      .object({
        search: z.string().max(200).optional(),
        sort: z.enum(BROWSE_SORTS).optional(),
        project: z.string().max(256).optional(),
        where: z.enum(SESSION_WHERE).optional(),
        offset: z.number().int().min(0).max(10_000_000).optional(),
        limit: z.number().int().min(1).max(200).optional(),
      })
      .strict()
      .optional(),
  }),
  /** Pins (never evicted) or unpins a session: writes `keep` in the config file, comments kept. */
  z.object({ method: z.literal('setPinned'), params: z.object({ sessionId, pinned: z.boolean() }).strict() }),
  /** The session archives in `archiveDir`: name, sessions, size, date. */
  z.object({ method: z.literal('listArchives'), params: z.object({}).strict().optional() }),
  /** The root sessions one archive (by its name in `archiveDir`) holds, and whether each is in the store now. */
  z.object({ method: z.literal('archiveContents'), params: z.object({ name: z.string().min(1).max(200) }).strict() }),
  /** Puts sessions back from an archive: the trees of `sessionIds`, or all; ones present are skipped. */
  z.object({ method: z.literal('restoreArchive'), params: z.object({ name: z.string().min(1).max(200), sessionIds: z.array(sessionId).min(1).max(10_000).optional() }).strict() }),
  /**
   * Brings sessions (each with its subtasks) the file no longer holds back from the configured
   * server, byte for byte (`restore --from <server>`): `sessionId`, or several `sessionIds`. A run
   * like a clean-up (runStatus shows it, cancelRun stops it between two session trees, runEnded
   * ends it, the history records it); a write that deletes nothing; progress arrives as `restore`
   * events carrying this request's id.
   */
  z.object({
    method: z.literal('restoreFromServer'),
    params: z
      .object({ sessionId: sessionId.optional(), sessionIds: z.array(sessionId).min(1).max(1000).optional() })
      .strict()
      .refine((p) => (p.sessionId === undefined) !== (p.sessionIds === undefined), { message: 'give sessionId or sessionIds, not both' }),
  }),
  /** Past clean-ups of this database, newest first. */
  z.object({ method: z.literal('history'), params: z.object({}).strict().optional() }),
  z.object({ method: z.literal('compact'), params: z.object({ orphans: z.boolean().optional() }).strict().optional() }),
  z.object({ method: z.literal('getSettings'), params: z.object({}).strict().optional() }),
  z.object({ method: z.literal('saveSettings'), params: z.object({ settings: settingsInputSchema }).strict() }),
  z.object({
    method: z.literal('testConnection'),
    params: z.object({ storage: z.enum(STORAGE_KINDS), connectionString: z.string().max(4096).optional() }).strict(),
  }),
  /** Test seam, answered only when SESSION_KEEPER_TEST_HOOKS=1: ends one worker thread. */
  z.object({ method: z.literal('syncStatus'), params: z.object({}).strict().optional() }),
  z.object({ method: z.literal('debugKillWorker'), params: z.object({}).strict().optional() }),
]);
export type RequestBody = z.infer<typeof requestBodySchema>;
export type Method = RequestBody['method'];
export type ParamsOf<M extends Method> = Extract<RequestBody, { method: M }>['params'];

export const requestSchema = z.intersection(z.object({ type: z.literal('request'), id }), requestBodySchema);
export type Request = z.infer<typeof requestSchema>;

// ---- results ----------------------------------------------------------------------------------

export interface FieldError {
  /** `maxSizeMB`, `warnAtMB[1]` */
  field: string;
  message: string;
}

/** One root to evict, with its children and reasons: the planner's own shape. */
export type PlanEntry = PlannedEviction;

/** Same fields as `retention --dry-run --json`, plus what makes the plan an object apply can name. */
export interface PlanResult {
  /** What `apply` takes: the utility keeps the plan's inputs and set under it. */
  planId: string;
  /** False for a preview of unsaved settings: only a plan of the saved settings can be applied. */
  applicable: boolean;
  /** The root sessions it removes, in eviction order (each with its children). */
  evict: PlanEntry[];
  freesBytes: number;
  storeBytes: number;
  unmetSize: boolean;
  /** Root sessions in the store now: "removes 1,141 of 2,622". */
  rootSessions: number;
  /** Whether removed sessions are archived first (the settings' `archive`). */
  archive: boolean;
  /** The limits the plan was made for. */
  policy: { maxSizeMB: number | null; maxAgeDays: number | null; maxSessions: number | null };
  /** Sessions the user kept out of this clean-up. */
  exclude: string[];
  /** For a plan of chosen sessions: those it does not remove, and why (pinned, active, not found). */
  held?: { id: string; why: 'pinned' | 'active' | 'not-found' }[];
}

/** Same fields as `retention --apply --json`. */
export type ApplyOutcome = ApplyResult;

/** What `compact` removed from the event log, and the space given back afterwards. */
export interface CompactOutcome {
  eventsDeleted: number;
  bytesDeleted: number;
  orphanEventsDeleted: number;
  /** how the space came back: `deferred` beside a running OpenCode (it stays inside the file, reused) */
  reclaim: 'incremental' | 'vacuum' | 'none' | 'deferred';
  bytesBefore: number;
  bytesAfter: number;
}

export interface SizeWarningView {
  thresholdMB: number;
  message: string;
}

export interface StartupResult {
  db: string;
  bytes: number;
  crossed: SizeWarningView[];
  newWarnings: SizeWarningView[];
  /** True when the size-check dialog should open: a threshold crossed since the last warning. */
  showDialog: boolean;
  retention: ApplyOutcome | null;
  elapsedMs: number;
  /** A startup failure (bad config, missing db): the UI shows it instead of crashing. */
  error: string | null;
}

export interface SettingsResult {
  /** The file saving writes to. */
  path: string;
  exists: boolean;
  /** The `session` block as written in that file (input form), {} when none. */
  raw: Record<string, unknown>;
  /** Every default filled in; null when the file is invalid. */
  resolved: Record<string, unknown> | null;
  error: string | null;
  warnings: string[];
}

export interface TestConnectionResult {
  ok: boolean;
  available: boolean;
  message: string;
}

export interface HealthResult {
  pid: number;
  heapUsed: number;
  heapPeak: number;
  workerHeapPeak: number;
  rss: number;
  workerThreads: number;
  /** Attachment files the utility holds open (cached handles and ones still being streamed). */
  attachmentHandles: number;
}

/** Attachment results carry the path relative to the cache, from which each shell builds its URL. */
export type AttachmentView = AttachmentResult & { relPath: string };

/** A run the utility runs (`apply`, or a restore from the server), as a UI that was not there when it started sees it. */
export interface RunView {
  requestId: string | number;
  /** `clean-up`: an `apply` of a plan; `restore`: `restoreFromServer`. */
  kind: RunKind;
  /** The plan applied; empty for a restore. */
  planId: string;
  /** Roots of its plan, or roots asked to restore. */
  sessions: number;
  startedAt: number;
  /** Its latest progress, or null before the first. */
  progress: ProgressView | null;
  cancelling: boolean;
}

export type RunKind = 'clean-up' | 'restore';

/** What a restore from the server did; `cancelled` with the roots it did not reach. */
export interface RestoreOutcome {
  /** Sessions copied into the file now, and ones left because the file held them. */
  restored: string[];
  skipped: string[];
  /** Every tree restored had the server's counts in the file afterwards. */
  verified: boolean;
  /** The server, password masked. */
  from: string;
  cancelled?: true;
  notReached?: string[];
}

export interface RunEnd {
  requestId: string | number;
  kind: RunKind;
  endedAt: number;
  /** A clean-up's outcome, or null when it failed (then `error`) or was a restore. */
  outcome: ApplyOutcome | null;
  /** A restore's outcome (null when it failed or was a clean-up). */
  restore?: RestoreOutcome | null;
  error: string | null;
}

export interface RunStatusResult {
  running: RunView | null;
  last: RunEnd | null;
}

export interface ArchiveListEntry {
  name: string;
  path: string;
  bytes: number;
  /** Written (epoch ms). */
  time: number;
  /** Sessions in it, subtasks included, and root sessions. */
  sessions: number;
  roots: number;
  /** Set when it cannot be read. */
  error: string | null;
}

export interface ArchiveSessionEntry {
  id: string;
  title: string;
  timeCreated: number;
  subtasks: number;
  /** Whether the store has this session now (restoring it would skip it). */
  present: boolean;
}

/** One past clean-up. */
export interface HistoryEntry {
  at: number;
  db: string;
  kind: 'clean-up' | 'startup' | 'restore';
  removed: number;
  bytesBefore: number;
  bytesAfter: number;
  /** Archive names in archiveDir. */
  archives: string[];
  cancelled: boolean;
  /** A restore from a server (`kind: 'restore'`): sessions brought back, and from where (password masked). */
  restored?: number;
  from?: string;
}

export interface ResultMap {
  ping: { pong: true; pid: number };
  health: HealthResult;
  startup: StartupResult;
  remindLater: { ok: true };
  listSessions: ListResult;
  showSession: ShowResult;
  attachment: AttachmentView;
  stats: StatsResult;
  plan: PlanResult;
  apply: ApplyOutcome;
  cancelRun: { cancelling: boolean };
  runStatus: RunStatusResult;
  browseSessions: BrowseResult;
  setPinned: { keep: string[] };
  listArchives: { archiveDir: string; archives: ArchiveListEntry[] };
  archiveContents: { name: string; sessions: ArchiveSessionEntry[] };
  restoreArchive: { restored: string[]; skipped: string[] };
  restoreFromServer: RestoreOutcome;
  history: { entries: HistoryEntry[] };
  compact: CompactOutcome;
  getSettings: SettingsResult;
  saveSettings: SettingsResult;
  testConnection: TestConnectionResult;
  debugKillWorker: { killed: boolean; threads: number };
  /** The mirror into the configured server (`storage` names one): its status and the dialog's line. */
  syncStatus: SyncStatusView & { line: string };
}
export type ResultOf<M extends Method> = ResultMap[M];

// ---- replies and events -----------------------------------------------------------------------

export const errorCodes = [
  'usage', 'not-found', 'not-sqlite', 'truncated', 'corrupt', 'foreign-schema', 'unsupported-schema', 'locked',
  'read-only', 'disk-full', 'too-big', 'bad-part', 'bad-attachment', 'config', 'archive', 'connection', 'conflict', 'internal',
  'bad-request', 'unavailable', 'busy', 'stale-plan',
] as const satisfies readonly (SkErrorCode | 'bad-request' | 'unavailable' | 'busy' | 'stale-plan')[];
export type ProtocolErrorCode = (typeof errorCodes)[number];

export const replyErrorSchema = z.object({
  code: z.enum(errorCodes),
  message: z.string(),
  fields: z.array(z.object({ field: z.string(), message: z.string() })).optional(),
  /** With `stale-plan`: the plan the same inputs give now, for the user to look at. */
  plan: z.custom<PlanResult>((v) => typeof v === 'object' && v !== null && typeof (v as { planId?: unknown }).planId === 'string').optional(),
});
export type ReplyError = z.infer<typeof replyErrorSchema>;

export const replySchema = z.discriminatedUnion('ok', [
  z.object({ type: z.literal('reply'), id: id.nullable(), ok: z.literal(true), result: z.unknown() }),
  z.object({ type: z.literal('reply'), id: id.nullable(), ok: z.literal(false), error: replyErrorSchema }),
]);
export type Reply = z.infer<typeof replySchema>;

/**
 * Where a clean-up is, from the work itself: `archive` and `verify` count sessions (`done` of
 * `sessions`) and the archive's bytes (`compact`: sessions of `of`, and `bytes` removed so far); `delete` counts trees (`deleted` of `of`) and the bytes the
 * plan said they free (`bytes` of `ofBytes`); `restore` counts sessions in (`done` of `sessions`) and
 * their bytes (`bytes` of `ofBytes`); `reclaim` has the file's size before and after.
 */
const progressSchema = z.object({
  phase: z.enum(['plan', 'archive', 'verify', 'delete', 'compact', 'restore', 'reclaim', 'done']),
  evict: z.number().optional(),
  path: z.string().optional(),
  sessions: z.number().optional(),
  done: z.number().optional(),
  bytes: z.number().optional(),
  deleted: z.number().optional(),
  of: z.number().optional(),
  ofBytes: z.number().optional(),
  bytesBefore: z.number().optional(),
  bytesAfter: z.number().optional(),
  mode: z.string().optional(),
});
export type ProgressView = z.infer<typeof progressSchema>;

export const eventBodySchema = z.discriminatedUnion('event', [
  /** Retention progress; `requestId` null for retention at startup. */
  z.object({ event: z.literal('progress'), requestId: id.nullable(), progress: progressSchema }),
  /** A clean-up ended (done, cancelled or failed): every open UI says so and refreshes its figures. */
  z.object({ event: z.literal('runEnded'), end: z.custom<RunEnd>((v) => typeof v === 'object' && v !== null && 'requestId' in v) }),
  z.object({ event: z.literal('warning'), thresholdMB: z.number(), message: z.string() }),
  z.object({ event: z.literal('log'), message: z.string() }),
  /** The utility process finished its startup work (size check, retention). */
  z.object({ event: z.literal('startup'), report: z.custom<StartupResult>((v) => typeof v === 'object' && v !== null) }),
  /** Sent by the shell, not the utility: the utility process died and is being restarted. */
  z.object({ event: z.literal('restarting'), reason: z.string(), attempt: z.number(), delayMs: z.number() }),
  z.object({ event: z.literal('restarted'), attempt: z.number() }),
]);
export type EventBody = z.infer<typeof eventBodySchema>;
export const eventSchema = z.intersection(z.object({ type: z.literal('event') }), eventBodySchema);
export type ProtocolEvent = z.infer<typeof eventSchema>;

/** Anything the utility process sends its parent. */
export const utilityMessageSchema = z.union([replySchema, eventSchema]);
export type UtilityMessage = z.infer<typeof utilityMessageSchema>;

export function errorReply(requestId: string | number | null, code: ProtocolErrorCode, message: string, fields?: FieldError[], plan?: PlanResult): Reply {
  return { type: 'reply', id: requestId, ok: false, error: { code, message, ...(fields ? { fields } : {}), ...(plan ? { plan } : {}) } };
}

/** The request's id when one can be read from a malformed message, so its sender is not left waiting. */
export function salvageId(message: unknown): string | number | null {
  if (message === null || typeof message !== 'object') return null;
  const parsed = id.safeParse((message as { id?: unknown }).id);
  return parsed.success ? parsed.data : null;
}

/** One line naming what was wrong with a request. */
export function describeRequestError(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'malformed request';
  const where = issue.path.filter((p) => typeof p !== 'symbol').join('.');
  return `malformed request${where ? ` at ${where}` : ''}: ${issue.message}`.slice(0, 300);
}

/**
 * What the renderer calls, whatever carries it (Electron preload or fetch in web mode): the same
 * shape in both. Rejections are `ApiError`s carrying the reply's error.
 */
export interface SessionKeeperApi {
  request<M extends Method>(method: M, params?: ParamsOf<M>): Promise<ResultOf<M>>;
  /** Subscribes to events; returns the unsubscribe function. */
  onEvent(listener: (event: ProtocolEvent) => void): () => void;
  /** 'electron' or 'web'. */
  readonly transport: 'electron' | 'web';
}

/** A reply's error, as a rejection: what `SessionKeeperApi.request` throws. */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  readonly code: ProtocolErrorCode;
  readonly fields: FieldError[];
  /** With `stale-plan`: the new plan. */
  readonly plan: PlanResult | undefined;
  constructor(error: ReplyError) {
    super(error.message);
    this.code = error.code;
    this.fields = error.fields ?? [];
    this.plan = error.plan;
  }
}

/** What the preload script puts on `window.sessionKeeperBridge` (plain data only crosses contextBridge). */
export interface SessionKeeperBridge {
  readonly transport: 'electron';
  /** Sends `{method, params}`; resolves to the reply envelope (never rejects for a failed request). */
  invoke(body: { method: string; params?: unknown }): Promise<Reply>;
  onEvent(listener: (event: ProtocolEvent) => void): () => void;
  /** The attachment scheme registered by the main process (e.g. `sk-attachment`). */
  readonly attachmentScheme: string;
}

/** The typed API over a preload bridge: what a renderer in Electron calls. */
export function apiFromBridge(bridge: SessionKeeperBridge): SessionKeeperApi {
  return {
    transport: 'electron',
    async request<M extends Method>(method: M, params?: ParamsOf<M>): Promise<ResultOf<M>> {
      const reply = await bridge.invoke(params === undefined ? { method } : { method, params });
      if (!reply.ok) throw new ApiError(reply.error);
      return reply.result as ResultOf<M>;
    },
    onEvent: (listener) => bridge.onEvent(listener),
  };
}

// ---- attachment streams -------------------------------------------------------------------------

/** Bytes per chunk of an attachment stream, and chunks a consumer may ask for ahead. */
export const STREAM_CHUNK_BYTES = 256 * 1024;
export const STREAM_WINDOW = 4;

/** What a shell asks to be streamed: an HTTP-like request for a cached attachment by its URL path. */
export const attachmentStreamRequestSchema = z
  .object({
    /** Below the attachment route, still percent-encoded: `ab/<sha256>`. */
    relPath: z.string().min(1).max(300),
    method: z.string().max(16).optional(),
    range: z.string().max(200).optional(),
    mime: z.string().max(200).nullable().optional(),
  })
  .strict();
export type AttachmentStreamRequest = z.infer<typeof attachmentStreamRequestSchema>;

/** Opens stream number `stream` (unique per shell); in Electron its port travels with this message. */
export const streamOpenSchema = z.object({ type: z.literal('stream-open'), stream: z.number().int().nonnegative(), params: attachmentStreamRequestSchema });
export type StreamOpen = z.infer<typeof streamOpenSchema>;

/** Consumer to utility: more chunks may be sent, or none at all any more. */
export const streamControlSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('pull'), chunks: z.number().int().min(1).max(64) }),
  z.object({ kind: z.literal('cancel') }),
]);
export type StreamControl = z.infer<typeof streamControlSchema>;

/** Utility to consumer: the answer's status and headers, its bytes, its end, or why it stopped. */
export const streamDataSchema = z.discriminatedUnion('kind', [
  /** `body`: whether chunks follow (false for HEAD, refusals and an empty range). */
  z.object({ kind: z.literal('head'), status: z.number().int().min(100).max(599), headers: z.record(z.string(), z.string()), body: z.boolean(), message: z.string().optional() }),
  z.object({ kind: z.literal('chunk'), bytes: z.instanceof(Uint8Array) }),
  z.object({ kind: z.literal('end') }),
  z.object({ kind: z.literal('error'), message: z.string() }),
]);
export type StreamData = z.infer<typeof streamDataSchema>;

/** A stream message multiplexed over a channel that carries several (Node's IPC), or its end. */
export const streamEnvelopeSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('stream'), stream: z.number().int().nonnegative(), body: z.unknown() }),
  /** One side closed its end: the other's `onClose` runs (a MessagePortMain's 'close'). */
  z.object({ type: z.literal('stream-close'), stream: z.number().int().nonnegative() }),
]);
export type StreamEnvelope = z.infer<typeof streamEnvelopeSchema>;

/** One stream's two-way pipe, whatever carries it (a MessagePortMain, or a StreamMux over IPC). */
export interface StreamPort {
  post(body: StreamControl | StreamData): void;
  onMessage(listener: (body: unknown) => void): void;
  /** The other side went away: it closed its end, or its process died. */
  onClose(listener: () => void): void;
  close(): void;
}
