/**
 * Compaction of OpenCode's event log: drops superseded snapshots of the entities a user keeps.
 *
 * Every `updateMessage()`/`updatePart()`/session update commits a durable event holding the
 * whole entity; the projections (`message`, `part`, `session`) hold the current state. Within one
 * aggregate (a session), for each snapshot type and entity, the newest snapshot is kept and the
 * older ones go, but only where that newest snapshot equals the entity's current row. Equal means
 * equal as JSON, compared in SQL: OpenCode 1.18.33 encodes events in schema order and stores rows
 * in the object's own order, so the newest snapshot matches its row byte for byte almost never
 * (0 of 91 messages, 75 of 221 parts in a database it wrote) while the values are the same.
 *
 * The rule, as OpenCode 1.18.33's projectors make it replay-safe:
 * - `message.updated.1`: `$.info` minus `id`/`sessionID` is the row's `data` (an upsert that
 *   replaces `data`). The oldest snapshot stays: it inserts the row, and a part's snapshot only
 *   projects when its message row exists (OpenCode ignores a part whose message is missing), so
 *   dropping it would lose the message's parts on replay; it also sets `time_created`.
 * - `message.part.updated.1`: `$.part` minus `id`/`sessionID`/`messageID` is the row's `data`.
 *   The oldest snapshot stays too: the row's `time_created` is the inserting event's `$.time`
 *   (a `Date.now()` per event). `step-finish` parts are never touched: their projector moves
 *   the session's cost and tokens by (new - old), which only the full chain replays.
 *   First snapshots are small (an empty text, a pending tool), so little is lost by keeping them.
 * - `session.updated.1`: the projector writes only the columns the info defines (`undefined`
 *   leaves a column alone), so an older event may go only when every column it can set is also
 *   set by the newest one (checked per event, in SQL, on the JSON's keys), no key is unknown to
 *   us unless the newest has the same unknown keys, and the newest equals the row on every
 *   column it sets except cost, tokens and time_updated (later part events move those).
 * Unknown event types are never touched; `event_sequence` is never changed. Aggregates whose
 * session row is gone are orphans: reported, and their events removed only on request.
 * Aggregates shared with another OpenCode (an `event_sequence.owner_id`, a session
 * `workspace_id`) are left alone: OpenCode's replay demands contiguous sequences.
 *
 * Safety beside a running OpenCode: the analysis runs in a read transaction (WAL readers do not
 * block writers) into TEMP tables; deletes run in short IMMEDIATE transactions that first check
 * the aggregate's `event_sequence.seq` (OpenCode writes events and projections in one
 * transaction), re-check that each kept newest snapshot and its row are as analysed, and delete
 * only rows whose (rowid, aggregate, seq) are the ones analysed, each older than a committed
 * newest snapshot of the same entity. A crash between transactions leaves a log that replays to
 * the same rows.
 *
 * Cost: with OpenCode 1.18's `(aggregate_id, type, seq)` index each aggregate is an index
 * range, read when it is compacted. Without it (older files) a per-aggregate query would scan the
 * whole table each time, so one pass collects every snapshot's facts (ids, sizes, masks) into a
 * TEMP table indexed by aggregate, and the aggregates are worked from there; events written after
 * that pass are found by rowid. Either way each snapshot's JSON is parsed once to find its entity,
 * and each newest snapshot once more to compare it with its row.
 *
 * Memory: payloads never reach JavaScript. Sizes come from octet_length, ids and comparisons
 * from SQLite's JSON functions; JavaScript holds counters and one page of aggregate ids. SQLite
 * itself needs about 2x a snapshot to find its entity and about 8x to compare it with its row
 * (both documents parsed): see `maxCompareBytes`.
 */
import {
  KEEP_REASONS,
  SNAPSHOT_EVENT_TYPES,
  type AggregateFigures,
  type ByteCount,
  type CompactionPlan,
  type CompactionProgress,
  type CompactionResult,
  type CompactOptions,
  type EventTypeFigures,
  type KeepReason,
  type PlanOptions,
  type SnapshotKind,
} from '../../core/compaction.js';
import { SkError } from '../../core/errors.js';
import { mapSqliteError, type Connection, type SqliteConnection as OpenDatabase } from './connection.js';

const KIND_CODE: Readonly<Record<SnapshotKind, number>> = { message: 1, part: 2, session: 3 };

/** A write transaction deletes at most this many events... */
const BATCH_ROWS = 1000;
/** ...or this many payload bytes (SQLite reads each overflow page it frees). */
const BATCH_BYTES = 16 * 1024 * 1024;
/** Aggregate ids are read in pages of this many. */
const AGGREGATE_PAGE = 500;
/** A write batch whose aggregate keeps moving is retried this often, then left for the next run. */
const RESYNC_ATTEMPTS = 3;

// ---------------------------------------------------------------------------------------------
// SQL pieces

/**
 * Key-order-insensitive JSON equality, as SQL: the subtree of `doc` at `root` (minus the
 * `exclude`d top-level keys) and the JSON text `other` have the same number of nodes, and every
 * node of the first is found at the same path in the second with the same type and, for
 * scalars, the same value. Walking one tree and looking nodes up by path keeps SQLite from
 * copying big strings into temporary tables (an EXCEPT of two json_tree sets took 11 GB for a
 * 400 MB row); both documents are still parsed, so memory is about 8x the largest value.
 * OpenCode's newest snapshots differ from their rows in key order almost always (the event is
 * encoded in schema order, the row keeps the object's own order), so this is the common path.
 */
function jsonEqualSql(doc: string, root: string, other: string, exclude: readonly string[] = []): string {
  const keptKey = (column: string): string =>
    exclude.length === 0 ? '1' : `${column} NOT IN (${exclude.map((k) => quote(`${root}.${k}`)).join(', ')})`;
  // The path in `other` of a node of `doc`'s subtree: `$` plus what follows `root` in its fullkey.
  const path = `'$' || substr(a.fullkey, ${root.length + 1})`;
  return `(json_valid(${other}) AND json_type(${doc}, ${quote(root)}) IS NOT NULL
    AND (SELECT count(*) FROM json_tree(${other})) = (SELECT count(*) FROM json_tree(${doc}, ${quote(root)}) WHERE ${keptKey('fullkey')})
    AND NOT EXISTS (SELECT 1 FROM json_tree(${doc}, ${quote(root)}) a WHERE ${keptKey('a.fullkey')}
      AND NOT (json_type(${other}, ${path}) IS a.type AND (a.type IN ('object', 'array') OR json_extract(${other}, ${path}) IS a.atom))))`;
}

