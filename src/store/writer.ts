/**
 * What changes a store: deleting session trees, putting sessions back, and giving freed space
 * back to the file system. Every backend answers with the same shapes.
 */
import type { CompactionResult, CompactOptions } from '../core/compaction.js';
import type { StorageKind } from '../core/storage.js';
import type { TrimPlan } from '../core/trim.js';
import type { SessionItems, TableCounts } from './session-items.js';

/** A session as it left (was archived or copied): what a delete must still find to go ahead. */
export interface ExpectedSession {
  updated: number;
  /** Rows per table as exported; a table missing here is not checked. */
  counts?: TableCounts;
  /** The session's change mark (ChangeMarks) when it was mirrored: any change since, even in place, keeps it. */
  mark?: string;
}

export interface DeleteResult {
  /** Roots whose trees were deleted. */
  deleted: string[];
  /** Every session id deleted (roots and children). */
  sessionIds: string[];
  /** Part ids deleted, for the attachment cache. */
  partIds: string[];
  /** Roots left alone because they changed after the version the caller expected (archived). */
  changed: string[];
  /** Roots not reached because `signal` was aborted: the run stopped between two trees. */
  notReached: string[];
}

export interface DeleteOptions {
  expected?: ReadonlyMap<string, ExpectedSession>;
  /** After each root: whether its tree was deleted (false: it changed and was kept). */
  onTree?: (root: string, deleted: boolean) => void;
  /** Aborted: stop between two trees; every tree is deleted whole or not at all. */
  signal?: AbortSignal;
}

export interface SessionState {
  updated: number;
  whole: boolean;
  messages: number;
  parts: number;
}

export interface ReclaimResult {
  /** `deferred`: a full VACUUM would rewrite a large file for a small gain; the space stays inside, reused by SQLite. */
  mode: 'incremental' | 'vacuum' | 'none' | 'deferred';
  bytesBefore: number;
  bytesAfter: number;
}

export interface ReclaimOptions {
  onlyWhenWorthIt?: boolean;
  /** Another process is writing the file: incremental steps and a passive checkpoint only (`deferred` otherwise). */
  besideWriter?: boolean;
}

export interface ImportOptions {
  /** `skip`: a session already present is left as it is (restore); `replace`: its old copy goes first (migrate). */
  existing: 'skip' | 'replace';
  /** Ids of the sessions the target already has rows for, when the caller looked (spares a lookup per session). */
  present?: ReadonlySet<string>;
  /** Called as rows go in: bytes of data and rows since the last call. */
  onRows?: (bytes: number, rows: number) => void;
  /** Called when a session is in, whole (and, on a server, verified). */
  onSession?: (sessionId: string) => void | Promise<void>;
}

export interface ImportedSession {
  id: string;
  messages: number;
  parts: number;
}

export interface ImportResult {
  imported: ImportedSession[];
  skipped: string[];
  /** Sessions present whose trimmed rows (a trim's archive) were put back, with how many rows. */
  putBack?: { id: string; rows: number }[];
  /** Sessions of a trim's archive that are not here: it holds only their trimmed rows (restore their own archive first). */
  absent?: string[];
  /** Bytes of message and part data written. */
  bytes: number;
}

export interface AppliedTrim {
  /** Rows changed or removed, per table. */
  rows: Record<string, number>;
  /** Rows left alone: they changed after they were planned (and archived). */
  changed: number;
  /** Part ids changed or removed. */
  partIds: string[];
}

export interface SessionWriter {
  readonly kind: StorageKind;
  readonly location: string;
  /** Which of `ids` this store has, with their `time_updated` and whether the copy is whole (on a server: finished and verified). */
  sessionStates(ids: readonly string[]): Promise<Map<string, SessionState>>;
  /**
   * Deletes each root with its child sessions and everything that belongs to them. With
   * `expected` (each session as it was archived: its `time_updated` and the rows it owned per
   * table), a tree that differs now in any way is left alone, so nothing unarchived is lost.
   */
  deleteTrees(roots: readonly string[], options?: DeleteOptions): Promise<DeleteResult>;
  /** Puts sessions from a stream in, each whole or not at all. */
  importSessions(items: SessionItems, options: ImportOptions): Promise<ImportResult>;
  /** Refuses (SkError 'corrupt') when the store is damaged: called before anything destructive. */
  assertIntact(): Promise<void>;
  /** Makes every earlier write durable before anything elsewhere is deleted on its strength. */
  durable(): Promise<void>;
  /**
   * Gives freed space back to the file system (a server manages its own: `none`). With
   * `onlyWhenWorthIt`, a full rewrite of a large file for a small share of free pages is skipped;
   * with `besideWriter` (OpenCode is using the file) only what is safe beside it runs: no VACUUM.
   */
  reclaim(options?: ReclaimOptions): Promise<ReclaimResult>;
  /** Drops superseded event snapshots of the sessions kept (replay-safe: see event-compaction.ts). */
  compactEvents(options?: CompactOptions): Promise<CompactionResult>;
  /**
   * Applies a trim plan (after its sessions were archived): each row only while it is still what
   * was planned; attachments become `placeholder`.
   */
  applyTrim(plan: TrimPlan, placeholder: string): Promise<AppliedTrim>;
  /** SQLite: converts the file to `auto_vacuum=INCREMENTAL` once. */
  convertToIncremental(): Promise<ReclaimResult>;
  close(): Promise<void>;
}
