/**
 * Whether a session, message or part id is in any OpenCode database of the data folder:
 * `opencode.db` and the other release channels' `opencode-<channel>.db`, which share the one
 * `storage/` folder. Lookups are by primary key, one id at a time.
 */
import { dirname, join, resolve } from 'node:path';
import type { Statement } from 'better-sqlite3';
import { openConnection, type Connection, type SqliteConnection } from '../connection.js';
import { folderEntries } from './walk.js';

/** `opencode.db`, `opencode-beta.db`, ...: the databases OpenCode names in its data folder. */
export const OPENCODE_DB_NAME = /^opencode(-[A-Za-z0-9._-]+)?\.db$/;

interface Lookups {
  session: Statement;
  message: Statement[];
  part: Statement | null;
}

function lookups(db: Connection, tables: Set<string>): Lookups {
  const message = [db.prepare('SELECT 1 FROM message WHERE id = ? AND session_id = ?').pluck()];
  // OpenCode 2.x moves 1.x messages into session_message with their ids.
  if (tables.has('session_message')) message.push(db.prepare('SELECT 1 FROM session_message WHERE id = ? AND session_id = ?').pluck());
  return {
    session: db.prepare('SELECT 1 FROM session WHERE id = ?').pluck(),
    message,
    part: tables.has('part') ? db.prepare('SELECT 1 FROM part WHERE id = ?').pluck() : null,
  };
}

export class SessionPresence {
  private readonly sources: Lookups[];
  private readonly owned: SqliteConnection[];
  /** The other databases that were found (and could be read). */
  readonly databases: string[];

  private constructor(sources: Lookups[], owned: SqliteConnection[], databases: string[]) {
    this.sources = sources;
    this.owned = owned;
    this.databases = databases;
  }

  /** `main` is the database being worked on; the folder's other OpenCode databases are opened read-only. */
  static open(main: SqliteConnection): SessionPresence {
    const folder = dirname(main.path);
    const sources = [lookups(main.db, main.schema.tables)];
    const owned: SqliteConnection[] = [];
    const databases: string[] = [];
    for (const name of folderEntries(folder)) {
      if (!OPENCODE_DB_NAME.test(name) || resolve(folder, name) === resolve(main.path)) continue;
      try {
        const conn = openConnection(join(folder, name), { readonly: true });
        owned.push(conn);
        sources.push(lookups(conn.db, conn.schema.tables));
        databases.push(conn.path);
      } catch {
        // not an OpenCode database we can read: it holds none of these ids as far as we can tell
      }
    }
    return new SessionPresence(sources, owned, databases);
  }

  hasSession(id: string): boolean {
    return this.sources.some((s) => s.session.get(id) !== undefined);
  }

  hasMessage(id: string, sessionId: string): boolean {
    return this.sources.some((s) => s.message.some((m) => m.get(id, sessionId) !== undefined));
  }

  hasPart(id: string): boolean {
    return this.sources.some((s) => s.part?.get(id) !== undefined);
  }

  close(): void {
    for (const conn of this.owned) conn.db.close();
  }
}

