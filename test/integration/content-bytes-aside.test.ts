/**
 * A copy's progress total summed on a thread of its own (store/sqlite/content-bytes.ts) is the
 * figure the reader's own connection gives, for some sessions and for all. Runs the compiled
 * build (`dist/`): the thread's file is JavaScript.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { contentBytesAside } from '../../dist/store/sqlite/content-bytes.js';
import { openFileReader } from '../../dist/store/open-store.js';
import { generateFixture } from '../fixtures/generate.js';
import { tempDir } from '../helpers/env.js';

const dir = tempDir('sk-content-bytes-');
const db = join(dir, 'opencode.db');
let ids: string[] = [];

beforeAll(() => {
  generateFixture({ path: db, targetBytes: 4 * 1024 * 1024, rootSessions: 12, seed: 3, events: false });
  ids = execFileSync('sqlite3', [db, 'SELECT id FROM session ORDER BY id'], { encoding: 'utf8' }).trim().split('\n');
}, 60_000);

describe('content bytes on a thread of its own', () => {
  it('gives what the reader sums itself, for some sessions and for all', async () => {
    const reader = openFileReader(db);
    try {
      const some = ids.filter((_, i) => i % 3 === 0);
      for (const scope of [some, ids]) {
        const aside = contentBytesAside({ path: db, ids: scope });
        expect(aside).not.toBeNull();
        const here = await reader.contentBytes(scope);
        expect(here).toBeGreaterThan(0);
        expect(await aside).toBe(here);
        expect(await reader.contentBytesAside?.(scope)).toBe(here);
      }
      expect(await contentBytesAside({ path: db, ids: null })).toBe(await reader.contentBytes());
      expect(await contentBytesAside({ path: db, ids: some })).toBeLessThan(await reader.contentBytes(ids));
    } finally {
      await reader.close();
    }
  });

  it('rejects when the thread cannot read the file (the reader then sums on its own connection)', async () => {
    await expect(contentBytesAside({ path: join(dir, 'absent.db'), ids: null })).rejects.toThrow();
  });
});
