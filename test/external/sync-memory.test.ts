/**
 * The mirror's first sync as a whole process under a memory cap: a 100 MB file with a 24 MB PDF
 * (the bench's file) into a fresh PostgreSQL database by `sync --once`, under 300 MB
 * (RLIMIT_DATA, see test/helpers/memory-limit.ts) and a 64 MB V8 heap, then equal to the file.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateFixture } from '../fixtures/generate.js';
import { CLI, tempDir } from '../helpers/env.js';
import { runUnderMemoryLimit } from '../helpers/memory-limit.js';
import { freshDatabase, serverQuery, type FreshDatabase } from './servers.js';

const MB = 1024 * 1024;
const dir = tempDir('sk-sync-memory-');
const db = join(dir, 'opencode.db');
let server: FreshDatabase;

beforeAll(async () => {
  generateFixture({ path: db, targetBytes: 100 * MB, seed: 1, hugeAttachmentBytes: 24 * MB });
  server = await freshDatabase('postgres');
}, 300_000);
afterAll(async () => server?.drop());

describe.runIf(process.platform === 'linux')('the first sync under a memory cap', () => {
  it('mirrors a 100 MB file with a 24 MB PDF under 300 MB and a 64 MB heap', async () => {
    const run = runUnderMemoryLimit(process.execPath, [CLI, '--db', db, '--json', 'sync', '--to', server.url, '--once'], {
      rssBytes: 300 * MB,
      heapMB: 64,
      env: { ...process.env, XDG_CACHE_HOME: join(dir, 'cache') },
    });
    expect(run.withinLimit, `status ${run.status}, peak ${Math.round((run.peakRssBytes ?? 0) / MB)} MB: ${run.stderr.trim().split('\n').slice(-3).join(' | ')}`).toBe(true);
    console.log(`first sync: ${Math.round((run.peakRssBytes ?? 0) / MB)} MB peak RSS`);
    const summary = JSON.parse(run.stdout) as { written: number; status: { pending: number; sessions: number } };
    expect(summary.status.pending).toBe(0);
    expect(summary.written).toBe(summary.status.sessions);
    const [complete] = await serverQuery<{ n: string | number }>(server.url, 'SELECT count(*) AS n FROM sk_session WHERE complete = 1');
    expect(Number(complete?.n)).toBe(summary.status.sessions);
  }, 600_000);
});
