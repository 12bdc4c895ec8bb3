/**
 * Sessions out of a file whose event log has no index on its session key (OpenCode before 1.18):
 * exported together they are read in batches sharing a transaction, the event table scanned once
 * per batch; every item must be what exporting each session alone gives, large events included.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SERVER_EXPORT } from '../../src/store/reader.js';
import { SqliteReader } from '../../src/store/sqlite/sqlite-reader.js';
import { wholePayload, type SessionItem } from '../../src/store/session-items.js';
import { ChunkedValue } from '../../src/core/table-row.js';
import { generateFixture } from '../fixtures/generate.js';
import { tempDir } from '../helpers/env.js';

const MB = 1024 * 1024;

/** Every item as text: ids, times, the sha256 of every value (chunked ones gathered), in order. */
function itemsText(items: Iterable<SessionItem>): string[] {
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  const value = (v: unknown): unknown => (Buffer.isBuffer(v) ? sha(v) : v instanceof ChunkedValue ? `chunked:${sha(wholePayload(v))}` : v && typeof v === 'object' && 'bytes' in v ? `blob:${sha((v as { bytes: Buffer }).bytes)}` : v);
  const out: string[] = [];
  for (const item of items) {
    if (item.kind === 'session') out.push(`s ${JSON.stringify(item.header.session)}`);
    else if (item.kind === 'message') out.push(`m ${item.message.id} ${sha(wholePayload(item.message.data))}`);
    else if (item.kind === 'part') out.push(`p ${item.part.id} ${sha(wholePayload(item.part.data))}`);
    else if (item.kind === 'rows') for (const row of item.rows) out.push(`r ${item.table} ${JSON.stringify(Object.entries(row).map(([k, v]) => [k, value(v)]))}`);
    else out.push(`e ${item.sessionId} ${JSON.stringify(item.counts)}`);
  }
  return out;
}

describe('exporting sessions whose event log has no session index', () => {
  it('gives exactly what exporting each alone gives, in the order asked', () => {
    const db = join(tempDir('sk-export-batches-'), 'opencode.db');
    generateFixture({ path: db, targetBytes: 3 * MB, seed: 61, rootSessions: 40 });
    const file = new Database(db);
    expect(file.prepare("SELECT count(*) FROM pragma_index_list('event') l JOIN pragma_index_info(l.name) i WHERE i.seqno = 0 AND i.name = 'aggregate_id'").pluck().get()).toBe(0);
    // One event large enough to be handed on in chunks.
    const big = file.prepare('SELECT aggregate_id FROM event ORDER BY rowid LIMIT 1').pluck().get() as string;
    file.prepare("UPDATE event SET data = json_object('pad', ?) WHERE rowid = (SELECT min(rowid) FROM event WHERE aggregate_id = ?)").run('x'.repeat(9 * MB), big);
    file.close();
    const reader = SqliteReader.open(db, { indexDir: null });
    try {
      const look = new Database(db, { readonly: true });
      const ids = look.prepare('SELECT id FROM session ORDER BY time_updated DESC, id').pluck().all() as string[];
      look.close();
      expect(ids.length).toBeGreaterThan(40);
      const together = itemsText(reader.exportSessions(ids));
      const alone = ids.flatMap((id) => itemsText(reader.exportSessions([id])));
      expect(together).toEqual(alone);
      expect(together.filter((l) => l.startsWith('r event')).length).toBeGreaterThan(100);
      expect(together.some((l) => l.includes('chunked:'))).toBe(true);
      // For a server, the same values without SQLite's json_valid of each (the archive's flags are there otherwise).
      const flagged = (items: Iterable<SessionItem>): number => {
        let n = 0;
        for (const item of items) {
          if (item.kind === 'message' && item.message.jsonValid !== undefined) n++;
          else if (item.kind === 'part' && item.part.jsonValid !== undefined) n++;
          else if (item.kind === 'rows') n += (item.jsonValid ?? []).filter((v) => v !== undefined).length;
        }
        return n;
      };
      expect(flagged(reader.exportSessions(ids))).toBeGreaterThan(1000);
      expect(flagged(reader.exportSessions(ids, SERVER_EXPORT))).toBe(0);
      expect(itemsText(reader.exportSessions(ids, SERVER_EXPORT))).toEqual(together);
    } finally {
      void reader.close();
    }
  });
});