/**
 * Sizes that rule equality out before any parsing: an event carries its entity plus ids and a
 * small envelope, so a row much larger or smaller than its newest snapshot cannot equal it
 * (a pretty-printed copy would also land here: judged different, its snapshots stay).
 */
function sizesMayMatchSql(event: string, row: string): string {
  return `abs(octet_length(${event}) - octet_length(${row})) <= 65536 + octet_length(${row}) / 100`;
}

interface SessionColumnSpec {
  column: string;
  /** JSON path under the event's `$.info` */
  path: readonly string[];
  /** stored as JSON text in the row (drizzle json mode) */
  json?: boolean;
  /** left out of the newest-equals-row check: later events legitimately move it */
  moving?: boolean;
}

/** Session row columns and the `$.info` paths OpenCode's session projector maps them from. */
const SESSION_COLUMNS: readonly SessionColumnSpec[] = [
  { column: 'id', path: ['id'] },
  { column: 'project_id', path: ['projectID'] },
  { column: 'workspace_id', path: ['workspaceID'] },
  { column: 'parent_id', path: ['parentID'] },
  { column: 'slug', path: ['slug'] },
  { column: 'directory', path: ['directory'] },
  { column: 'path', path: ['path'] },
  { column: 'title', path: ['title'] },
  { column: 'agent', path: ['agent'] },
  { column: 'model', path: ['model'], json: true },
  { column: 'version', path: ['version'] },
  { column: 'share_url', path: ['share', 'url'] },
  { column: 'summary_additions', path: ['summary', 'additions'] },
  { column: 'summary_deletions', path: ['summary', 'deletions'] },
  { column: 'summary_files', path: ['summary', 'files'] },
  { column: 'summary_diffs', path: ['summary', 'diffs'], json: true },
  { column: 'metadata', path: ['metadata'], json: true },
  // Step-finish parts add their usage to these after the session update (OpenCode's z2 deltas).
  { column: 'cost', path: ['cost'], moving: true },
  { column: 'tokens_input', path: ['tokens', 'input'], moving: true },
  { column: 'tokens_output', path: ['tokens', 'output'], moving: true },
  { column: 'tokens_reasoning', path: ['tokens', 'reasoning'], moving: true },
  { column: 'tokens_cache_read', path: ['tokens', 'cache', 'read'], moving: true },
  { column: 'tokens_cache_write', path: ['tokens', 'cache', 'write'], moving: true },
  { column: 'revert', path: ['revert'], json: true },
  { column: 'permission', path: ['permission'], json: true },
  { column: 'time_created', path: ['time', 'created'] },
  { column: 'time_updated', path: ['time', 'updated'], moving: true },
  { column: 'time_compacting', path: ['time', 'compacting'] },
  { column: 'time_archived', path: ['time', 'archived'] },
];

/** Objects whose keys the session projector reads one by one; any other key there is unknown. */
const SESSION_CONTAINERS: ReadonlyMap<string, readonly string[]> = (() => {
  const map = new Map<string, Set<string>>();
  for (const spec of SESSION_COLUMNS) {
    for (let depth = 0; depth < spec.path.length; depth++) {
      const container = ['$', 'info', ...spec.path.slice(0, depth)].join('.');
      const key = spec.path[depth] as string;
      const keys = map.get(container) ?? new Set<string>();
      keys.add(key);
      map.set(container, keys);
    }
  }
  return new Map([...map].map(([container, keys]) => [container, [...keys].sort()]));
})();

const fullPath = (path: readonly string[]): string => ['$', 'info', ...path].join('.');
const quote = (text: string): string => `'${text.replace(/'/g, "''")}'`;

/**
 * Bit mask of the session columns an event may set, from json_tree rows `t` over `$.info`:
 * the leaf is present, or a container on its way is present and not an object (the projector
 * then passes that value, null included, on to the column).
 */
function sessionSetsMaskSql(): string {
  return SESSION_COLUMNS.map((spec, bit) => {
    const conditions = [`t.fullkey = ${quote(fullPath(spec.path))}`];
    for (let depth = 1; depth < spec.path.length; depth++) {
      conditions.push(`(t.fullkey = ${quote(fullPath(spec.path.slice(0, depth)))} AND t.type <> 'object')`);
    }
    return `(max(CASE WHEN ${conditions.join(' OR ')} THEN 1 ELSE 0 END) << ${bit})`;
  }).join(' | ');
}

/** Bit mask of the session columns an event surely sets: the leaf is present and not null. */
function sessionFixesMaskSql(): string {
  return SESSION_COLUMNS.map(
    (spec, bit) => `(max(CASE WHEN t.fullkey = ${quote(fullPath(spec.path))} AND t.type <> 'null' THEN 1 ELSE 0 END) << ${bit})`,
  ).join(' | ');
}

/** Sorted, comma-joined paths of keys the session projector's mapping does not know. */
function sessionUnknownKeysSql(): string {
  const cases = [...SESSION_CONTAINERS].map(
    ([container, keys]) => `(t.path = ${quote(container)} AND t.key NOT IN (${keys.map(quote).join(', ')}))`,
  );
  return `group_concat(CASE WHEN ${cases.join(' OR ')} THEN t.fullkey END, ',' ORDER BY t.fullkey)`;
}

/** The newest session snapshot `n` (event data) equals row `s` on every column it surely sets. */
function sessionEqualsRowSql(columns: ReadonlySet<string>): string {
  const checks = SESSION_COLUMNS.flatMap((spec, bit) => {
    if (spec.moving || !columns.has(spec.column)) return [];
    const path = quote(fullPath(spec.path));
    const equal = spec.json ? jsonEqualSql('n.data', fullPath(spec.path), `s.${spec.column}`) : `(s.${spec.column} IS (n.data ->> ${path}))`;
    return [`((g.fixes & ${2 ** bit}) = 0 OR ${equal})`];
  });
  return checks.length === 0 ? '1' : checks.join(' AND ');
}

// ---------------------------------------------------------------------------------------------

interface LogShape {
  hasLog: boolean;
  indexed: boolean;
  hasOwner: boolean;
  sessionColumns: Set<string>;
}

function logShape(open: OpenDatabase): LogShape {
  const { db, schema } = open;
  const hasLog = schema.tables.has('event') && schema.tables.has('event_sequence');
  if (!hasLog) return { hasLog, indexed: false, hasOwner: false, sessionColumns: schema.sessionColumns };
  // Any index whose first column is aggregate_id turns per-aggregate reads into range scans.
  const indexed = (
    db
      .prepare<[]>(
        `SELECT il.name FROM pragma_index_list('event') il
         WHERE (SELECT ii.name FROM pragma_index_info(il.name) ii WHERE ii.seqno = 0) = 'aggregate_id'`,
      )
      .all() as { name: string }[]
  ).length > 0;
  const hasOwner = (db.prepare<[]>("SELECT name FROM pragma_table_info('event_sequence')").pluck().all() as string[]).includes('owner_id');
  const sessionColumns = new Set(db.prepare<[]>("SELECT name FROM pragma_table_info('session')").pluck().all() as string[]);
  return { hasLog, indexed, hasOwner, sessionColumns };
}

