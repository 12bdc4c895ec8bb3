/**
 * Event log compaction on generated event-heavy databases, in OpenCode 1.18's layout (indexed)
 * and an older one (no index on event.aggregate_id): replaying the compacted log gives the rows
 * the full log gives; the snapshots that must stay stay; nothing else in the log changes.
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { CompactionPlan, CompactionProgress } from '../../src/core/compaction.js';
import { compactEvents, compactionPlan } from '../../src/store/sqlite/event-compaction.js';
import { openConnection as openDatabase, type SqliteConnection as OpenDatabase } from '../../src/store/sqlite/connection.js';
import { SqliteWriter } from '../../src/store/sqlite/sqlite-writer.js';
import { cachedEventLog, copyDatabase, type EventLogLayout, type EventLogManifest } from '../fixtures/event-log.js';
import { tempDir } from '../helpers/env.js';
import { aggregateEvents, entityEventIds, eventSequence, otherEventsDigest, snapshotGroups, supersededBytes } from '../helpers/event-log-facts.js';
import { diffProjections, projectionTables, replayDatabase, type Projection } from '../helpers/event-projector.js';

const MB = 1024 * 1024;
const dir = tempDir('sk-compaction-');
const FIXTURE = { targetBytes: 16 * MB, seed: 7, snapshots: [5, 60] as const, maxAttachmentBytes: 256 * 1024 };

function openWritable(path: string): OpenDatabase {
  return openDatabase(path, { readonly: false });
}

describe.each(['1.18', 'legacy'] as const)('compaction of a generated log (%s layout)', (layout: EventLogLayout) => {
  let manifest: EventLogManifest;
  let fullReplay: Projection;
  let before: {
    groups: ReturnType<typeof snapshotGroups>;
    other: ReturnType<typeof otherEventsDigest>;
    sequence: unknown[];
    superseded: { count: number; bytes: number };
  };
  let plan: CompactionPlan;
  let compacted: string;
  let db: Database.Database;
  let result: ReturnType<typeof compactEvents>;
  const progress: CompactionProgress[] = [];

  beforeAll(() => {
    manifest = cachedEventLog({ ...FIXTURE, layout });
    compacted = join(dir, `${layout}.db`);
    copyDatabase(manifest.path, compacted);
    const source = new Database(manifest.path, { readonly: true });
    fullReplay = replayDatabase(source);
    before = { groups: snapshotGroups(source), other: otherEventsDigest(source), sequence: eventSequence(source), superseded: supersededBytes(source) };
    source.close();
    const open = openWritable(compacted);
    plan = compactionPlan(open);
    result = compactEvents(open, { onProgress: (p) => progress.push(p) });
    open.db.close();
    db = new Database(compacted);
  });

  it('uses the index OpenCode 1.18 has, or says it has none', () => {
    expect(plan.indexed).toBe(layout === '1.18');
  });

  it('the full log replays to the projection tables, except the rows changed on purpose', () => {
    const source = new Database(manifest.path, { readonly: true });
    const differences = diffProjections(fullReplay, projectionTables(source), { canonical: true });
    source.close();
    const perturbed = new Set(manifest.perturbed.map((p) => `${p.kind}:${p.id}`));
    expect(differences.filter((d) => !perturbed.has(`${d.kind}:${d.id}`))).toEqual([]);
    expect(new Set(differences.map((d) => `${d.kind}:${d.id}`))).toEqual(perturbed);
  });

  it('deletes most superseded bytes', () => {
    expect(result.deleted.count).toBeGreaterThan(0);
    expect(result.deleted.bytes).toBeGreaterThan(before.superseded.bytes * 0.6);
    expect(result.aborted).toBe(false);
  });

  it('replaying the compacted log gives exactly the rows the full log gives', () => {
    expect(diffProjections(fullReplay, replayDatabase(db))).toEqual([]);
  });

  it('keeps the newest snapshot of every entity, and its first one', () => {
    const after = snapshotGroups(db);
    expect([...after.keys()].sort()).toEqual([...before.groups.keys()].sort());
    for (const [key, group] of before.groups) {
      const now = after.get(key);
      expect(now?.newestId, key).toBe(group.newestId);
      if (group.type !== 'session.updated.1') expect(now?.firstSeq, key).toBe(group.firstSeq);
    }
  });

  it('leaves every snapshot of entities whose newest snapshot differs from the row, or whose row is gone', () => {
    const source = new Database(manifest.path, { readonly: true });
    expect(new Set(manifest.keptEntities.map((k) => k.reason))).toEqual(new Set(['differs', 'missing', 'usage']));
    for (const kept of manifest.keptEntities) {
      const ids = entityEventIds(source, kept.aggregate, kept.kind, kept.entity);
      expect(ids.length, `${kept.reason} ${kept.entity} has superseded snapshots`).toBeGreaterThan(1);
      expect(entityEventIds(db, kept.aggregate, kept.kind, kept.entity), `${kept.reason} ${kept.kind} ${kept.entity}`).toEqual(ids);
    }
    source.close();
  });

  it('leaves a session update that sets a column the newest update does not', () => {
    expect(manifest.keptEventIds).toHaveLength(1);
    for (const id of manifest.keptEventIds) expect(db.prepare('SELECT count(*) FROM event WHERE id = ?').pluck().get(id)).toBe(1);
    expect(result.kept.fields.count).toBeGreaterThanOrEqual(1);
  });

  it('compacts rows whose keys are in another order than their newest snapshot (equal as JSON)', () => {
    let compactedOnes = 0;
    for (const r of manifest.reordered) {
      const key = `${aggregateOf(r.kind, r.id)}|${typeOf(r.kind)}|${r.id}`;
      const was = before.groups.get(key);
      if (!was || was.count <= 2 || manifest.keptEntities.some((k) => k.entity === r.id) || manifest.syncedAggregates.includes(was.aggregate)) continue;
      expect(snapshotGroups(db).get(key)?.count, key).toBe(2);
      compactedOnes++;
    }
    expect(compactedOnes).toBeGreaterThan(0);
  });

  it('leaves every event of a type it does not compact, and event_sequence, unchanged', () => {
    expect(otherEventsDigest(db)).toEqual(before.other);
    expect(before.other.count).toBeGreaterThan(0);
    const types = db.prepare('SELECT DISTINCT type FROM event').pluck().all() as string[];
    for (const unknown of manifest.unknownTypes) expect(types).toContain(unknown);
    expect(eventSequence(db)).toEqual(before.sequence);
  });

  it('leaves aggregates shared with a workspace alone', () => {
    expect(manifest.syncedAggregates).toHaveLength(1);
    const source = new Database(manifest.path, { readonly: true });
    expect(aggregateEvents(db, manifest.syncedAggregates)).toEqual(aggregateEvents(source, manifest.syncedAggregates));
    source.close();
    expect(result.kept.synced.count).toBeGreaterThan(0);
  });

  it('deleted what the plan said it would', () => {
    expect(result.deleted).toEqual(plan.compactable);
    for (const figures of result.byType) {
      expect(plan.byType.find((t) => t.type === figures.type)?.compactable, figures.type).toEqual({ count: figures.count, bytes: figures.bytes });
    }
    expect(plan.superseded).toEqual(before.superseded);
    const source = new Database(manifest.path, { readonly: true });
    expect(plan.events).toEqual(source.prepare('SELECT count(*) AS count, sum(length(CAST(data AS BLOB))) AS bytes FROM event').get());
    source.close();
  });

  it('reports orphans and leaves them without the option', () => {
    expect(plan.orphans.aggregates).toBe(manifest.orphanAggregates.length);
    const source = new Database(manifest.path, { readonly: true });
    const orphanEvents = aggregateEvents(source, manifest.orphanAggregates);
    source.close();
    expect({ count: plan.orphans.count, bytes: plan.orphans.bytes }).toEqual(orphanEvents);
    expect(plan.foreign.aggregates).toBe(manifest.foreignAggregates.length);
    expect(aggregateEvents(db, manifest.orphanAggregates)).toEqual(orphanEvents);
  });

  it('leaves a database that passes integrity and foreign key checks', () => {
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    expect(db.pragma('foreign_key_check')).toEqual([]);
  });

  it('reports progress up to every aggregate', () => {
    const last = progress.at(-1);
    expect(last?.aggregatesDone).toBe(last?.aggregatesTotal);
    expect(last?.bytesDeleted).toBe(result.deleted.bytes);
    expect(result.longestTransactionMs).toBeLessThan(1000);
  });

  it('finds nothing more to do on a second run', () => {
    const open = openWritable(compacted);
    expect(compactionPlan(open).compactable).toEqual({ count: 0, bytes: 0 });
    expect(compactEvents(open).deleted).toEqual({ count: 0, bytes: 0 });
    open.db.close();
  });

  function aggregateOf(kind: 'message' | 'part', id: string): string {
    return db.prepare(`SELECT session_id FROM ${kind} WHERE id = ?`).pluck().get(id) as string;
  }
  function typeOf(kind: 'message' | 'part'): string {
    return kind === 'message' ? 'message.updated.1' : 'message.part.updated.1';
  }
});

describe.each(['1.18', 'legacy'] as const)('orphans, on request (%s layout)', (layout: EventLogLayout) => {
  it('removes the events of sessions that are gone, keeps their event_sequence rows and anything not a session', () => {
    const manifest = cachedEventLog({ ...FIXTURE, layout });
    const path = join(dir, `orphans-${layout}.db`);
    copyDatabase(manifest.path, path);
    const open = openWritable(path);
    const sequence = eventSequence(open.db);
    const foreign = aggregateEvents(open.db, manifest.foreignAggregates);
    const plan = compactionPlan(open, { orphans: true });
    expect(plan.freesBytes).toBe(plan.compactable.bytes + plan.orphans.bytes);
    const result = compactEvents(open, { orphans: true });
    expect(result.orphansDeleted).toEqual(plan.orphans);
    expect(aggregateEvents(open.db, manifest.orphanAggregates)).toEqual({ count: 0, bytes: 0 });
    expect(aggregateEvents(open.db, manifest.foreignAggregates)).toEqual(foreign);
    expect(eventSequence(open.db)).toEqual(sequence);
    expect(open.db.pragma('foreign_key_check')).toEqual([]);
    open.db.close();
  });
});

describe('plan on a read-only connection', () => {
  it('plans without writing to the file', () => {
    const manifest = cachedEventLog({ ...FIXTURE, layout: '1.18' });
    const path = join(dir, 'readonly.db');
    copyDatabase(manifest.path, path);
    const open = openDatabase(path);
    const plan = compactionPlan(open);
    expect(plan.compactable.count).toBeGreaterThan(0);
    expect(() => compactEvents(open)).toThrow(/read-only/);
    open.db.close();
    const check = new Database(path, { readonly: true });
    expect(snapshotGroups(check).size).toBeGreaterThan(0);
    expect(supersededBytes(check).bytes).toBe(plan.superseded.bytes);
    check.close();
  });
});

describe('stopping and reclaiming', () => {
  it('stops between transactions when the signal aborts, and a later run finishes the job', () => {
    const manifest = cachedEventLog({ ...FIXTURE, layout: '1.18' });
    const path = join(dir, 'abort.db');
    copyDatabase(manifest.path, path);
    const source = new Database(manifest.path, { readonly: true });
    const fullReplay = replayDatabase(source);
    source.close();
    const open = openWritable(path);
    const plan = compactionPlan(open);
    const controller = new AbortController();
    const first = compactEvents(open, {
      signal: controller.signal,
      onProgress: (p) => {
        if (p.eventsDeleted > 0) controller.abort();
      },
    });
    expect(first.aborted).toBe(true);
    expect(first.deleted.count).toBeGreaterThan(0);
    expect(first.deleted.count).toBeLessThan(plan.compactable.count);
    expect(diffProjections(fullReplay, replayDatabase(open.db))).toEqual([]);
    const second = compactEvents(open);
    expect(second.aborted).toBe(false);
    expect(first.deleted.count + second.deleted.count).toBe(plan.compactable.count);
    expect(diffProjections(fullReplay, replayDatabase(open.db))).toEqual([]);
    open.db.close();
  });

  it('gives the space back through the writer (VACUUM here, incremental where the file allows)', async () => {
    const manifest = cachedEventLog({ ...FIXTURE, layout: '1.18' });
    for (const incremental of [false, true]) {
      const path = join(dir, `reclaim-${incremental}.db`);
      copyDatabase(manifest.path, path);
      if (incremental) {
        const convert = SqliteWriter.open(path);
        await convert.convertToIncremental();
        await convert.close();
      }
      const writer = SqliteWriter.open(path);
      const compaction = await writer.compactEvents();
      const reclaim = await writer.reclaim();
      await writer.close();
      expect(reclaim.mode).toBe(incremental ? 'incremental' : 'vacuum');
      expect(reclaim.bytesBefore - reclaim.bytesAfter).toBeGreaterThan(compaction.deleted.bytes * 0.8);
      const check = new Database(path, { readonly: true });
      expect(check.pragma('integrity_check', { simple: true })).toBe('ok');
      check.close();
    }
  });
});
