/** What tests compare of an OpenCode file: its session ids, a session's rows as one string. */
import Database from 'better-sqlite3';

/** Every session id in the file. */
export function sessionIds(db: string): Set<string> {
  const conn = new Database(db, { readonly: true });
  try {
    return new Set((conn.prepare('SELECT id FROM session').all() as { id: string }[]).map((r) => r.id));
  } finally {
    conn.close();
  }
}

/** A session's rows as one comparable string: every column, BLOBs apart from TEXT. */
export function sessionRowsText(conn: Database.Database, id: string): string {
  const value = (v: unknown): unknown => (Buffer.isBuffer(v) ? `blob:${v.toString('hex')}` : v);
  const all = (query: string): unknown[] => (conn.prepare(query).all(id) as Record<string, unknown>[]).map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, value(v)])));
  return JSON.stringify({
    session: all('SELECT * FROM session WHERE id = ?'),
    message: all('SELECT * FROM message WHERE session_id = ? ORDER BY id'),
    part: all('SELECT * FROM part WHERE session_id = ? ORDER BY id'),
  });
}
