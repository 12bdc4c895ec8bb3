/**
 * Each session's bytes by kind (`SqliteReader.sessionSpace`, the browser's sorts behind the size
 * check's chart slices) on a generated file with both OpenCode layouts: per session they add up to
 * the chart's own attachments and event-log figures (`stats`), the event log matches SQL grouped
 * by aggregate_id, the answer is the same with and without the part index, and a memo of it is
 * not served once the file changed.
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionSpace } from '../../src/core/browse.js';
import { SqliteReader } from '../../src/store/sqlite/sqlite-reader.js';
import { generateFixture } from '../fixtures/generate.js';
import { tempDir } from '../helpers/env.js';

const MB = 1024 * 1024;
const dir = tempDir('sk-session-space-');
const db = join(dir, 'opencode.db');
let reader: SqliteReader;

beforeAll(() => {
  generateFixture({ path: db, targetBytes: 6 * MB, seed: 21, schema: '1.18', newerLayoutShare: 0.4, diffFiles: false });
  reader = SqliteReader.open(db, { indexDir: join(dir, 'index') });
});
afterAll(async () => {
  await reader.close();
});

const sum = (space: ReadonlyMap<string, SessionSpace>, kind: keyof SessionSpace): number => [...space.values()].reduce((n, s) => n + s[kind], 0);

describe('sessionSpace', () => {
  it('adds up, over the sessions, to the chart’s attachments and event log; events match SQL per session', async () => {
    const [space, stats] = await Promise.all([reader.sessionSpace(), reader.stats({ largest: 1 })]);
    const conn = new Database(db, { readonly: true });
    try {
      const sessions = conn.prepare('SELECT count(*) FROM session').pluck().get() as number;
      expect(space.size).toBe(sessions);
      // Both layouts hold attachments here, so both are counted.
      expect(conn.prepare("SELECT count(*) FROM session_message WHERE instr(data, '\"data:') > 0").pluck().get()).toBeGreaterThan(0);
      expect(sum(space, 'attachments')).toBe(stats.attachments.encodedBytes);
      expect(sum(space, 'events')).toBe(stats.tables.find((t) => t.name === 'event')?.payloadBytes);
      const events = conn.prepare('SELECT aggregate_id AS id, sum(length(CAST(data AS BLOB))) AS b FROM event GROUP BY aggregate_id').all() as { id: string; b: number }[];
      for (const e of events) if (space.has(e.id)) expect(space.get(e.id)!.events).toBe(e.b);
      for (const s of space.values()) expect(s.text).toBeGreaterThanOrEqual(0);
    } finally {
      conn.close();
    }
  });

  it('gives the same answer without the part index, and none remembered from before a change', async () => {
    const indexed = await reader.sessionSpace();
    const bare = SqliteReader.open(db, { indexDir: null });
    try {
      expect(await bare.sessionSpace()).toEqual(indexed);
    } finally {
      await bare.close();
    }
    // A session's text grows: the memo of the old file state is not served.
    const conn = new Database(db);
    const id = conn.prepare('SELECT session_id FROM part ORDER BY rowid LIMIT 1').pluck().get() as string;
    conn.prepare("UPDATE part SET data = json_set(data, '$.extra', ?) WHERE rowid = (SELECT min(rowid) FROM part)").run('x'.repeat(10_000));
    conn.close();
    const again = SqliteReader.open(db, { indexDir: join(dir, 'index') });
    try {
      const after = await again.sessionSpace();
      expect(after.get(id)!.text).toBeGreaterThanOrEqual(indexed.get(id)!.text + 10_000);
    } finally {
      await again.close();
    }
  });
});
