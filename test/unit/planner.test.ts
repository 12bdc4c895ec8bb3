import { describe, expect, it } from 'vitest';
import { ACTIVE_WINDOW_MS, DAY_MS, planRetention, type RetentionPolicy, type SessionFacts } from '../../src/core/planner.js';
import { MB } from '../../src/core/thresholds.js';

const NOW = Date.UTC(2026, 5, 1);

/** A root session created `ageDays` ago, last touched `idleDays` ago (default: when created). */
function ses(id: string, ageDays: number, opts: Partial<SessionFacts> & { idleDays?: number } = {}): SessionFacts {
  const { idleDays = ageDays, ...rest } = opts;
  return {
    id,
    title: `title ${id}`,
    timeCreated: NOW - ageDays * DAY_MS,
    timeUpdated: NOW - idleDays * DAY_MS,
    timeArchived: null,
    bytes: MB,
    children: [],
    ...rest,
  };
}

const policy = (p: Partial<RetentionPolicy> = {}): RetentionPolicy => ({ orderBy: 'created', keep: [], ...p });
const plan = (sessions: SessionFacts[], p: Partial<RetentionPolicy>, storeBytes = sessions.length * MB) =>
  planRetention({ sessions, storeBytes, now: NOW, policy: policy(p) });
const ids = (r: ReturnType<typeof plan>) => r.evict.map((e) => e.id);

const store = [ses('a', 50), ses('b', 40), ses('c', 30), ses('d', 20), ses('e', 10)];