type AggregateRole = 'session' | 'synced' | 'orphan' | 'foreign';

interface AggregateRow {
  id: string;
  role: AggregateRole;
}

const emptyKept = (): Record<KeepReason, ByteCount> =>
  Object.fromEntries(KEEP_REASONS.map((reason) => [reason, { count: 0, bytes: 0 }])) as Record<KeepReason, ByteCount>;

function addTo(target: ByteCount, count: number, bytes: number): void {
  target.count += count;
  target.bytes += bytes;
}

/** Per-aggregate analysis results, folded into plan or result totals. */
interface AggregateAnalysis {
  superseded: Map<string, ByteCount>;
  compactable: Map<string, ByteCount>;
  kept: Map<KeepReason, ByteCount>;
  /** event_sequence.seq when the analysis read the aggregate */
  seq: number | null;
}

/**
 * One compaction (or plan) run over a connection: the TEMP tables it works in, its prepared
 * statements, and the per-aggregate steps. TEMP tables live in the connection's own temporary
 * database, so a read-only connection can plan and no write lock is taken while analysing.
 */
class EventLogCompactor {
  readonly shape: LogShape;
  private readonly db: Connection;
  private readonly stmt: ReturnType<EventLogCompactor['prepare']>;
  /** highest event rowid seen by the global collection (files without the index) */
  private collectedMaxRowid = 0;

  constructor(
    open: OpenDatabase,
    private readonly maxCompareBytes: number,
  ) {
    this.db = open.db;
    this.shape = logShape(open);
    this.createTempTables();
    this.stmt = this.prepare();
  }

  private createTempTables(): void {
    this.db.exec(`
      DROP TABLE IF EXISTS temp.sk_ec_kind;
      DROP TABLE IF EXISTS temp.sk_ec_snap;
      DROP TABLE IF EXISTS temp.sk_ec_group;
      DROP TABLE IF EXISTS temp.sk_ec_doomed;
      DROP TABLE IF EXISTS temp.sk_ec_seq;
      DROP TABLE IF EXISTS temp.sk_ec_orphan;
      CREATE TEMP TABLE sk_ec_kind (type TEXT PRIMARY KEY, kind INTEGER NOT NULL) WITHOUT ROWID;
      -- one row per snapshot event: what the analysis needs, never the payload
      CREATE TEMP TABLE sk_ec_snap (
        rid INTEGER PRIMARY KEY, agg TEXT NOT NULL, seq INTEGER NOT NULL, kind INTEGER NOT NULL,
        entity TEXT, bytes INTEGER NOT NULL, ptype TEXT,
        sets INTEGER, fixes INTEGER, unknown TEXT);
      CREATE INDEX temp.sk_ec_snap_entity ON sk_ec_snap (agg, kind, entity, seq);
      -- one row per entity with superseded snapshots, in the aggregate being compacted
      CREATE TEMP TABLE sk_ec_group (
        kind INTEGER NOT NULL, entity TEXT NOT NULL, n INTEGER NOT NULL,
        newest_seq INTEGER NOT NULL, newest_rid INTEGER, oldest_seq INTEGER NOT NULL,
        keep_oldest INTEGER NOT NULL DEFAULT 0, usage INTEGER NOT NULL DEFAULT 0,
        fixes INTEGER, unknown TEXT, verdict TEXT, row_bytes INTEGER, row_time INTEGER, row_note TEXT,
        PRIMARY KEY (kind, entity)) WITHOUT ROWID;
      -- the events this aggregate may lose
      CREATE TEMP TABLE sk_ec_doomed (
        rid INTEGER PRIMARY KEY, seq INTEGER NOT NULL, kind INTEGER NOT NULL, entity TEXT NOT NULL,
        type TEXT NOT NULL, bytes INTEGER NOT NULL);
      -- event_sequence as the global collection saw it (files without the index)
      CREATE TEMP TABLE sk_ec_seq (agg TEXT PRIMARY KEY, seq INTEGER) WITHOUT ROWID;
      -- the events of orphan aggregates, found once (a scan of the table without the index)
      CREATE TEMP TABLE sk_ec_orphan (rid INTEGER PRIMARY KEY, agg TEXT NOT NULL, seq INTEGER NOT NULL, bytes INTEGER NOT NULL);
      CREATE INDEX temp.sk_ec_orphan_agg ON sk_ec_orphan (agg, rid);
    `);
    const insertKind = this.db.prepare('INSERT INTO temp.sk_ec_kind (type, kind) VALUES (?, ?)');
    for (const [type, kind] of Object.entries(SNAPSHOT_EVENT_TYPES)) insertKind.run(type, KIND_CODE[kind]);
  }

  dropTempTables(): void {
    this.db.exec(`
      DROP TABLE IF EXISTS temp.sk_ec_kind; DROP TABLE IF EXISTS temp.sk_ec_snap;
      DROP TABLE IF EXISTS temp.sk_ec_group; DROP TABLE IF EXISTS temp.sk_ec_doomed; DROP TABLE IF EXISTS temp.sk_ec_seq;
      DROP TABLE IF EXISTS temp.sk_ec_orphan;`);
  }

