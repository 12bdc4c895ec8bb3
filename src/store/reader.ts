/**
 * What every backend can be asked: pages and sizes for people (PageReader, all a UI needs), and
 * the facts retention plans from and the session streams transfers move (SessionReader). Reads
 * are paged and sized without loading payloads; attachments leave as files, never as strings.
 */
import type { FileHandle } from 'node:fs/promises';
import type { AttachmentResult, ListResult, PageOptions, ShowResult, StatsOptions, StatsResult } from '../core/api.js';
import type { CompactionPlan, PlanOptions } from '../core/compaction.js';
import type { SessionSpace } from '../core/browse.js';
import type { SessionFacts } from '../core/planner.js';
import type { StorageKind } from '../core/storage.js';
import type { SelectedSession, SessionSelector } from '../core/selectors.js';
import type { TrimmedRows, TrimMode, TrimPlan } from '../core/trim.js';
import type { SessionItems } from './session-items.js';

/** An attachment decoded into the cache, with the handle it was written through (the caller closes it). */
export interface OpenedAttachment {
  result: AttachmentResult;
  /** Open for reading: the bytes just decoded, whatever later happens to the cache file's name. */
  handle: FileHandle;
}

export interface PageReader {
  readonly kind: StorageKind;
  /** The file path, or the connection string with its password masked. */
  readonly location: string;
  /**
   * True when `dataVersion` changes with every commit of any writer, so a cached page can be
   * trusted until it does (SQLite's data_version); false where no such mark is cheap (servers).
   */
  readonly pagesCacheable: boolean;
  /** A number that changes whenever another connection commits: cached pages are stale then. */
  dataVersion(): Promise<number>;
  stats(options?: StatsOptions): Promise<StatsResult>;
  listSessions(options?: PageOptions): Promise<ListResult>;
  showSession(sessionId: string, options?: PageOptions): Promise<ShowResult>;
  /** Decodes one attachment into the cache directory, or straight into `out` when given. */
  extractAttachment(ref: string, cacheDir: string, out?: string): Promise<AttachmentResult>;
  /** Decodes one attachment into the cache and hands over the open handle: consumers read that, never the path. */
  openAttachment(ref: string, cacheDir: string): Promise<OpenedAttachment>;
  close(): Promise<void>;
}

export interface SessionCounts {
  messages: number;
  parts: number;
}

export interface StoreSize {
  /** What the store would occupy after a full reclaim (SQLite: pages in use). */
  liveBytes: number;
  rootSessions: number;
  /** A number that grows as events are appended (the event table's highest rowid; 0 without one). */
  eventLogMark: number;
}

export interface RetentionFacts {
  /** One entry per root session, its children's rows counted in. */
  facts: SessionFacts[];
  /** The `storeBytes` the planner measures `maxSizeMB` against. */
  storeBytes: number;
}

export interface SessionProjects {
  /** Root session id -> project id. */
  rootProject: Map<string, string>;
  projects: { id: string; name: string | null; worktree: string }[];
}

export interface SessionReader extends PageReader {
  /** Those of `ids` that are not sessions here, in the given order. */
  missingSessions(ids: readonly string[]): Promise<string[]>;
  /** Every session id of the trees rooted at `roots`: roots first, then their children. */
  sessionTrees(roots: readonly string[]): Promise<string[]>;
  /** `time_updated` of each session that exists. */
  sessionVersions(ids: readonly string[]): Promise<Map<string, number>>;
  sessionCounts(ids: readonly string[]): Promise<Map<string, SessionCounts>>;
  /** Bytes of message and part data of these sessions (all when omitted): what a copy will move. */
  contentBytes(ids?: readonly string[]): Promise<number>;
  /**
   * `contentBytes` begun on a thread of its own (the SQLite file: it reads every page of both
   * tables), for a caller with other work before it needs the figure; absent where none would help.
   */
  contentBytesAside?(ids?: readonly string[]): Promise<number>;
  /** Every session id, in id order (for whole-store copies). */
  allSessionIds(): Promise<string[]>;
  /** Root sessions created before `cutoff` (epoch ms), oldest first. */
  rootsCreatedBefore(cutoff: number): Promise<string[]>;
  /** The cheap figures that tell, most of the time, that no retention limit is exceeded. */
  storeSize(): Promise<StoreSize>;
  /** The oldest root session's times (null when there is none). */
  oldestRoot(): Promise<{ created: number | null; updated: number | null }>;
  /** Per-root facts for the planner; with `withBytes`, what evicting each would free. */
  retentionFacts(withBytes: boolean): Promise<RetentionFacts>;
  /** Which project each root session belongs to, and the projects' names (the session browser). Not every backend has it. */
  sessionProjects?(): Promise<SessionProjects>;
  /** Per session, what its bytes are made of (attachments, event log, text): the browser's sorts by kind. Not every backend has it. */
  sessionSpace?(): Promise<ReadonlyMap<string, SessionSpace>>;
  /** The sessions' rows, one session after another, each read consistently. */
  exportSessions(ids: readonly string[], options?: ExportOptions): SessionItems;
  /** What compacting the event log would free, per event type (payloads never read into JS). */
  compactionPlan(options?: PlanOptions): Promise<CompactionPlan>;
  /** The sessions a selector chooses (`--subagents`, `--project`, `--keep-latest`, `--larger-than`, `--older-than`), most recently active first. */
  selectSessions(selector: SessionSelector, now: number): Promise<SelectedSession[]>;
  /** A trim's archive: per session its header naming `trimmed`, and only those rows (with their parts' messages). */
  exportTrimmedRows(trimmed: ReadonlyMap<string, TrimmedRows>): SessionItems;
  /** The rows trimming these sessions would change (sizes and JSON paths only). */
  trimPlan(request: TrimRequest): Promise<TrimPlan>;
}

export interface TrimRequest {
  sessions: readonly string[];
  modes: readonly TrimMode[];
  /** Attachments: only rows created before this (epoch ms). */
  attachmentsBefore?: number;
}

/** A session's change mark: `time_updated`, and a short string that changes whenever any row it owns does. */
export interface SessionMark {
  updated: number;
  mark: string;
}

/** A store that can tell cheaply which sessions changed (OpenCode's SQLite file): what the mirror polls. */
export interface ChangeMarks {
  /** Marks of every session (no `ids`), or of those of `ids` that exist; read inside an export, they describe what it exported. */
  sessionMarks(ids?: readonly string[]): Promise<Map<string, SessionMark>>;
}

export interface ExportOptions {
  /**
   * Whether items carry SQLite's json_valid of each value (default true): an archive needs it to embed a
   * value raw; a copy to a server, which judges JSON itself, asks for none and spares the parse.
   */
  jsonValidity?: boolean;
  /**
   * Rows of the session's other tables may come as `encodedRows`, each row already in the archive's
   * encoding (core/table-row.ts), where the store can build it faster than a consumer: only an
   * archive writer asks, every other consumer takes `rows`.
   */
  encodedRows?: boolean;
  /**
   * A page's parts may come as views into one Buffer (sqlite/rows.ts partsOfMessages): only a
   * consumer that writes each part out as it comes asks, since a view kept keeps the whole page.
   */
  packedParts?: boolean;
}

/** What a copy into a server asks of an export: the server judges JSON itself. */
export const SERVER_EXPORT: ExportOptions = { jsonValidity: false };

/** What an archive writer asks of an export: validity for raw JSON, rows already encoded, parts packed. */
export const ARCHIVE_EXPORT: ExportOptions = { jsonValidity: true, encodedRows: true, packedParts: true };
