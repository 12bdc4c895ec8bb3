/**
 * Every read command on a database holding a 300 MB PDF, as whole processes under a 300 MB cap on
 * their memory (RLIMIT_DATA, see test/helpers/memory-limit.ts) and a 32 MB V8 heap: `stats` (the
 * first one, which reads every part to build our index, and the second, answered from it), `list`,
 * `show` of the PDF's session, and `attachment --out` of the PDF, whose bytes are the sqlite3
 * CLI's. The whole-value path (SQLite without our chunk extension) dies under the same cap.
 */
import { execSync } from 'node:child_process';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateFixture, type FixtureSummary } from '../fixtures/generate.js';
import { CLI, tempDir } from '../helpers/env.js';
import { memoryEnforcement, runUnderMemoryLimit, type MemoryLimitedRun } from '../helpers/memory-limit.js';

const MB = 1024 * 1024;
const RSS_LIMIT = 300 * MB;
const HEAP_MB = 32;
const dir = tempDir('sk-read-commands-');
const db = join(dir, 'opencode.db');
const cacheDir = join(dir, 'cache');
const env = { ...process.env, XDG_CACHE_HOME: join(dir, 'xdg-cache'), XDG_DATA_HOME: join(dir, 'data'), XDG_CONFIG_HOME: join(dir, 'config') };
let fixture: FixtureSummary;
let peerSha256: string;

beforeAll(() => {
  fixture = generateFixture({ path: db, targetBytes: 520 * MB, hugeAttachmentBytes: 300 * MB, seed: 5, diffFiles: false });
  execSync(`sqlite3 ${JSON.stringify(db)} "PRAGMA wal_checkpoint(TRUNCATE)"`);
  const sql = `SELECT substr(json_extract(data, '$.url'), instr(json_extract(data, '$.url'), ',') + 1) FROM part WHERE id = '${fixture.hugePartId}'`;
  peerSha256 = execSync(`sqlite3 ${JSON.stringify(db)} ${JSON.stringify(sql)} | base64 -d | sha256sum`, { encoding: 'utf8' }).split(' ')[0] as string;
}, 300_000);

function cli(args: string[], options: { enforce?: boolean; env?: NodeJS.ProcessEnv } = {}): MemoryLimitedRun {
  return runUnderMemoryLimit(process.execPath, [CLI, '--db', db, '--cache-dir', cacheDir, '--json', ...args], {
    rssBytes: RSS_LIMIT,
    heapMB: HEAP_MB,
    enforce: options.enforce ?? true,
    env: options.env ?? env,
  });
}

const describeRun = (run: MemoryLimitedRun): string =>
  `status ${run.status}, signal ${run.signal}, peak ${run.peakRssBytes === null ? '?' : Math.round(run.peakRssBytes / MB)} MB: ${run.stderr.trim().split('\n').slice(-3).join(' | ')}`;

function withinLimit(args: string[]): unknown {
  const run = cli(args);
  expect(run.withinLimit, describeRun(run)).toBe(true);
  console.log(`${args[0]}: ${Math.round((run.peakRssBytes ?? 0) / MB)} MB peak RSS`);
  return JSON.parse(run.stdout);
}

describe.runIf(process.platform === 'linux')('read commands on a database with a 300 MB PDF, under 300 MB and a 32 MB heap', () => {
  it('can cap a whole process here', () => {
    expect(memoryEnforcement().enforcement, memoryEnforcement().detail).toBe('rlimit-data');
  });

  it('stats, the first time (every part read once for the index) and the second (answered from it)', () => {
    const first = withinLimit(['stats']) as { attachments: { count: number; bytes: number }; valueReads: string; parts: number };
    expect(first.valueReads).toBe('chunked');
    expect(first.attachments).toMatchObject({ count: fixture.attachments.count, bytes: fixture.attachments.bytes });
    expect(first.parts).toBe(fixture.parts);
    const second = withinLimit(['stats']);
    expect(second).toEqual(first);
  }, 300_000);

  it('list, and show of the session holding the PDF', () => {
    const list = withinLimit(['list', '--limit', '100']) as { sessions: unknown[] };
    expect(list.sessions.length).toBeGreaterThan(0);
    const show = withinLimit(['show', fixture.hugeSessionId as string, '--limit', '100']) as { messages: { parts: Record<string, unknown>[] }[] };
    const huge = show.messages.flatMap((m) => m.parts).find((p) => p['id'] === fixture.hugePartId);
    expect(huge?.['attachment']).toMatchObject({ ref: fixture.hugePartId, bytes: 300 * MB, mime: 'application/pdf' });
  }, 300_000);

  it('attachment --out of the PDF, to the bytes sqlite3 | base64 -d gives', () => {
    const out = join(dir, 'huge.pdf');
    const result = withinLimit(['attachment', fixture.hugePartId as string, '--out', out]) as { path: string; bytes: number; sha256: string };
    expect(result).toMatchObject({ path: out, bytes: 300 * MB, sha256: peerSha256 });
    expect(execSync(`sha256sum ${JSON.stringify(out)}`, { encoding: 'utf8' }).split(' ')[0]).toBe(peerSha256);
  }, 300_000);

  it('the whole-value path fails under the same cap (and is correct, only too big, without it)', () => {
    const whole = { ...env, SESSION_KEEPER_NO_CHUNK_EXTENSION: '1' };
    const out = join(dir, 'whole.pdf');
    const limited = cli(['attachment', fixture.hugePartId as string, '--out', out], { env: whole });
    expect(limited.status === 0 && limited.signal === null, `it should have failed: ${describeRun(limited)}`).toBe(false);
    const free = cli(['attachment', fixture.hugePartId as string, '--out', out], { env: whole, enforce: false });
    expect(free.status, describeRun(free)).toBe(0);
    expect((JSON.parse(free.stdout) as { sha256: string }).sha256).toBe(peerSha256);
    expect(free.peakRssBytes).toBeGreaterThan(RSS_LIMIT);
  }, 300_000);
});