  private prepare() {
    const { db } = this;
    const { sessionColumns, hasOwner } = this.shape;
    // The per-event facts: entity id, size, part type, session masks.
    const snapColumns = `
      e.rowid, e.aggregate_id, e.seq, k.kind,
      CASE WHEN json_valid(e.data) THEN CASE k.kind
        WHEN 1 THEN CASE WHEN json_type(e.data, '$.info') = 'object' AND json_type(e.data, '$.info.id') = 'text' THEN e.data ->> '$.info.id' END
        WHEN 2 THEN CASE WHEN json_type(e.data, '$.part') = 'object' AND json_type(e.data, '$.part.id') = 'text' THEN e.data ->> '$.part.id' END
        WHEN 3 THEN CASE WHEN json_type(e.data, '$.info') = 'object' AND e.data ->> '$.sessionID' = e.aggregate_id THEN e.aggregate_id END
      END END,
      octet_length(e.data),
      CASE WHEN k.kind = 2 AND json_valid(e.data) THEN e.data ->> '$.part.type' END,
      CASE WHEN k.kind = 3 AND json_valid(e.data) THEN (SELECT ${sessionSetsMaskSql()} FROM json_tree(e.data, '$.info') t) END,
      CASE WHEN k.kind = 3 AND json_valid(e.data) THEN (SELECT ${sessionFixesMaskSql()} FROM json_tree(e.data, '$.info') t) END,
      CASE WHEN k.kind = 3 AND json_valid(e.data) THEN (SELECT ${sessionUnknownKeysSql()} FROM json_tree(e.data, '$.info') t) END`;
    const snapInsert = 'INSERT INTO temp.sk_ec_snap (rid, agg, seq, kind, entity, bytes, ptype, sets, fixes, unknown)';
    const typeList = Object.keys(SNAPSHOT_EVENT_TYPES).map(quote).join(', ');
    const messageEqual = `${sizesMayMatchSql('n.data', 'm.data')} AND ${jsonEqualSql('n.data', '$.info', 'm.data', ['id', 'sessionID'])}`;
    const partEqual = `${sizesMayMatchSql('n.data', 'p.data')} AND ${jsonEqualSql('n.data', '$.part', 'p.data', ['id', 'sessionID', 'messageID'])}`;
    const sessionFingerprint = `coalesce(octet_length(s.summary_diffs), -1) || ':' || s.time_updated || ':' || s.title`;
    const ownerColumn = hasOwner ? 'es.owner_id' : 'NULL';
    const workspaceTest = sessionColumns.has('workspace_id') ? 's.workspace_id IS NOT NULL' : '0';
    return {
      aggregatesPage: db.prepare<[string]>(
        `SELECT es.aggregate_id AS id,
           CASE WHEN s.id IS NULL THEN CASE WHEN es.aggregate_id LIKE 'ses\\_%' ESCAPE '\\' THEN 'orphan' ELSE 'foreign' END
                WHEN ${ownerColumn} IS NOT NULL OR ${workspaceTest} THEN 'synced' ELSE 'session' END AS role
         FROM event_sequence es LEFT JOIN session s ON s.id = es.aggregate_id
         WHERE es.aggregate_id > ? ORDER BY es.aggregate_id LIMIT ${AGGREGATE_PAGE}`,
      ),
      aggregateCount: db.prepare<[]>('SELECT count(*) FROM event_sequence').pluck(),
      sequenceOf: db.prepare<[string]>('SELECT seq FROM event_sequence WHERE aggregate_id = ?').pluck(),
      sessionExists: db.prepare<[string]>('SELECT count(*) FROM session WHERE id = ?').pluck(),
      // The OFFSET keeps the subquery a co-routine: grouped directly, SQLite's sorter would copy
      // every `data` value instead of its length (10x slower on an event-heavy file).
      typeFigures: db.prepare<[]>(
        'SELECT type, count(*) AS count, coalesce(sum(len), 0) AS bytes FROM (SELECT type, octet_length(data) AS len FROM event LIMIT -1 OFFSET 0) GROUP BY type',
      ),
      aggregateFigures: db.prepare<[string]>(
        'SELECT count(*) AS count, coalesce(sum(octet_length(data)), 0) AS bytes FROM event WHERE aggregate_id = ?',
      ),
      allAggregateFigures: db.prepare<[]>(
        'SELECT aggregate_id AS id, count(*) AS count, coalesce(sum(len), 0) AS bytes FROM (SELECT aggregate_id, octet_length(data) AS len FROM event LIMIT -1 OFFSET 0) GROUP BY aggregate_id',
      ),
      clearSnap: db.prepare('DELETE FROM temp.sk_ec_snap'),
      clearGroups: db.prepare('DELETE FROM temp.sk_ec_group'),
      clearDoomed: db.prepare('DELETE FROM temp.sk_ec_doomed'),
      collectAggregate: db.prepare<[string]>(
        `${snapInsert} SELECT ${snapColumns} FROM main.event e JOIN temp.sk_ec_kind k ON k.type = e.type
         WHERE e.aggregate_id = ? AND e.type IN (${typeList})`,
      ),
      collectAll: db.prepare(
        `${snapInsert} SELECT ${snapColumns} FROM main.event e JOIN temp.sk_ec_kind k ON k.type = e.type
         WHERE e.type IN (${typeList})`,
      ),
      maxRowid: db.prepare<[]>('SELECT coalesce(max(rowid), 0) FROM main.event').pluck(),
      malformed: db.prepare<[string]>(
        'SELECT count(*) AS count, coalesce(sum(bytes), 0) AS bytes FROM temp.sk_ec_snap WHERE agg = ? AND entity IS NULL',
      ),
      groups: db.prepare<[string]>(
        `INSERT INTO temp.sk_ec_group (kind, entity, n, newest_seq, oldest_seq, usage)
         SELECT kind, entity, count(*), max(seq), min(seq), max(coalesce(ptype = 'step-finish', 0))
         FROM temp.sk_ec_snap WHERE agg = ? AND entity IS NOT NULL GROUP BY kind, entity HAVING count(*) > 1`,
      ),
      groupNewest: db.prepare<{ agg: string }>(
        `UPDATE temp.sk_ec_group AS g SET
           newest_rid = (SELECT s.rid FROM temp.sk_ec_snap s WHERE s.agg = @agg AND s.kind = g.kind AND s.entity = g.entity AND s.seq = g.newest_seq),
           fixes = (SELECT s.fixes FROM temp.sk_ec_snap s WHERE s.agg = @agg AND s.kind = g.kind AND s.entity = g.entity AND s.seq = g.newest_seq),
           unknown = (SELECT s.unknown FROM temp.sk_ec_snap s WHERE s.agg = @agg AND s.kind = g.kind AND s.entity = g.entity AND s.seq = g.newest_seq),
           keep_oldest = g.kind IN (1, 2),
           verdict = CASE
             WHEN (SELECT count(*) FROM temp.sk_ec_snap s WHERE s.agg = @agg AND s.kind = g.kind AND s.entity = g.entity AND s.seq = g.newest_seq) > 1 THEN 'ambiguous'
             WHEN g.usage THEN 'usage' END`,
      ),
      verdictMessages: db.prepare<{ agg: string; maxCompare: number }>(
        `UPDATE temp.sk_ec_group AS g SET
           (verdict, row_bytes, row_time) = (
             SELECT CASE WHEN max(octet_length(n.data), octet_length(m.data)) > @maxCompare THEN 'large' WHEN ${messageEqual} THEN 'equal' ELSE 'differs' END,
                    octet_length(m.data), m.time_updated
             FROM main.event n, main.message m WHERE n.rowid = g.newest_rid AND m.id = g.entity AND m.session_id = @agg)
         WHERE g.kind = 1 AND g.verdict IS NULL`,
      ),
      verdictParts: db.prepare<{ agg: string; maxCompare: number }>(
        `UPDATE temp.sk_ec_group AS g SET
           (verdict, row_bytes, row_time) = (
             SELECT CASE WHEN max(octet_length(n.data), octet_length(p.data)) > @maxCompare THEN 'large'
                         WHEN p.message_id IS NOT (n.data ->> '$.part.messageID') THEN 'differs'
                         WHEN ${partEqual} THEN 'equal' ELSE 'differs' END,
                    octet_length(p.data), p.time_updated
             FROM main.event n, main.part p WHERE n.rowid = g.newest_rid AND p.id = g.entity AND p.session_id = @agg)
         WHERE g.kind = 2 AND g.verdict IS NULL`,
      ),
      verdictSession: db.prepare<{ agg: string; maxCompare: number }>(
        `UPDATE temp.sk_ec_group AS g SET
           (verdict, row_note) = (
             SELECT CASE WHEN octet_length(n.data) > @maxCompare THEN 'large' WHEN ${sessionEqualsRowSql(sessionColumns)} THEN 'equal' ELSE 'differs' END, ${sessionFingerprint}
             FROM main.event n, main.session s WHERE n.rowid = g.newest_rid AND s.id = @agg)
         WHERE g.kind = 3 AND g.verdict IS NULL`,
      ),
      verdictMissing: db.prepare("UPDATE temp.sk_ec_group SET verdict = 'missing' WHERE verdict IS NULL"),
      superseded: db.prepare<{ agg: string }>(
        `SELECT k.type, count(*) AS count, coalesce(sum(s.bytes), 0) AS bytes
         FROM temp.sk_ec_snap s JOIN temp.sk_ec_group g ON g.kind = s.kind AND g.entity = s.entity JOIN temp.sk_ec_kind k ON k.kind = s.kind
         WHERE s.agg = @agg AND s.seq < g.newest_seq GROUP BY k.type`,
      ),
      keptByReason: db.prepare<{ agg: string }>(
        `SELECT reason, count(*) AS count, coalesce(sum(bytes), 0) AS bytes FROM (
           SELECT s.bytes,
             CASE WHEN g.verdict <> 'equal' THEN g.verdict
                  WHEN g.keep_oldest AND s.seq = g.oldest_seq THEN 'first'
                  WHEN s.kind = 3 AND ((s.sets & ~coalesce(g.fixes, 0)) <> 0 OR (s.unknown IS NOT NULL AND s.unknown IS NOT g.unknown)) THEN 'fields'
             END AS reason
           FROM temp.sk_ec_snap s JOIN temp.sk_ec_group g ON g.kind = s.kind AND g.entity = s.entity
           WHERE s.agg = @agg AND s.seq < g.newest_seq)
         WHERE reason IS NOT NULL GROUP BY reason`,
      ),
      doom: db.prepare<{ agg: string }>(
        `INSERT INTO temp.sk_ec_doomed (rid, seq, kind, entity, type, bytes)
         SELECT s.rid, s.seq, s.kind, s.entity, k.type, s.bytes
         FROM temp.sk_ec_snap s JOIN temp.sk_ec_group g ON g.kind = s.kind AND g.entity = s.entity JOIN temp.sk_ec_kind k ON k.kind = s.kind
         WHERE s.agg = @agg AND g.verdict = 'equal' AND s.seq < g.newest_seq
           AND NOT (g.keep_oldest AND s.seq = g.oldest_seq)
           AND (s.kind <> 3 OR ((s.sets & ~coalesce(g.fixes, 0)) = 0 AND (s.unknown IS NULL OR s.unknown IS g.unknown)))`,
      ),
      doomedFigures: db.prepare<[]>(
        'SELECT type, count(*) AS count, coalesce(sum(bytes), 0) AS bytes FROM temp.sk_ec_doomed GROUP BY type',
      ),
      doomedPage: db.prepare<[number]>(
        `SELECT rid, bytes FROM temp.sk_ec_doomed WHERE rid > ? ORDER BY rid LIMIT ${BATCH_ROWS}`,
      ),
      // Inside the write transaction: a group whose newest snapshot or row moved since the
      // analysis loses its place in this batch.
      invalidate: db.prepare<{ agg: string; lo: number; hi: number }>(
        `UPDATE temp.sk_ec_group AS g SET verdict = 'changed'
         WHERE g.verdict = 'equal'
           AND EXISTS (SELECT 1 FROM temp.sk_ec_doomed d WHERE d.kind = g.kind AND d.entity = g.entity AND d.rid BETWEEN @lo AND @hi)
           AND NOT (
             EXISTS (SELECT 1 FROM main.event e WHERE e.rowid = g.newest_rid AND e.seq = g.newest_seq AND e.aggregate_id = @agg)
             AND CASE g.kind
               WHEN 1 THEN EXISTS (SELECT 1 FROM main.message m WHERE m.id = g.entity AND m.session_id = @agg AND octet_length(m.data) = g.row_bytes AND m.time_updated IS g.row_time)
               WHEN 2 THEN EXISTS (SELECT 1 FROM main.part p WHERE p.id = g.entity AND p.session_id = @agg AND octet_length(p.data) = g.row_bytes AND p.time_updated IS g.row_time)
               WHEN 3 THEN EXISTS (SELECT 1 FROM main.session s WHERE s.id = @agg AND ${sessionFingerprint} IS g.row_note)
             END)`,
      ),
      batchFigures: db.prepare<{ agg: string; lo: number; hi: number }>(
        `SELECT d.type, count(*) AS count, coalesce(sum(d.bytes), 0) AS bytes
         FROM temp.sk_ec_doomed d JOIN temp.sk_ec_group g ON g.kind = d.kind AND g.entity = d.entity
           JOIN main.event e ON e.rowid = d.rid AND e.seq = d.seq AND e.aggregate_id = @agg
         WHERE d.rid BETWEEN @lo AND @hi AND g.verdict = 'equal' GROUP BY d.type`,
      ),
      deleteBatch: db.prepare<{ agg: string; lo: number; hi: number }>(
        `DELETE FROM main.event
         WHERE rowid IN (SELECT d.rid FROM temp.sk_ec_doomed d JOIN temp.sk_ec_group g ON g.kind = d.kind AND g.entity = d.entity
                         WHERE d.rid BETWEEN @lo AND @hi AND g.verdict = 'equal')
           AND aggregate_id = @agg
           AND seq = (SELECT d.seq FROM temp.sk_ec_doomed d WHERE d.rid = main.event.rowid)`,
      ),
      // Events written since the analysis: the entities they touch are left for the next run.
      newerEntities: db.prepare<{ agg: string; seq: number; after: number }>(
        `SELECT k.kind AS kind,
           CASE WHEN json_valid(e.data) THEN CASE k.kind
             WHEN 1 THEN e.data ->> '$.info.id' WHEN 2 THEN e.data ->> '$.part.id' WHEN 3 THEN e.aggregate_id END END AS entity
         FROM main.event e JOIN temp.sk_ec_kind k ON k.type = e.type
         WHERE ${this.shape.indexed ? '' : 'e.rowid > @after AND '}e.aggregate_id = @agg AND e.seq > @seq`,
      ),
      markChanged: db.prepare<[number, string]>("UPDATE temp.sk_ec_group SET verdict = 'changed' WHERE kind = ? AND entity = ? AND verdict = 'equal'"),
      markAllChanged: db.prepare("UPDATE temp.sk_ec_group SET verdict = 'changed' WHERE verdict = 'equal'"),
      verdictAll: db.prepare<[KeepReason]>('UPDATE temp.sk_ec_group SET verdict = ?'),
      changedFigures: db.prepare<[]>(
        `SELECT count(*) AS count, coalesce(sum(d.bytes), 0) AS bytes
         FROM temp.sk_ec_doomed d JOIN temp.sk_ec_group g ON g.kind = d.kind AND g.entity = d.entity WHERE g.verdict = 'changed'`,
      ),
      collectedSeq: db.prepare<[string]>('SELECT seq FROM temp.sk_ec_seq WHERE agg = ?').pluck(),
      clearCollectedSeq: db.prepare('DELETE FROM temp.sk_ec_seq'),
      collectSeqAll: db.prepare('INSERT INTO temp.sk_ec_seq (agg, seq) SELECT aggregate_id, seq FROM main.event_sequence'),
      collectOrphan: db.prepare<[string]>(
        'INSERT INTO temp.sk_ec_orphan (rid, agg, seq, bytes) SELECT rowid, aggregate_id, seq, octet_length(data) FROM main.event WHERE aggregate_id = ?',
      ),
      collectOrphans: db.prepare<[string]>(
        `INSERT INTO temp.sk_ec_orphan (rid, agg, seq, bytes) SELECT rowid, aggregate_id, seq, octet_length(data) FROM main.event
         WHERE aggregate_id IN (SELECT value FROM json_each(?))`,
      ),
      orphanPage: db.prepare<{ agg: string; after: number }>(
        `SELECT rid, bytes FROM temp.sk_ec_orphan WHERE agg = @agg AND rid > @after ORDER BY rid LIMIT ${BATCH_ROWS}`,
      ),
      orphanBatchFigures: db.prepare<{ agg: string; lo: number; hi: number }>(
        `SELECT count(*) AS count, coalesce(sum(o.bytes), 0) AS bytes FROM temp.sk_ec_orphan o
           JOIN main.event e ON e.rowid = o.rid AND e.aggregate_id = o.agg AND e.seq = o.seq
         WHERE o.agg = @agg AND o.rid BETWEEN @lo AND @hi`,
      ),
      deleteOrphanBatch: db.prepare<{ agg: string; lo: number; hi: number }>(
        `DELETE FROM main.event
         WHERE rowid IN (SELECT rid FROM temp.sk_ec_orphan WHERE agg = @agg AND rid BETWEEN @lo AND @hi)
           AND aggregate_id = @agg
           AND seq = (SELECT o.seq FROM temp.sk_ec_orphan o WHERE o.rid = main.event.rowid)`,
      ),
    };
  }

