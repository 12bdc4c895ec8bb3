/**
 * Archiving sessions of a file whose event log has no index on aggregate_id (OpenCode before
 * 1.18): the log is read once per export through a rowid map in the temp schema, and the archive
 * is byte for byte the one the per-session query writes on the same file with an index. A commit
 * by another connection between two sessions (rows appended, a deleted rowid reused) is seen.
 */
import Database from 'better-sqlite3';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { archiveSessions } from '../../src/main/archives.js';
import { openFileReader } from '../../src/store/open-store.js';
import type { Row, SessionItem } from '../../src/store/session-items.js';
import { emptyOpenCodeDb, insertMessage, insertSession, tempDir } from '../helpers/env.js';

const dir = tempDir('sk-archive-event-log-');
const unindexed = join(dir, 'unindexed.db');
const indexed = join(dir, 'indexed.db');
const SESSIONS = ['ses_a', 'ses_b', 'ses_c'];

beforeAll(() => {
  const db = emptyOpenCodeDb(unindexed);
  SESSIONS.forEach((id, i) => {
    insertSession(db, id, i + 1, i + 1);
    insertMessage(db, `msg_${id}`, id, i + 1);
    db.prepare('INSERT INTO event_sequence (aggregate_id, seq) VALUES (?, 0)').run(id);
  });
  // Interleaved, with ids out of rowid order: an archive lists each session's events by rowid.
  const event = db.prepare('INSERT INTO event (id, aggregate_id, seq, type, data) VALUES (?, ?, ?, ?, ?)');
  for (let n = 0; n < 60; n++) event.run(`evt_${String(1000 - n)}`, SESSIONS[n % 3], n, 'message.updated.1', JSON.stringify({ n }));
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  copyFileSync(unindexed, indexed);
  const other = new Database(indexed);
  other.exec('CREATE UNIQUE INDEX event_aggregate_seq_idx ON event (aggregate_id, seq)');
  other.close();
});

/** Each session's event rows as an export hands them on: ids in order. */
function eventIds(items: Iterable<SessionItem>, between?: (sessionId: string) => void): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const item of items) {
    if (item.kind === 'rows' && item.table === 'event') {
      for (const row of item.rows as Row[]) {
        const aggregate = String(row['aggregate_id']);
        found.set(aggregate, [...(found.get(aggregate) ?? []), Buffer.from(row['id'] as Buffer).toString()]);
      }
    }
    if (item.kind === 'end') between?.(item.sessionId);
  }
  return found;
}

describe('archiving an event log without an aggregate index', () => {
  it('writes the archive the indexed per-session query writes, byte for byte', async () => {
    const a = join(dir, 'unindexed.json');
    const b = join(dir, 'indexed.json');
    await archiveSessions({ db: unindexed, output: a, cacheDir: join(dir, 'cache') });
    await archiveSessions({ db: indexed, output: b, cacheDir: join(dir, 'cache') });
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
    expect(readFileSync(a, 'utf8')).toContain('evt_1000');
  });

  it('leaves nothing in OpenCode file and drops its temp table', () => {
    const reader = openFileReader(unindexed);
    const ids = eventIds(reader.exportSessions(SESSIONS) as Iterable<SessionItem>);
    expect(ids.get('ses_a')).toHaveLength(20);
    const db = new Database(unindexed, { readonly: true });
    expect(db.prepare("SELECT count(*) FROM sqlite_master WHERE name LIKE 'sk_%'").pluck().get()).toBe(0);
    db.close();
    void reader.close();
  });

  it('sees rows another connection commits between two sessions, a reused rowid included', () => {
    const work = join(dir, 'busy.db');
    copyFileSync(unindexed, work);
    const reader = openFileReader(work);
    const writer = new Database(work);
    const ids = eventIds(reader.exportSessions(SESSIONS) as Iterable<SessionItem>, (done) => {
      if (done !== 'ses_a') return;
      // The newest row (ses_c's) goes; SQLite gives its rowid to the next row, here ses_b's.
      const top = writer.prepare('SELECT rowid, aggregate_id FROM event ORDER BY rowid DESC LIMIT 1').get() as { rowid: number; aggregate_id: string };
      expect(top.aggregate_id).toBe('ses_c');
      writer.prepare('DELETE FROM event WHERE rowid = ?').run(top.rowid);
      const { lastInsertRowid } = writer.prepare("INSERT INTO event (id, aggregate_id, seq, type, data) VALUES ('evt_new_b', 'ses_b', 100, 'x', '{}')").run();
      expect(Number(lastInsertRowid)).toBe(top.rowid);
      writer.prepare("INSERT INTO event (id, aggregate_id, seq, type, data) VALUES ('evt_new_c', 'ses_c', 101, 'x', '{}')").run();
    });
    writer.close();
    void reader.close();
    expect(ids.get('ses_a')).toHaveLength(20);
    expect(ids.get('ses_b')).toHaveLength(21);
    expect(ids.get('ses_b')?.at(-1)).toBe('evt_new_b');
    expect(ids.get('ses_c')).toHaveLength(20);
    expect(ids.get('ses_c')?.at(-1)).toBe('evt_new_c');
    expect(ids.get('ses_c')).not.toContain('evt_941');
  });
});