describe('planRetention', () => {
  it('evicts nothing without a limit, or from an empty store', () => {
    expect(plan(store, {})).toEqual({ evict: [], freesBytes: 0, remainingBytes: 5 * MB, remainingSessions: 5, unmetSize: false });
    expect(plan([], { maxSizeMB: 1, maxAgeDays: 1, maxSessions: 1 }, 0)).toEqual({
      evict: [],
      freesBytes: 0,
      remainingBytes: 0,
      remainingSessions: 0,
      unmetSize: false,
    });
  });

  it('maxAgeDays alone: strictly older than the cutoff', () => {
    const r = plan(store, { maxAgeDays: 30 });
    expect(ids(r)).toEqual(['a', 'b']);
    expect(r.evict.every((e) => e.reasons.join() === 'age')).toBe(true);
    expect(r.freesBytes).toBe(2 * MB);
    expect(r.remainingSessions).toBe(3);
  });

  it('maxSessions alone: keeps the newest N roots', () => {
    const r = plan(store, { maxSessions: 2 });
    expect(ids(r)).toEqual(['a', 'b', 'c']);
    expect(r.evict.map((e) => e.reasons)).toEqual([['count'], ['count'], ['count']]);
    expect(r.remainingSessions).toBe(2);
  });

  it('maxSizeMB alone: oldest first until the store fits', () => {
    const sessions = [ses('a', 50, { bytes: 3 * MB }), ses('b', 40, { bytes: 2 * MB }), ses('c', 30, { bytes: 4 * MB })];
    const r = plan(sessions, { maxSizeMB: 5 }, 10 * MB);
    expect(ids(r)).toEqual(['a', 'b']);
    expect(r.freesBytes).toBe(5 * MB);
    expect(r.remainingBytes).toBe(5 * MB);
    expect(r.unmetSize).toBe(false);
    expect(r.evict[0]?.reasons).toEqual(['size']);
    expect(plan(sessions, { maxSizeMB: 10 }, 10 * MB).evict).toEqual([]);
  });

  it('limits together are a union, without evicting more than needed', () => {
    const r = plan(store, { maxAgeDays: 45, maxSessions: 3, maxSizeMB: 1.5 });
    expect(r.evict.map((e) => [e.id, e.reasons])).toEqual([
      ['a', ['age']],
      ['b', ['count', 'size']],
      ['c', ['size']],
      ['d', ['size']],
    ]);
    expect(r.remainingSessions).toBe(1);
    expect(r.remainingBytes).toBe(MB);
    expect(plan(store, { maxAgeDays: 35, maxSessions: 4 }).evict.map((e) => e.id)).toEqual(['a', 'b']);
  });

  it('orderBy updated ranks and ages by last activity', () => {
    const sessions = [ses('old-busy', 100, { idleDays: 2 }), ses('new-idle', 20)];
    expect(ids(plan(sessions, { maxSessions: 1 }))).toEqual(['old-busy']);
    expect(ids(plan(sessions, { maxSessions: 1, orderBy: 'updated' }))).toEqual(['new-idle']);
    expect(ids(plan(sessions, { maxAgeDays: 10, orderBy: 'updated' }))).toEqual(['new-idle']);
    expect(ids(plan(sessions, { maxAgeDays: 10 }))).toEqual(['old-busy', 'new-idle']);
  });

  it('a session goes with its children, and their bytes count once', () => {
    const sessions = [ses('a', 50, { children: ['a1', 'a2'], bytes: 3 * MB }), ses('b', 40)];
    const r = plan(sessions, { maxSizeMB: 2 }, 4 * MB);
    expect(r.evict).toEqual([
      { id: 'a', title: 'title a', timeCreated: NOW - 50 * DAY_MS, timeUpdated: NOW - 50 * DAY_MS, bytes: 3 * MB, children: ['a1', 'a2'], timeArchived: null, reasons: ['size'] },
    ]);
    // Children are not roots: two roots fit under maxSessions 2 however many children they have.
    expect(plan(sessions, { maxSessions: 2 }).evict).toEqual([]);
  });

  it('never evicts pinned sessions, or a root whose child is pinned', () => {
    const sessions = [ses('a', 50), ses('b', 40, { children: ['b1'] }), ses('c', 30)];
    const r = plan(sessions, { maxAgeDays: 1, keep: ['a', 'b1'] });
    expect(ids(r)).toEqual(['c']);
    expect(ids(plan(sessions, { maxSessions: 1, keep: ['a'] }))).toEqual(['b', 'c']);
  });

  it('never evicts sessions active in the last hour', () => {
    const busy = ses('busy', 90, { timeUpdated: NOW - ACTIVE_WINDOW_MS + 1 });
    const idle = ses('idle', 80, { timeUpdated: NOW - ACTIVE_WINDOW_MS });
    expect(ids(plan([busy, idle], { maxAgeDays: 1, maxSessions: 1, maxSizeMB: 0.001 }))).toEqual(['idle']);
  });

  it('evicts sessions archived in OpenCode first', () => {
    const sessions = [ses('old', 50), ses('archived-new', 5, { timeArchived: NOW - DAY_MS }), ses('mid', 30)];
    expect(ids(plan(sessions, { maxSessions: 2 }))).toEqual(['archived-new']);
    expect(ids(plan(sessions, { maxSizeMB: 1 }))).toEqual(['archived-new', 'old']);
    // Age still judges by age: an archived recent session is not "old".
    expect(ids(plan(sessions, { maxAgeDays: 40 }))).toEqual(['old']);
  });

  it('breaks ties by id, whatever the input order', () => {
    const tied = [ses('ses_c', 10), ses('ses_a', 10), ses('ses_b', 10)];
    expect(ids(plan(tied, { maxSessions: 1 }))).toEqual(['ses_a', 'ses_b']);
    expect(ids(plan([...tied].reverse(), { maxSessions: 1 }))).toEqual(['ses_a', 'ses_b']);
  });

  it('reports an unmet size when pins and active sessions keep the store too big', () => {
    const sessions = [ses('pinned', 50, { bytes: 6 * MB }), ses('other', 40, { bytes: 2 * MB }), ses('busy', 30, { idleDays: 0 })];
    const r = plan(sessions, { maxSizeMB: 4, keep: ['pinned'] }, 9 * MB);
    expect(ids(r)).toEqual(['other']);
    expect(r.unmetSize).toBe(true);
    expect(r.remainingBytes).toBe(7 * MB);
    expect(plan(sessions, { maxSessions: 1, keep: ['pinned'] }).unmetSize).toBe(false);
  });

  it('counts pinned and active roots toward maxSessions', () => {
    const sessions = [ses('a', 50), ses('b', 40), ses('c', 30, { idleDays: 0 }), ses('d', 20)];
    expect(ids(plan(sessions, { maxSessions: 2, keep: ['d'] }))).toEqual(['a', 'b']);
  });

  // Speed is measured and logged, not asserted (DESIGN.md section 6); the bound only catches a quadratic slip.
  it('plans 10,000 sessions (time logged)', () => {
    const sessions: SessionFacts[] = [];
    for (let i = 0; i < 10_000; i++) {
      sessions.push(
        ses(`ses_${(i * 7919) % 10_000}`, (i * 104729) % 400, {
          timeArchived: i % 10 === 0 ? NOW : null,
          children: i % 5 === 0 ? [`child_${i}`] : [],
          bytes: ((i * 31) % 97) * 1024 + 1,
        }),
      );
    }
    const storeBytes = sessions.reduce((sum, s) => sum + s.bytes, 0);
    const p = policy({ maxAgeDays: 300, maxSessions: 5000, maxSizeMB: 100, keep: sessions.slice(0, 500).map((s) => s.id) });
    planRetention({ sessions, storeBytes, now: NOW, policy: p }); // warm-up
    const runs: number[] = [];
    let result = planRetention({ sessions, storeBytes, now: NOW, policy: p });
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      result = planRetention({ sessions, storeBytes, now: NOW, policy: p });
      runs.push(performance.now() - t);
    }
    const best = Math.min(...runs);
    console.log(`planner: 10,000 sessions in ${best.toFixed(2)} ms (best of 5; ${runs.map((r) => r.toFixed(2)).join(', ')})`);
    expect(result.remainingSessions).toBeLessThanOrEqual(5000);
    expect(best).toBeLessThan(1000);
  });
});
