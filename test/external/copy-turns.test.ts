/**
 * A bulk copy from a file read synchronously still turns the event loop while it reads: without
 * turns, the COPYs in flight send nothing past what their socket took at once, so the server
 * waits for the reading and the reading then waits for the server.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateFixture } from '../fixtures/generate.js';
import { openReader, openWriter } from '../../src/store/open-store.js';
import { SERVER_EXPORT } from '../../src/store/reader.js';
import { isSyncIterable, type SessionItem, type SessionItems } from '../../src/store/session-items.js';
import { tempDir } from '../helpers/env.js';
import { freshDatabase, type FreshDatabase } from './servers.js';

const MB = 1024 * 1024;
const source = join(tempDir('sk-external-turns-'), 'opencode.db');

beforeAll(() => {
  generateFixture({ path: source, targetBytes: 3 * MB, seed: 5, events: false });
});

/** The items as they are read, each after a short spin: a slow synchronous read, noting the loop's turns seen. */
function* slowly(items: SessionItems, turns: () => number, seen: number[]): Generator<SessionItem> {
  if (!isSyncIterable(items)) throw new Error('the file is read synchronously');
  for (const item of items) {
    const until = performance.now() + 0.05;
    while (performance.now() < until);
    seen.push(turns());
    yield item;
  }
}

describe('postgres: a copy read synchronously', () => {
  let database: FreshDatabase;
  beforeAll(async () => {
    database = await freshDatabase('postgres');
  });
  afterAll(async () => {
    await database?.drop();
  });

  it('lets the event loop turn while the file is read, and still verifies every session', async () => {
    const reader = await openReader(source);
    const writer = await openWriter(database.url, { bulk: true });
    let turns = 0;
    const timer = setInterval(() => turns++, 1);
    const seen: number[] = [];
    try {
      const ids = await reader.allSessionIds();
      // As copySessions calls it: the server's sessions known beforehand, so no round trip per session.
      const result = await writer.importSessions(slowly(reader.exportSessions(ids, SERVER_EXPORT), () => turns, seen), { existing: 'replace', present: new Set() });
      expect(result.imported.map((s) => s.id).sort()).toEqual([...ids].sort());
      expect((await writer.sessionStates(ids)).size).toBe(ids.length);
    } finally {
      clearInterval(timer);
      await writer.close();
      await reader.close();
    }
    // Items of the first part of the file (fewer than two batches of a table) saw the loop turn.
    expect(seen.length).toBeGreaterThan(1000);
    expect(seen[1000]).toBeGreaterThan(seen[0] as number + 5);
  });
});
