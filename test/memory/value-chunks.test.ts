/**
 * The whole process, not only the V8 heap: a part holding a 300 MiB PDF (400 MiB of JSON) is
 * extracted in a child process with a 64 MB heap AND a 200 MB cap on its memory (RLIMIT_DATA;
 * see test/helpers/memory-limit.ts), through sk_chunks. The whole-value paths (the store's
 * current extractAttachment, and valueChunks without the extension) fail under the same cap,
 * and go far over it when nothing stops them. The file's sha256 is the sqlite3 CLI's.
 */
import { execSync } from 'node:child_process';
import { existsSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { createHugePartDatabase, type HugePartDatabase } from '../fixtures/huge-part.js';
import { VALUE_CHUNKS_LIBRARY } from '../../src/store/sqlite/value-chunks.js';
import { ROOT, tempDir } from '../helpers/env.js';
import { memoryEnforcement, runUnderMemoryLimit, type MemoryLimitedRun } from '../helpers/memory-limit.js';

const MB = 1024 * 1024;
/** The stretch goal of the issue (300 MB is the goal): whole process, peak. */
const RSS_LIMIT = 200 * MB;
const HEAP_MB = 64;
const dir = tempDir('sk-value-chunks-memory-');
const CHILD = join(ROOT, 'test', 'memory', 'extract-value.mjs');
let fixture: HugePartDatabase;
let peerSha256: string;

beforeAll(() => {
  fixture = createHugePartDatabase(join(dir, 'opencode.db'), 300 * MB);
  // The peer: sqlite3 CLI and coreutils, no code of ours (3.40 has no octet_length: length of the cast).
  const sql = `SELECT substr(json_extract(data, '$.url'), instr(json_extract(data, '$.url'), ',') + 1) FROM part WHERE id = '${fixture.partId}'`;
  peerSha256 = execSync(`sqlite3 ${JSON.stringify(fixture.path)} ${JSON.stringify(sql)} | base64 -d | sha256sum`, {
    encoding: 'utf8',
    maxBuffer: 1024,
  }).split(' ')[0] as string;
  const size = execSync(`sqlite3 ${JSON.stringify(fixture.path)} "SELECT length(CAST(data AS BLOB)) FROM part WHERE id = '${fixture.partId}'"`, {
    encoding: 'utf8',
  });
  expect(Number(size)).toBe(fixture.valueBytes);
}, 300_000);

interface ChildSummary {
  mode: string;
  path: 'chunked' | 'whole' | 'store';
  sha256: string;
  bytes: number;
  ms: number;
  heapPeak: number;
  buffersPeak: number;
  maxRssBytes: number;
}

function extract(mode: 'chunked' | 'whole' | 'store', enforce = true): { run: MemoryLimitedRun; summary: ChildSummary | null; out: string } {
  const out = join(dir, `${mode}-${enforce ? 'limited' : 'free'}.pdf`);
  rmSync(out, { force: true });
  const run = runUnderMemoryLimit(process.execPath, [CHILD, fixture.path, fixture.partId, out, mode], {
    rssBytes: RSS_LIMIT,
    heapMB: HEAP_MB,
    enforce,
    // The whole-value runs must not pick the extension up through any future default.
    env: { ...process.env, ...(mode === 'chunked' ? {} : { SESSION_KEEPER_NO_CHUNK_EXTENSION: '1' }) },
  });
  const last = run.stdout.trim().split('\n').pop() ?? '';
  let summary: ChildSummary | null = null;
  try {
    summary = JSON.parse(last) as ChildSummary;
  } catch {
    // no summary: the child died
  }
  return { run, summary, out };
}

const describeRun = (run: MemoryLimitedRun): string =>
  `status ${run.status}, signal ${run.signal}, peak ${run.peakRssBytes === null ? '?' : Math.round(run.peakRssBytes / MB)} MB, ${run.stderr.trim().split('\n').slice(-3).join(' | ')}`;

describe.runIf(process.platform === 'linux')('a 300 MB PDF under a 200 MB process limit and a 64 MB heap', () => {
  it('has a way to limit a whole process on this machine (or at least to measure it)', () => {
    expect(existsSync('/usr/bin/time'), '/usr/bin/time measures peak RSS (Debian package "time")').toBe(true);
    const { enforcement, detail } = memoryEnforcement();
    expect(enforcement, detail).toBe('rlimit-data');
    // The limit really stops a process that needs more than it.
    const greedy = runUnderMemoryLimit(process.execPath, ['-e', 'const k = []; for (let i = 0; i < 40; i++) k.push(Buffer.alloc(8 << 20, 1))'], {
      rssBytes: RSS_LIMIT,
    });
    expect(greedy.status).not.toBe(0);
    expect(greedy.stderr).toMatch(/Array buffer allocation failed/);
  });

  it('extracts it through sk_chunks within the limit, to the same bytes as sqlite3 | base64 -d', () => {
    expect(existsSync(VALUE_CHUNKS_LIBRARY), `${VALUE_CHUNKS_LIBRARY} is missing: run npm run build`).toBe(true);
    const { run, summary, out } = extract('chunked');
    expect(run.withinLimit, describeRun(run)).toBe(true);
    expect(summary?.path).toBe('chunked');
    expect(summary?.sha256).toBe(peerSha256);
    expect(summary?.bytes).toBe(fixture.decodedBytes);
    expect(statSync(out).size).toBe(fixture.decodedBytes);
    expect(run.peakRssBytes).toBeLessThanOrEqual(RSS_LIMIT);
    expect(summary?.heapPeak).toBeLessThan(32 * MB);
    rmSync(out, { force: true });
  }, 300_000);

  for (const mode of ['store', 'whole'] as const) {
    it(`the whole-value path (${mode === 'store' ? "the store's extractAttachment" : 'valueChunks without the extension'}) fails under the same limit and exceeds it without one`, () => {
      const limited = extract(mode);
      expect(limited.run.status === 0 && limited.run.signal === null, `it should have failed: ${describeRun(limited.run)}`).toBe(false);
      expect(limited.summary).toBeNull();

      const free = extract(mode, false);
      expect(free.run.status, describeRun(free.run)).toBe(0);
      expect(free.summary?.sha256).toBe(peerSha256); // it is correct, only too big
      expect(free.run.peakRssBytes).toBeGreaterThan(RSS_LIMIT + fixture.valueBytes / 2);
      rmSync(free.out, { force: true });
    }, 300_000);
  }
});