  /** Aggregates in id order, a page at a time (no table is read whole into JavaScript). */
  *aggregates(): Generator<AggregateRow> {
    let after = '';
    for (;;) {
      const page = this.stmt.aggregatesPage.all(after) as AggregateRow[];
      for (const row of page) yield row;
      const last = page[page.length - 1];
      if (page.length < AGGREGATE_PAGE || last === undefined) return;
      after = last.id;
    }
  }

  /** Doomed events of the current aggregate left alone because OpenCode wrote their entity meanwhile. */
  changedFigures(): ByteCount {
    return this.stmt.changedFigures.get() as ByteCount;
  }

  aggregateCount(): number {
    return this.stmt.aggregateCount.get() as number;
  }

  typeFigures(): Array<{ type: string; count: number; bytes: number }> {
    return this.stmt.typeFigures.all() as Array<{ type: string; count: number; bytes: number }>;
  }

  /** Count and bytes of one aggregate's events (an index range with 1.18's index). */
  aggregateFigures(id: string): ByteCount {
    return this.stmt.aggregateFigures.get(id) as ByteCount;
  }

  /** One scan for every aggregate's count and bytes (files without the index). */
  allAggregateFigures(): Map<string, ByteCount> {
    const figures = new Map<string, ByteCount>();
    for (const row of this.stmt.allAggregateFigures.iterate() as IterableIterator<{ id: string; count: number; bytes: number }>) {
      figures.set(row.id, { count: row.count, bytes: row.bytes });
    }
    return figures;
  }

