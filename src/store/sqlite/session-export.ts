/**
 * Sessions out of OpenCode's file as a stream of items (archive, offload, migrate). Each session
 * is read inside one read transaction, so it is consistent however long the consumer takes;
 * rows come in keyset pages, their data as BLOBs, large values one at a time.
 */
import { SkError } from '../../core/errors.js';
import type { PartRecord, Row, SessionItem } from '../session-items.js';
import type { SqliteConnection } from './connection.js';
import { readDiffFile } from './diff-files.js';
import { messagesAfter, partsOfMessages, payloadOf, statement } from './rows.js';

const PAGE_ROWS = 200;
const INLINE_FETCH_BYTES = 256 * 1024;
const INLINE_TOTAL_BYTES = 8 * 1024 * 1024;

function* sessionItems(conn: SqliteConnection, sessionId: string): Generator<SessionItem> {
  const { db, schema } = conn;
  const session = statement(db, 'SELECT * FROM session WHERE id = ?').get(sessionId) as Row | undefined;
  if (!session) throw new SkError('not-found', `no session ${sessionId} in ${conn.path}`);
  const has = (table: string): boolean => schema.tables.has(table);
  const project = (statement(db, 'SELECT * FROM project WHERE id = ?').get(session['project_id']) as Row | undefined) ?? null;
  const todos = has('todo') ? (statement(db, 'SELECT * FROM todo WHERE session_id = ? ORDER BY position').all(sessionId) as Row[]) : [];
  const share = has('session_share') ? ((statement(db, 'SELECT * FROM session_share WHERE session_id = ?').get(sessionId) as Row | undefined) ?? null) : null;
  yield { kind: 'session', header: { session, project, todos, share, diff: readDiffFile(conn.path, sessionId) } };

  let after: [number, string] | null = null;
  for (;;) {
    const page = messagesAfter(conn, sessionId, after, PAGE_ROWS, INLINE_FETCH_BYTES);
    // One query for the parts of the whole page of messages; inline data stops after 8 MB.
    const partsByMessage = partsOfMessages(conn, page.map((m) => m.id), INLINE_FETCH_BYTES, INLINE_TOTAL_BYTES);
    for (const message of page) {
      const parts = partsByMessage.get(message.id) ?? [];
      yield {
        kind: 'message',
        message: { id: message.id, sessionId, timeCreated: message.timeCreated, timeUpdated: message.timeUpdated, data: payloadOf(conn, 'message', message, 'archive') },
        partTimes: parts.map((p) => [p.timeCreated, p.timeUpdated]),
      };
      for (const part of parts) {
        const data = payloadOf(conn, 'part', part, 'archive');
        const record: PartRecord = { id: part.id, sessionId, messageId: message.id, timeCreated: part.timeCreated, timeUpdated: part.timeUpdated, data };
        if (part.valid !== null) record.jsonValid = part.valid === 1;
        yield { kind: 'part', part: record };
      }
    }
    const last = page[page.length - 1];
    if (page.length < PAGE_ROWS || !last) break;
    after = [last.timeCreated, last.id];
  }
  yield { kind: 'end', sessionId };
}

/** The given sessions' items, one session after another. */
export function* exportSessions(conn: SqliteConnection, ids: readonly string[]): Generator<SessionItem> {
  for (const id of ids) {
    conn.db.exec('BEGIN');
    try {
      yield* sessionItems(conn, id);
    } finally {
      if (conn.db.inTransaction) conn.db.exec('COMMIT');
    }
  }
}
