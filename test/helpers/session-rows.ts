/** A session's rows in a SQLite file as one comparable string: every column, BLOBs apart from TEXT. */
import type Database from 'better-sqlite3';

export function sessionRowsText(conn: Database.Database, id: string): string {
  const value = (v: unknown): unknown => (Buffer.isBuffer(v) ? `blob:${v.toString('hex')}` : v);
  const all = (query: string): unknown[] => (conn.prepare(query).all(id) as Record<string, unknown>[]).map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, value(v)])));
  return JSON.stringify({
    session: all('SELECT * FROM session WHERE id = ?'),
    message: all('SELECT * FROM message WHERE session_id = ? ORDER BY id'),
    part: all('SELECT * FROM part WHERE session_id = ? ORDER BY id'),
  });
}