  /**
   * Without an index on aggregate_id, each aggregate's events cost a full scan: one pass over
   * the table collects every snapshot's facts into the TEMP table (indexed there) instead.
   */
  collectAll(): void {
    this.db.transaction(() => {
      this.stmt.clearSnap.run();
      this.stmt.clearCollectedSeq.run();
      this.stmt.collectAll.run();
      this.stmt.collectSeqAll.run();
      this.collectedMaxRowid = this.stmt.maxRowid.get() as number;
    }).deferred();
  }

  /**
   * Reads one aggregate's snapshot facts (when indexed), groups them per entity, compares each
   * newest snapshot with its row and lists the events that may go, all in one read snapshot.
   */
  analyse(agg: string, role: AggregateRole): AggregateAnalysis {
    const analysis: AggregateAnalysis = { superseded: new Map(), compactable: new Map(), kept: new Map(), seq: null };
    const s = this.stmt;
    this.db.transaction(() => {
      if (this.shape.indexed) {
        s.clearSnap.run();
        s.collectAggregate.run(agg);
      }
      // The seq that goes with the snapshot facts: read now, or when the global pass ran.
      analysis.seq = ((this.shape.indexed ? s.sequenceOf.get(agg) : s.collectedSeq.get(agg)) as number | undefined) ?? null;
      s.clearGroups.run();
      s.clearDoomed.run();
      s.groups.run(agg);
      s.groupNewest.run({ agg });
      const malformed = s.malformed.get(agg) as ByteCount;
      if (malformed.count > 0) {
        s.verdictAll.run('malformed');
      } else if (role === 'synced') {
        s.verdictAll.run('synced');
      } else {
        const maxCompare = this.maxCompareBytes;
        s.verdictMessages.run({ agg, maxCompare });
        s.verdictParts.run({ agg, maxCompare });
        s.verdictSession.run({ agg, maxCompare });
        s.verdictMissing.run();
        s.doom.run({ agg });
      }
      for (const row of s.superseded.all({ agg }) as Array<{ type: string; count: number; bytes: number }>) {
        analysis.superseded.set(row.type, { count: row.count, bytes: row.bytes });
      }
      for (const row of s.keptByReason.all({ agg }) as Array<{ reason: KeepReason; count: number; bytes: number }>) {
        analysis.kept.set(row.reason, { count: row.count, bytes: row.bytes });
      }
      for (const row of s.doomedFigures.all() as Array<{ type: string; count: number; bytes: number }>) {
        analysis.compactable.set(row.type, { count: row.count, bytes: row.bytes });
      }
    }).deferred();
    return analysis;
  }

