/**
 * Which rows belong to a session, as this database itself says: every table whose foreign keys
 * cascade from `session` (directly or through another such table), plus the event log keyed by
 * aggregate id. Deleting a session removes exactly these rows, so an archive carries exactly
 * these rows; a cascading table this build does not know makes every delete refuse.
 */
import type Database from 'better-sqlite3';

/** A better-sqlite3 connection (named here, not imported from connection.ts, which builds on this file). */
type Connection = Database.Database;

/** How rows of a table are found for one session. */
export interface SessionTable {
  table: string;
  /** The column holding the session id. */
  key: string;
  /**
   * `content`: message/part, archived as the export's messages; `header`: small rows archived
   * beside the session row (todos, the share); `rows`: archived as they are, column by column.
   */
  role: 'content' | 'header' | 'rows';
  /** Removed by the session row's own cascade (otherwise deleted explicitly, by key). */
  cascades: boolean;
  /** An index leads with `key`: rows of one session are found without scanning the table. */
  indexed: boolean;
}

/**
 * Tables of OpenCode's that hold session rows, in the order a restore inserts them (parents
 * before children: `event` references `event_sequence`).
 */
const KNOWN: readonly Omit<SessionTable, 'cascades' | 'indexed'>[] = [
  { table: 'message', key: 'session_id', role: 'content' },
  { table: 'part', key: 'session_id', role: 'content' },
  { table: 'todo', key: 'session_id', role: 'header' },
  { table: 'session_share', key: 'session_id', role: 'header' },
  { table: 'session_message', key: 'session_id', role: 'rows' },
  { table: 'session_input', key: 'session_id', role: 'rows' },
  { table: 'session_context_epoch', key: 'session_id', role: 'rows' },
  { table: 'event_sequence', key: 'aggregate_id', role: 'rows' },
  { table: 'event', key: 'aggregate_id', role: 'rows' },
];

/** Tables that hold the session rows themselves (2.x keeps new sessions in `session_v2`). */
export const SESSION_ROW_TABLES = ['session', 'session_v2'] as const;

export interface SessionTables {
  /** Known tables present in this database, in restore order. */
  tables: SessionTable[];
  /** Tables whose foreign keys reach a session table that this build does not archive. */
  unknown: string[];
}

interface ForeignKey {
  table: string;
  on_delete: string;
}

/** Reads the foreign keys of every table and finds what hangs off the session tables. */
export function sessionTables(db: Connection, present: ReadonlySet<string>): SessionTables {
  const parents = new Map<string, ForeignKey[]>();
  for (const table of present) {
    if (table.startsWith('sqlite_')) continue;
    const keys = db.prepare('SELECT "table", on_delete FROM pragma_foreign_key_list(?)').all(table) as ForeignKey[];
    parents.set(table, keys);
  }
  // Every table that reaches a session table through foreign keys, and whether all of its
  // links there cascade (a RESTRICT or SET NULL link would fail the delete or change other rows).
  const reaching = new Map<string, boolean>();
  const roots = new Set<string>(SESSION_ROW_TABLES.filter((t) => present.has(t)));
  for (let changed = true; changed; ) {
    changed = false;
    for (const [table, keys] of parents) {
      if (roots.has(table)) continue;
      const links = keys.filter((k) => roots.has(k.table) || reaching.has(k.table));
      if (links.length === 0) continue;
      const cascades = links.every((k) => k.on_delete.toUpperCase() === 'CASCADE' && (roots.has(k.table) || reaching.get(k.table) === true));
      if (reaching.get(table) !== cascades) {
        reaching.set(table, cascades);
        changed = true;
      }
    }
  }
  const known = new Set(KNOWN.map((k) => k.table));
  const tables = KNOWN.filter((k) => present.has(k.table)).map((k) => ({ ...k, cascades: reaching.get(k.table) === true, indexed: leadsAnIndex(db, k.table, k.key) }));
  const unknown = [...reaching.keys()].filter((t) => !known.has(t)).sort();
  // A known table tied to a session without a cascade is as unsafe as an unknown one.
  for (const [table, cascades] of reaching) if (known.has(table) && !cascades) unknown.push(`${table} (not ON DELETE CASCADE)`);
  return { tables, unknown };
}

/** True when some index of `table` (or its primary key) starts with `column`. */
function leadsAnIndex(db: Connection, table: string, column: string): boolean {
  const indexes = db.prepare('SELECT name FROM pragma_index_list(?)').pluck().all(table) as string[];
  return indexes.some((name) => (db.prepare('SELECT name FROM pragma_index_info(?) WHERE seqno = 0').pluck().get(name) as string | undefined) === column);
}
