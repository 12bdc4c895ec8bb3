/**
 * Facts about an event log that compaction tests compare before and after: read by plain SQL
 * of the test's own, independent of the code under test. Small test databases only.
 */
import type Database from 'better-sqlite3';
import { createHash } from 'node:crypto';

export const SNAPSHOT_TYPES = ['message.updated.1', 'message.part.updated.1', 'session.updated.1'] as const;

/** The entity a snapshot event is about, as SQL over `event e`. */
export const ENTITY_SQL = `CASE e.type WHEN 'message.updated.1' THEN e.data ->> '$.info.id'
  WHEN 'message.part.updated.1' THEN e.data ->> '$.part.id' WHEN 'session.updated.1' THEN e.aggregate_id END`;

export interface SnapshotGroup {
  aggregate: string;
  type: string;
  entity: string;
  newestSeq: number;
  newestId: string;
  firstSeq: number;
  count: number;
}

/** Every (aggregate, snapshot type, entity) with its newest and first snapshot. */
export function snapshotGroups(db: Database.Database): Map<string, SnapshotGroup> {
  const rows = db
    .prepare(
      `WITH s AS (
         SELECT e.aggregate_id AS aggregate, e.type AS type, ${ENTITY_SQL} AS entity, e.seq AS seq, e.id AS id,
           row_number() OVER (PARTITION BY e.aggregate_id, e.type, ${ENTITY_SQL} ORDER BY e.seq DESC) AS rn
         FROM event e WHERE e.type IN (${SNAPSHOT_TYPES.map((t) => `'${t}'`).join(', ')}))
       SELECT aggregate, type, entity, max(seq) AS newestSeq, min(seq) AS firstSeq, count(*) AS count,
         max(CASE WHEN rn = 1 THEN id END) AS newestId
       FROM s GROUP BY aggregate, type, entity`,
    )
    .all() as SnapshotGroup[];
  return new Map(rows.map((g) => [`${g.aggregate}|${g.type}|${g.entity}`, g]));
}

/** Ids of one entity's snapshot events, in seq order. */
export function entityEventIds(db: Database.Database, aggregate: string, kind: 'message' | 'part' | 'session', entity: string): string[] {
  const type = kind === 'message' ? 'message.updated.1' : kind === 'part' ? 'message.part.updated.1' : 'session.updated.1';
  return db
    .prepare(`SELECT e.id FROM event e WHERE e.aggregate_id = ? AND e.type = ? AND ${ENTITY_SQL} = ? ORDER BY e.seq`)
    .pluck()
    .all(aggregate, type, entity) as string[];
}

/** sha256 over (id, aggregate, seq, type, data) of every event not of a snapshot type. */
export function otherEventsDigest(db: Database.Database): { count: number; digest: string } {
  const hash = createHash('sha256');
  let count = 0;
  const rows = db
    .prepare(`SELECT id, aggregate_id, seq, type, data FROM event WHERE type NOT IN (${SNAPSHOT_TYPES.map((t) => `'${t}'`).join(', ')}) ORDER BY id`)
    .raw()
    .iterate() as IterableIterator<unknown[]>;
  for (const row of rows) {
    hash.update(JSON.stringify(row)).update('\n');
    count++;
  }
  return { count, digest: hash.digest('hex') };
}

/** event_sequence, every column, in id order. */
export function eventSequence(db: Database.Database): unknown[] {
  return db.prepare('SELECT * FROM event_sequence ORDER BY aggregate_id').all();
}

/** Count and bytes of the events of the given aggregates. */
export function aggregateEvents(db: Database.Database, aggregates: readonly string[]): { count: number; bytes: number } {
  return db
    .prepare('SELECT count(*) AS count, coalesce(sum(length(CAST(data AS BLOB))), 0) AS bytes FROM event WHERE aggregate_id IN (SELECT value FROM json_each(?))')
    .get(JSON.stringify(aggregates)) as { count: number; bytes: number };
}

/** Bytes of superseded snapshots (older than their entity's newest) of sessions that exist, by plain window SQL. */
export function supersededBytes(db: Database.Database): { count: number; bytes: number } {
  return db
    .prepare(
      `SELECT count(*) AS count, coalesce(sum(b), 0) AS bytes FROM (
         SELECT length(CAST(e.data AS BLOB)) AS b, row_number() OVER (PARTITION BY e.aggregate_id, e.type, ${ENTITY_SQL} ORDER BY e.seq DESC) AS rn
         FROM event e WHERE e.type IN (${SNAPSHOT_TYPES.map((t) => `'${t}'`).join(', ')}) AND e.aggregate_id IN (SELECT id FROM session))
       WHERE rn > 1`,
    )
    .get() as { count: number; bytes: number };
}