  /**
   * Deletes the analysed aggregate's doomed events in short IMMEDIATE transactions. Returns
   * false when the signal stopped it between two transactions.
   */
  deleteDoomed(agg: string, planned: number | null, totals: DeleteTotals, signal: AbortSignal | undefined, report: () => void): boolean {
    const s = this.stmt;
    let seq = planned;
    let after = 0;
    for (;;) {
      const page = s.doomedPage.all(after) as Array<{ rid: number; bytes: number }>;
      if (page.length === 0) return true;
      for (const { lo, hi } of rowidBatches(page, BATCH_BYTES)) {
        if (signal?.aborted) return false;
        let attempts = 0;
        for (;;) {
          const started = performance.now();
          const outcome = this.db.transaction((): 'moved' | Array<{ type: string; count: number; bytes: number }> => {
            if (((s.sequenceOf.get(agg) as number | undefined) ?? null) !== seq) return 'moved';
            s.invalidate.run({ agg, lo, hi });
            const figures = s.batchFigures.all({ agg, lo, hi }) as Array<{ type: string; count: number; bytes: number }>;
            const expected = figures.reduce((sum, f) => sum + f.count, 0);
            const changes = s.deleteBatch.run({ agg, lo, hi }).changes;
            // Both statements select the same rows under the same write lock.
            if (changes !== expected) throw new SkError('internal', `event compaction deleted ${changes} rows, expected ${expected}`);
            return figures;
          }).immediate();
          const elapsed = performance.now() - started;
          totals.transactions++;
          if (elapsed > totals.longestTransactionMs) totals.longestTransactionMs = elapsed;
          if (outcome !== 'moved') {
            for (const f of outcome) {
              addTo(totals.deleted, f.count, f.bytes);
              const byType = totals.byType.get(f.type) ?? { count: 0, bytes: 0 };
              addTo(byType, f.count, f.bytes);
              totals.byType.set(f.type, byType);
            }
            break;
          }
          // OpenCode wrote to this aggregate since the analysis: set aside what it touched.
          if (++attempts > RESYNC_ATTEMPTS) {
            // Still moving: the rest of this aggregate waits for the next run.
            s.markAllChanged.run();
            return true;
          }
          seq = this.resync(agg, seq);
          if (signal?.aborted) return false;
        }
        report();
      }
      after = page[page.length - 1]?.rid ?? after;
    }
  }

  /** Marks the entities touched by events newer than `seq` as changed; returns the new seq. */
  private resync(agg: string, seq: number | null): number | null {
    const s = this.stmt;
    return this.db.transaction(() => {
      const now = (s.sequenceOf.get(agg) as number | undefined) ?? null;
      for (const row of s.newerEntities.all({ agg, seq: seq ?? -1, after: this.collectedMaxRowid }) as Array<{ kind: number; entity: string | null }>) {
        if (row.entity === null) s.markAllChanged.run();
        else s.markChanged.run(row.kind, row.entity);
      }
      return now;
    }).deferred();
  }

  /**
   * Finds the orphans' events: a range of the index per aggregate, or one scan of the table for
   * all of them where there is no index (a scan per aggregate would cost the table each time).
   */
  collectOrphans(ids: readonly string[]): void {
    this.db.transaction(() => {
      if (this.shape.indexed) for (const id of ids) this.stmt.collectOrphan.run(id);
      else this.stmt.collectOrphans.run(JSON.stringify(ids));
    }).deferred();
  }

  /** Deletes one orphan aggregate's events by rowid, each batch only while no session has that id. */
  deleteOrphan(agg: string, totals: DeleteTotals, signal: AbortSignal | undefined): boolean {
    const s = this.stmt;
    let after = 0;
    for (;;) {
      const page = s.orphanPage.all({ agg, after }) as Array<{ rid: number; bytes: number }>;
      if (page.length === 0) return true;
      for (const { lo, hi } of rowidBatches(page, BATCH_BYTES)) {
        if (signal?.aborted) return false;
        const started = performance.now();
        const figures = this.db.transaction((): ByteCount | null => {
          // A session restored under this id since the plan makes these events its own again.
          if ((s.sessionExists.get(agg) as number) > 0) return null;
          const f = s.orphanBatchFigures.get({ agg, lo, hi }) as ByteCount;
          s.deleteOrphanBatch.run({ agg, lo, hi });
          return f;
        }).immediate();
        const elapsed = performance.now() - started;
        totals.transactions++;
        if (elapsed > totals.longestTransactionMs) totals.longestTransactionMs = elapsed;
        if (figures === null) return true;
        addTo(totals.orphans, figures.count, figures.bytes);
      }
      after = page[page.length - 1]?.rid ?? after;
    }
  }
}

/** A page of rows cut into rowid ranges of at most `limit` payload bytes (a larger row alone). */
function rowidBatches(page: ReadonlyArray<{ rid: number; bytes: number }>, limit: number): Array<{ lo: number; hi: number }> {
  const batches: Array<{ lo: number; hi: number }> = [];
  let start = 0;
  while (start < page.length) {
    let end = start;
    let bytes = 0;
    while (end < page.length && (end === start || bytes + (page[end]?.bytes ?? 0) <= limit)) {
      bytes += page[end]?.bytes ?? 0;
      end++;
    }
    batches.push({ lo: page[start]?.rid ?? 0, hi: page[end - 1]?.rid ?? 0 });
    start = end;
  }
  return batches;
}

interface DeleteTotals {
  deleted: ByteCount;
  byType: Map<string, ByteCount>;
  orphans: ByteCount;
  transactions: number;
  longestTransactionMs: number;
}

