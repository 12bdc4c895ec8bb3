/**
 * The event-heavy fixture generator: deterministic, sized by its target, and what its manifest
 * says is in the database.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateEventLog } from '../fixtures/event-log.js';
import { tempDir } from '../helpers/env.js';

const MB = 1024 * 1024;
const dir = tempDir('sk-event-log-fixture-');

function digest(path: string): string {
  const db = new Database(path, { readonly: true });
  const hash = createHash('sha256');
  for (const sql of ['SELECT * FROM event ORDER BY rowid', 'SELECT * FROM event_sequence ORDER BY aggregate_id', 'SELECT * FROM session ORDER BY id', 'SELECT * FROM message ORDER BY id', 'SELECT * FROM part ORDER BY id']) {
    for (const row of db.prepare(sql).raw().iterate() as IterableIterator<unknown[]>) hash.update(JSON.stringify(row)).update('\n');
  }
  db.close();
  return hash.digest('hex');
}

describe('event-log fixture generator', () => {
  const options = { targetBytes: 4 * MB, snapshots: [5, 30] as const, maxAttachmentBytes: 64 * 1024 };

  it('writes the same rows for the same options and seed, other rows for another seed', () => {
    const a = generateEventLog({ ...options, path: join(dir, 'a.db'), seed: 3 });
    const b = generateEventLog({ ...options, path: join(dir, 'b.db'), seed: 3 });
    const c = generateEventLog({ ...options, path: join(dir, 'c.db'), seed: 4 });
    expect(digest(a.path)).toBe(digest(b.path));
    expect(digest(c.path)).not.toBe(digest(a.path));
    expect({ ...a, path: '' }).toEqual({ ...b, path: '' });
  });

  it('lands near its target and counts what it wrote', () => {
    const manifest = generateEventLog({ ...options, path: join(dir, 'd.db'), seed: 5, targetBytes: 8 * MB });
    const db = new Database(manifest.path, { readonly: true });
    const count = (sql: string): number => db.prepare(sql).pluck().get() as number;
    expect(count('SELECT count(*) FROM event')).toBe(manifest.events);
    expect(count('SELECT count(*) FROM session')).toBe(manifest.sessions);
    expect(count('SELECT count(*) FROM message')).toBe(manifest.messages);
    expect(count('SELECT count(*) FROM part')).toBe(manifest.parts);
    const payload = count('SELECT sum(length(CAST(data AS BLOB))) FROM event') + count('SELECT sum(length(CAST(data AS BLOB))) FROM part');
    expect(payload).toBeGreaterThan(8 * MB * 0.7);
    expect(payload).toBeLessThan(8 * MB * 2);
    // The streamed entities have many snapshots, as the reports show.
    expect(count("SELECT max(n) FROM (SELECT count(*) AS n FROM event WHERE type = 'message.part.updated.1' GROUP BY aggregate_id, data ->> '$.part.id')")).toBeGreaterThanOrEqual(5);
    for (const type of manifest.unknownTypes.filter((t) => t !== 'workspace.synced.1')) expect(count(`SELECT count(*) FROM event WHERE type = '${type}'`), type).toBeGreaterThan(0);
    expect(count("SELECT count(*) FROM event WHERE data LIKE '%;base64,%' AND type = 'message.part.updated.1'")).toBeGreaterThan(0);
    db.close();
  });
});
