/**
 * Compaction of OpenCode's event log, as figures and options: what a plan says and a run did.
 * The rule itself, and why it is replay-safe, is in src/store/sqlite/event-compaction.ts.
 */
export type SnapshotKind = 'message' | 'part' | 'session';

/** The snapshot event types this module understands, with the projection each one feeds. */
export const SNAPSHOT_EVENT_TYPES: Readonly<Record<string, SnapshotKind>> = {
  'message.updated.1': 'message',
  'message.part.updated.1': 'part',
  'session.updated.1': 'session',
};


export interface ByteCount {
  count: number;
  bytes: number;
}

/** Why superseded snapshots stay. */
export type KeepReason =
  /** the newest snapshot differs from the entity's row */
  | 'differs'
  /** the entity's row is gone */
  | 'missing'
  /** the oldest snapshot of a message or part: it inserts the row (and sets time_created) */
  | 'first'
  /** a step-finish part: its projector moves the session's cost and tokens */
  | 'usage'
  /** a session update that sets a column the newest one does not */
  | 'fields'
  /** two snapshots share the newest seq (no unique index in older files) */
  | 'ambiguous'
  /** the aggregate holds a snapshot event whose JSON or ids we cannot read */
  | 'malformed'
  /** the aggregate is shared with another OpenCode (owner or workspace) */
  | 'synced'
  /** OpenCode wrote the entity while we were compacting: left for the next run */
  | 'changed'
  /** its newest snapshot or row is over `maxCompareBytes`: not compared, left alone */
  | 'large';

export const KEEP_REASONS: readonly KeepReason[] = ['differs', 'missing', 'first', 'usage', 'fields', 'ambiguous', 'malformed', 'synced', 'changed', 'large'];

export interface EventTypeFigures extends ByteCount {
  type: string;
  /** older snapshots of an entity with a newer one (snapshot types only) */
  superseded: ByteCount;
  /** superseded and safe to drop now */
  compactable: ByteCount;
}

export interface AggregateFigures extends ByteCount {
  aggregates: number;
}

export interface CompactionPlan {
  /** every event in the file */
  events: ByteCount;
  /** per event type, largest first */
  byType: EventTypeFigures[];
  superseded: ByteCount;
  compactable: ByteCount;
  /** superseded snapshots that stay, by reason */
  kept: Record<KeepReason, ByteCount>;
  /** events of `ses_` aggregates whose session row is gone */
  orphans: AggregateFigures;
  /** events of other aggregates without a session row: never touched */
  foreign: AggregateFigures;
  /** what `compactEvents` with the same options would delete */
  freesBytes: number;
  aggregates: number;
  /** whether the file has an index leading with event.aggregate_id (OpenCode 1.18 does) */
  indexed: boolean;
}

export interface PlanOptions {
  /** count orphans' events in `freesBytes` (they are deleted only with this option) */
  orphans?: boolean;
  /**
   * Entities whose newest snapshot or row is larger are not compared and keep their snapshots.
   * Comparing costs SQLite about 8x the value in native memory (a 400 MB row: ~3.8 GB RSS, with
   * a 5 MB V8 heap); a process that must stay small sets this. Default: no limit.
   */
  maxCompareBytes?: number;
}

export interface CompactionProgress {
  phase: 'snapshots' | 'orphans';
  aggregatesDone: number;
  aggregatesTotal: number;
  eventsDeleted: number;
  bytesDeleted: number;
}

export interface CompactOptions extends PlanOptions {
  onProgress?: (progress: CompactionProgress) => void;
  /** checked between transactions: compaction stops cleanly, everything committed stays valid */
  signal?: AbortSignal;
}

export interface CompactionResult {
  deleted: ByteCount;
  /** snapshots deleted per type */
  byType: Array<ByteCount & { type: string }>;
  orphansDeleted: AggregateFigures;
  kept: Record<KeepReason, ByteCount>;
  aggregatesDone: number;
  aggregatesTotal: number;
  transactions: number;
  /** the longest write transaction, to show the lock was held briefly */
  longestTransactionMs: number;
  aborted: boolean;
  indexed: boolean;
}


/** A plan with nothing in it (a store without an event log). */
export function emptyCompactionPlan(): CompactionPlan {
  const none = (): ByteCount => ({ count: 0, bytes: 0 });
  return {
    events: none(),
    byType: [],
    superseded: none(),
    compactable: none(),
    kept: Object.fromEntries(KEEP_REASONS.map((r) => [r, none()])) as Record<KeepReason, ByteCount>,
    orphans: { ...none(), aggregates: 0 },
    foreign: { ...none(), aggregates: 0 },
    freesBytes: 0,
    aggregates: 0,
    indexed: false,
  };
}
