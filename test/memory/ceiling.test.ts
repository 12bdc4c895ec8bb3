/**
 * The memory ceiling, as a test: a 600 MB database holding one 300 MB PDF is browsed page by page
 * and every attachment extracted, in a child process with a 64 MB V8 heap. A naive loader (the
 * whole part table into memory, as OpenCode's export does) dies under the same flag.
 */
import Database from 'better-sqlite3';
import { execSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateFixture, type FixtureSummary } from '../fixtures/generate.js';
import { ROOT, tempDir } from '../helpers/env.js';

const MB = 1024 * 1024;
const HEAP_FLAG = '--max-old-space-size=64';
const dir = tempDir('sk-memory-');
const dbPath = join(dir, 'opencode.db');
let fixture: FixtureSummary;

beforeAll(() => {
  fixture = generateFixture({ path: dbPath, targetBytes: 600 * MB, hugeAttachmentBytes: 300 * MB, seed: 11 });
});

/** sha256 of one part's data URL payload, by the sqlite3 CLI and coreutils: no code of ours. */
function peerSha256(partId: string): string {
  const sql = `SELECT substr(json_extract(data, '$.url'), instr(json_extract(data, '$.url'), ',') + 1) FROM part WHERE id = '${partId}'`;
  return execSync(`sqlite3 ${JSON.stringify(dbPath)} ${JSON.stringify(sql)} | base64 -d | sha256sum`, {
    encoding: 'utf8',
    maxBuffer: 1024,
  }).split(' ')[0] as string;
}

describe('memory ceiling (--max-old-space-size=64)', () => {
  it('browses every session and extracts every attachment of a 600 MB database with a 300 MB PDF', () => {
    expect(fixture.hugePartId).toBeDefined();
    const run = spawnSync(process.execPath, [HEAP_FLAG, join(ROOT, 'test', 'memory', 'browse-all.mjs'), dbPath, join(dir, 'cache')], {
      encoding: 'utf8',
      maxBuffer: 64 * MB,
    });
    expect(run.stderr).not.toMatch(/heap out of memory/);
    expect(run.signal).toBeNull();
    expect(run.status).toBe(0);
    const summary = JSON.parse(run.stdout.trim().split('\n').pop() as string) as {
      sessions: number; messages: number; parts: number; attachments: number; attachmentBytes: number;
      hashes: Record<string, string>; mainHeapPeak: number; workerHeapPeak: number;
    };
    const db = new Database(dbPath, { readonly: true });
    const count = (sql: string): number => db.prepare(sql).pluck().get() as number;
    expect(summary.sessions).toBe(count('SELECT count(*) FROM session'));
    expect(summary.messages).toBe(count('SELECT count(*) FROM message'));
    expect(summary.parts).toBe(count('SELECT count(*) FROM part'));
    db.close();
    expect(summary.attachments).toBe(fixture.attachments.count);
    expect(summary.attachmentBytes).toBe(fixture.attachments.bytes);
    const huge = fixture.hugePartId as string;
    expect(summary.hashes[huge]).toBe(peerSha256(huge));
    // Both heaps stay far below the payload they moved.
    expect(summary.mainHeapPeak).toBeLessThan(64 * MB);
    expect(summary.workerHeapPeak).toBeLessThan(64 * MB);
  }, 300_000);

  it('the naive loader dies under the same flag on the same database', () => {
    const run = spawnSync(process.execPath, [HEAP_FLAG, join(ROOT, 'test', 'memory', 'naive-loader.mjs'), dbPath], {
      encoding: 'utf8',
    });
    expect(run.status === 0 && run.signal === null).toBe(false);
    expect(`${run.stderr}`).toMatch(/heap out of memory|Invalid string length|ERR_STRING_TOO_LONG/);
  }, 300_000);
});
