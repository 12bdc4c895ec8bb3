/**
 * Change marks of sessions, for the mirror: a short string per session that changes whenever any
 * row it owns does (inserted, updated in place, deleted), read from counters and times alone. No
 * payload is read: per table, the rows' count, highest rowid, newest `time_updated`/`seq` and the
 * bytes of its `data` values, plus the session row's own times and title and its diff file's size
 * and mtime. An edit in place that keeps every time and size is not seen here (OpenCode's writes
 * always move `time_updated` and append an event); what must be exact (an eviction) compares digests. `session.time_updated`
 * alone is not enough: OpenCode updates parts and messages after the session row.
 */
import { createHash } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { SessionMark } from '../reader.js';
import type { SqliteConnection } from './connection.js';
import { statement } from './rows.js';


const quoted = (name: string): string => `"${name.replaceAll('"', '""')}"`;

/** Per table, what each session's rows add up to (the column that moves on an in-place update, when there is one). */
function tableFigures(conn: SqliteConnection, table: string, key: string, ids: readonly string[] | null): Map<string, string> {
  const columns = new Set(conn.db.prepare('SELECT name FROM pragma_table_info(?)').pluck().all(table) as string[]);
  const moving = ['time_updated', 'seq'].filter((c) => columns.has(c)).map((c) => `max(${quoted(c)})`);
  // Sizes from the record header (octet_length reads no payload): an in-place edit that changes a value's size moves the mark.
  if (columns.has('data')) moving.push('total(octet_length("data"))');
  const figures = ['count(*)', 'max(rowid)', ...moving].map((e) => `coalesce(${e}, '')`).join(" || ':' || ");
  const select = `SELECT ${quoted(key)} AS id, ${figures} AS f FROM ${quoted(table)}`;
  const out = new Map<string, string>();
  const rows = ids
    ? ids.map((id) => ({ id, f: statement(conn.db, `${select} WHERE ${quoted(key)} = ? GROUP BY ${quoted(key)}`).get(id) as { id: string | null; f: string | null } | undefined }))
        .filter((r) => r.f?.f != null)
        .map((r) => ({ id: r.id, f: r.f?.f as string }))
    : (statement(conn.db, `${select} GROUP BY ${quoted(key)}`).all() as { id: string; f: string }[]);
  for (const r of rows) out.set(r.id, r.f);
  return out;
}

/** Size and mtime of each session's diff file (`storage/session_diff/<id>.json`), read from one directory listing. */
function diffFigures(dbPath: string, ids: readonly string[] | null): Map<string, string> {
  const dir = join(dirname(dbPath), 'storage', 'session_diff');
  const out = new Map<string, string>();
  let names: string[];
  try {
    names = ids ? ids.map((id) => `${id}.json`) : readdirSync(dir).filter((n) => n.endsWith('.json'));
  } catch {
    return out;
  }
  for (const name of names) {
    try {
      const st = statSync(join(dir, name));
      out.set(name.slice(0, -'.json'.length), `${st.size}:${st.mtimeMs}`);
    } catch {
      // no diff file for this session
    }
  }
  return out;
}

/** Marks of every session (`ids` null) or of the given ones (those that exist). */
export function sessionMarks(conn: SqliteConnection, ids: readonly string[] | null = null): Map<string, SessionMark> {
  const sessionSql = 'SELECT id, time_updated AS updated, time_archived AS archived, title FROM session';
  const sessions = ids
    ? ids.map((id) => statement(conn.db, `${sessionSql} WHERE id = ?`).get(id) as { id: string; updated: number; archived: number | null; title: string } | undefined).filter((r) => r !== undefined)
    : (statement(conn.db, sessionSql).all() as { id: string; updated: number; archived: number | null; title: string }[]);
  // A table with no index on its session key (the event log before 1.18) would cost a full scan per session: its
  // appends still move the mark through event_sequence, but a compaction of it alone does not.
  const tables = conn.schema.sessionTables.tables.filter((t) => t.indexed).map((t) => ({ name: t.table, figures: tableFigures(conn, t.table, t.key, ids) }));
  const diffs = diffFigures(conn.path, ids);
  const marks = new Map<string, SessionMark>();
  for (const s of sessions) {
    const hash = createHash('sha256').update(`${s.updated}\0${s.archived ?? ''}\0${s.title}`);
    for (const t of tables) hash.update(`\0${t.name}=${t.figures.get(s.id) ?? ''}`);
    hash.update(`\0diff=${diffs.get(s.id) ?? ''}`);
    marks.set(s.id, { updated: Number(s.updated), mark: hash.digest('hex').slice(0, 32) });
  }
  return marks;
}