function withCompactor<T>(open: OpenDatabase, options: PlanOptions, fn: (compactor: EventLogCompactor) => T): T {
  const maxCompareBytes = options.maxCompareBytes ?? Number.MAX_SAFE_INTEGER;
  if (!(maxCompareBytes >= 0)) throw new SkError('usage', `maxCompareBytes must be a non-negative number: ${maxCompareBytes}`);
  let compactor: EventLogCompactor | undefined;
  try {
    compactor = new EventLogCompactor(open, maxCompareBytes);
    return fn(compactor);
  } catch (error) {
    throw mapSqliteError(error, open.path);
  } finally {
    try {
      compactor?.dropTempTables();
    } catch {
      // the connection may be closing; TEMP tables go with it
    }
  }
}

/**
 * What compaction would do, per event type: counts and bytes, superseded and compactable
 * snapshots, the ones that stay and why, and orphans. Reads no payload into JavaScript; the
 * JSON work (ids, comparisons) runs inside SQLite. With OpenCode 1.18's index each aggregate is
 * an index range; without it, one pass over the table collects every snapshot's facts first.
 */
export function compactionPlan(open: OpenDatabase, options: PlanOptions = {}): CompactionPlan {
  return withCompactor(open, options, (c) => {
    const plan: CompactionPlan = {
      events: { count: 0, bytes: 0 },
      byType: [],
      superseded: { count: 0, bytes: 0 },
      compactable: { count: 0, bytes: 0 },
      kept: emptyKept(),
      orphans: { aggregates: 0, count: 0, bytes: 0 },
      foreign: { aggregates: 0, count: 0, bytes: 0 },
      freesBytes: 0,
      aggregates: 0,
      indexed: c.shape.indexed,
    };
    if (!c.shape.hasLog) return plan;
    const byType = new Map<string, EventTypeFigures>();
    for (const row of c.typeFigures()) {
      byType.set(row.type, { type: row.type, count: row.count, bytes: row.bytes, superseded: { count: 0, bytes: 0 }, compactable: { count: 0, bytes: 0 } });
      addTo(plan.events, row.count, row.bytes);
    }
    if (!c.shape.indexed) c.collectAll();
    const scanned = c.shape.indexed ? undefined : c.allAggregateFigures();
    for (const agg of c.aggregates()) {
      plan.aggregates++;
      if (agg.role === 'orphan' || agg.role === 'foreign') {
        const figures = scanned?.get(agg.id) ?? (scanned ? { count: 0, bytes: 0 } : c.aggregateFigures(agg.id));
        if (figures.count === 0) continue;
        const target = agg.role === 'orphan' ? plan.orphans : plan.foreign;
        target.aggregates++;
        addTo(target, figures.count, figures.bytes);
        continue;
      }
      const analysis = c.analyse(agg.id, agg.role);
      for (const [type, f] of analysis.superseded) {
        addTo(plan.superseded, f.count, f.bytes);
        const t = byType.get(type);
        if (t) addTo(t.superseded, f.count, f.bytes);
      }
      for (const [type, f] of analysis.compactable) {
        addTo(plan.compactable, f.count, f.bytes);
        const t = byType.get(type);
        if (t) addTo(t.compactable, f.count, f.bytes);
      }
      for (const [reason, f] of analysis.kept) addTo(plan.kept[reason], f.count, f.bytes);
    }
    plan.byType = [...byType.values()].sort((a, b) => b.bytes - a.bytes || a.type.localeCompare(b.type));
    plan.freesBytes = plan.compactable.bytes + (options.orphans ? plan.orphans.bytes : 0);
    return plan;
  });
}

/**
 * Deletes superseded snapshots per the rule above, one aggregate at a time, in short IMMEDIATE
 * transactions; with `orphans`, then the events of `ses_` aggregates whose session is gone.
 * foreign_keys stays on. Space is not reclaimed here: see `compactAndReclaim`.
 */
export function compactEvents(open: OpenDatabase, options: CompactOptions = {}): CompactionResult {
  if (open.db.readonly) throw new SkError('read-only', `${open.path} is open read-only; compaction needs the writer's connection`);
  return withCompactor(open, options, (c) => {
    const totals: DeleteTotals = { deleted: { count: 0, bytes: 0 }, byType: new Map(), orphans: { count: 0, bytes: 0 }, transactions: 0, longestTransactionMs: 0 };
    const kept = emptyKept();
    const orphansDeleted: AggregateFigures = { aggregates: 0, count: 0, bytes: 0 };
    const result = (aggregatesDone: number, aggregatesTotal: number, aborted: boolean): CompactionResult => ({
      deleted: totals.deleted,
      byType: [...totals.byType].map(([type, f]) => ({ type, ...f })).sort((a, b) => b.bytes - a.bytes),
      orphansDeleted: { ...orphansDeleted, count: totals.orphans.count, bytes: totals.orphans.bytes },
      kept,
      aggregatesDone,
      aggregatesTotal,
      transactions: totals.transactions,
      longestTransactionMs: Math.round(totals.longestTransactionMs * 10) / 10,
      aborted,
      indexed: c.shape.indexed,
    });
    if (!c.shape.hasLog) return result(0, 0, false);
    const total = c.aggregateCount();
    let done = 0;
    let phase: CompactionProgress['phase'] = 'snapshots';
    const report = (): void =>
      options.onProgress?.({ phase, aggregatesDone: done, aggregatesTotal: total, eventsDeleted: totals.deleted.count + totals.orphans.count, bytesDeleted: totals.deleted.bytes + totals.orphans.bytes });
    if (options.signal?.aborted) return result(0, total, true);
    if (!c.shape.indexed) c.collectAll();
    const orphanIds: string[] = [];
    for (const agg of c.aggregates()) {
      if (options.signal?.aborted) return result(done, total, true);
      if (agg.role === 'orphan') {
        if (options.orphans) orphanIds.push(agg.id);
      } else if (agg.role !== 'foreign') {
        const analysis = c.analyse(agg.id, agg.role);
        for (const [reason, f] of analysis.kept) addTo(kept[reason], f.count, f.bytes);
        if (analysis.compactable.size > 0) {
          const finished = c.deleteDoomed(agg.id, analysis.seq, totals, options.signal, report);
          const changed = c.changedFigures();
          addTo(kept.changed, changed.count, changed.bytes);
          if (!finished) return result(done, total, true);
        }
      }
      done++;
      report();
    }
    // Orphan ids are few (sessions deleted by older OpenCode's own path) and short strings.
    phase = 'orphans';
    if (orphanIds.length > 0) c.collectOrphans(orphanIds);
    for (const id of orphanIds) {
      const before = totals.orphans.count;
      if (!c.deleteOrphan(id, totals, options.signal)) return result(done, total, true);
      if (totals.orphans.count > before) orphansDeleted.aggregates++;
      report();
    }
    return result(done, total, false);
  });
}
