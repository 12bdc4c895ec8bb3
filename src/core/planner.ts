/**
 * The retention planner: root-session facts + policy -> which sessions to evict, in what order.
 * Pure and O(n log n) (one sort, one walk), so startup retention on 10,000 sessions costs a few ms.
 */
import type { OrderBy } from './config.js';
import { MB } from './thresholds.js';

export const DAY_MS = 24 * 60 * 60 * 1000;
/** A session touched this recently may be open in OpenCode right now: never evicted. */
export const ACTIVE_WINDOW_MS = 60 * 60 * 1000;

/** One root session and everything that goes with it. */
export interface SessionFacts {
  id: string;
  title: string;
  timeCreated: number;
  /** The family's latest activity: pass the max `time_updated` over the root and its children. */
  timeUpdated: number;
  /** OpenCode's own "archived" mark: such sessions are evicted before any other. */
  timeArchived: number | null;
  /** Bytes freed by evicting this root: its rows, its children's rows, and their events. */
  bytes: number;
  children: string[];
}

/** One session row as facts are gathered from it. */
export interface SessionRowFacts {
  id: string;
  parentId: string | null;
  title: string;
  timeCreated: number;
  timeUpdated: number;
  timeArchived: number | null;
}

export interface RetentionPolicy {
  maxSizeMB?: number | undefined;
  maxAgeDays?: number | undefined;
  maxSessions?: number | undefined;
  orderBy: OrderBy;
  /** Pinned ids; a pinned child pins its root, since a family is evicted whole. */
  keep: readonly string[];
}

export interface PlanInput {
  sessions: readonly SessionFacts[];
  /**
   * The store's size now, in bytes. `maxSizeMB` is met when `storeBytes - sum(evicted.bytes)` is at
   * most `maxSizeMB * MB`: each session's `bytes` must therefore be what evicting it frees once
   * space is reclaimed, and `storeBytes` the size reclaim would leave with nothing evicted
   * (the file minus free pages and WAL), or the plan under- or over-evicts.
   */
  storeBytes: number;
  /** Epoch ms. */
  now: number;
  policy: RetentionPolicy;
}

export type EvictReason = 'age' | 'count' | 'size';

export interface PlannedEviction {
  id: string;
  title: string;
  timeCreated: number;
  timeUpdated: number;
  bytes: number;
  children: string[];
  /** Set when OpenCode itself archived the session: such sessions go first. */
  timeArchived: number | null;
  /** Why: 'age' alone when the age limit chose it (decided first), else 'count' and/or 'size'. */
  reasons: EvictReason[];
}

export interface RetentionPlan {
  /** In eviction order: OpenCode-archived sessions first, then oldest first, ties by id. */
  evict: PlannedEviction[];
  freesBytes: number;
  remainingBytes: number;
  remainingSessions: number;
  /** True when pinned or active sessions keep the store above `maxSizeMB` even after every eligible eviction. */
  unmetSize: boolean;
}

/**
 * The union of three limits: every eligible session older than `maxAgeDays`, then, walking the
 * eviction order, as many more as it takes to bring the root count to `maxSessions` and the
 * store to `maxSizeMB`. Pinned and recently active sessions are never eligible.
 */
export function planRetention(input: PlanInput): RetentionPlan {
  const { sessions, storeBytes, now, policy } = input;
  const maxSessions = policy.maxSessions ?? Infinity;
  const maxBytes = policy.maxSizeMB === undefined ? Infinity : policy.maxSizeMB * MB;
  const ageCutoff = policy.maxAgeDays === undefined ? -Infinity : now - policy.maxAgeDays * DAY_MS;
  const plan = (evict: PlannedEviction[], freed: number): RetentionPlan => ({
    evict,
    freesBytes: freed,
    remainingBytes: storeBytes - freed,
    remainingSessions: sessions.length - evict.length,
    unmetSize: storeBytes - freed > maxBytes,
  });
  // Startup with no policy, or a store already within every limit, must cost next to nothing.
  if (policy.maxAgeDays === undefined && sessions.length <= maxSessions && storeBytes <= maxBytes) return plan([], 0);

  const pinned = new Set(policy.keep);
  const activeSince = now - ACTIVE_WINDOW_MS;
  const byUpdated = policy.orderBy === 'updated';

  // Eligible sessions, with their sort keys in typed arrays: sorting indices beats sorting objects.
  const eligible: SessionFacts[] = [];
  const time = new Float64Array(sessions.length);
  const archived = new Uint8Array(sessions.length);
  for (const facts of sessions) {
    if (facts.timeUpdated > activeSince || pinned.has(facts.id)) continue;
    if (pinned.size > 0 && facts.children.some((child) => pinned.has(child))) continue;
    time[eligible.length] = byUpdated ? facts.timeUpdated : facts.timeCreated;
    archived[eligible.length] = facts.timeArchived === null ? 0 : 1;
    eligible.push(facts);
  }

  // Archived first, then the orderBy time, then id: a total order, so the same input always gives the same plan.
  const compare = (a: number, b: number): number => {
    const archivedFirst = (archived[b] as number) - (archived[a] as number);
    if (archivedFirst !== 0) return archivedFirst;
    const byTime = (time[a] as number) - (time[b] as number);
    if (byTime !== 0) return byTime;
    const idA = (eligible[a] as SessionFacts).id;
    const idB = (eligible[b] as SessionFacts).id;
    return idA < idB ? -1 : idA > idB ? 1 : 0;
  };

  const reasons: (EvictReason[] | undefined)[] = new Array<EvictReason[] | undefined>(eligible.length);
  let remainingSessions = sessions.length;
  let remainingBytes = storeBytes;
  for (let i = 0; i < eligible.length; i++) {
    if ((time[i] as number) >= ageCutoff) continue;
    reasons[i] = ['age'];
    remainingSessions -= 1;
    remainingBytes -= (eligible[i] as SessionFacts).bytes;
  }

  let order: Uint32Array | null = null;
  if (remainingSessions > maxSessions || remainingBytes > maxBytes) {
    order = new Uint32Array(eligible.length);
    for (let i = 0; i < order.length; i++) order[i] = i;
    order.sort(compare);
    for (const i of order) {
      if (remainingSessions <= maxSessions && remainingBytes <= maxBytes) break;
      if (reasons[i]) continue;
      const why: EvictReason[] = [];
      if (remainingSessions > maxSessions) why.push('count');
      if (remainingBytes > maxBytes) why.push('size');
      reasons[i] = why;
      remainingSessions -= 1;
      remainingBytes -= (eligible[i] as SessionFacts).bytes;
    }
  }

  // The walk's order is already the eviction order; only an age-only plan needs sorting here.
  const chosen: number[] = [];
  if (order) {
    for (const i of order) if (reasons[i]) chosen.push(i);
  } else {
    for (let i = 0; i < eligible.length; i++) if (reasons[i]) chosen.push(i);
    chosen.sort(compare);
  }
  const evict = chosen.map((i): PlannedEviction => {
    const { id, title, timeCreated, timeUpdated, timeArchived, bytes, children } = eligible[i] as SessionFacts;
    return { id, title, timeCreated, timeUpdated, timeArchived, bytes, children, reasons: reasons[i] as EvictReason[] };
  });
  return plan(evict, storeBytes - remainingBytes);
}

/** Groups session rows into root families: children's rows count towards their root, times are the latest. */
export function familyFacts(rows: readonly SessionRowFacts[], bytesBySession: ReadonlyMap<string, number>, overhead: number): SessionFacts[] {
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
  return [...roots.values()].map(({ payload, ...f }) => ({ ...f, bytes: Math.round(payload * overhead) }));
}
