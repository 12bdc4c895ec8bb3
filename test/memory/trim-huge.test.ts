/**
 * `trim --attachments --apply` on a database whose one part holds a 300 MB PDF, as a whole
 * process with a 32 MB V8 heap: archived, decoded into the cache, cut out of the row a chunk at a
 * time (never a JS string, never parsed by SQLite's JSON functions), and `restore` of the archive
 * puts the row back byte for byte. Its peak RSS stays under the 300 MB every command keeps to
 * (archive, cache and cut all read the value in chunks); the plan runs under a 300 MB RLIMIT_DATA.
 */
import { execSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, readdirSync, statSync, type Dirent } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { PLACEHOLDER_PREFIX, type TrimOutcome, type TrimPlan } from '../../src/core/trim.js';
import { createHugePartDatabase, type HugePartDatabase } from '../fixtures/huge-part.js';
import { CLI, tempDir } from '../helpers/env.js';
import { memoryEnforcement, runUnderMemoryLimit, type MemoryLimitedRun } from '../helpers/memory-limit.js';

const MB = 1024 * 1024;
const RSS_LIMIT = 300 * MB;
const dir = tempDir('sk-trim-huge-');
const db = join(dir, 'opencode.db');
const cacheDir = join(dir, 'cache');
const env = { ...process.env, XDG_CACHE_HOME: join(dir, 'xdg-cache'), XDG_DATA_HOME: join(dir, 'data'), XDG_CONFIG_HOME: join(dir, 'config') };
let huge: HugePartDatabase;

/** The part's data, hashed by the sqlite3 CLI (no code of ours). */
const rowSha3 = (): string => execSync(`sqlite3 ${JSON.stringify(db)} "SELECT hex(sha3(CAST(data AS BLOB), 256)) FROM part WHERE id = 'prt_huge'"`, { encoding: 'utf8' }).trim();
/** The PDF the data URL decodes to, hashed by the sqlite3 CLI and coreutils. */
const pdfSha256 = (): string =>
  execSync(`sqlite3 ${JSON.stringify(db)} "SELECT substr(json_extract(data, '$.url'), instr(json_extract(data, '$.url'), ',') + 1) FROM part WHERE id = 'prt_huge'" | base64 -d | sha256sum`, { encoding: 'utf8' }).split(' ')[0] as string;

async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

const describeRun = (run: MemoryLimitedRun): string =>
  `status ${run.status}, signal ${run.signal}, peak ${run.peakRssBytes === null ? '?' : Math.round(run.peakRssBytes / MB)} MB: ${run.stderr.trim().split('\n').slice(-3).join(' | ')}`;

beforeAll(() => {
  huge = createHugePartDatabase(db, 300 * MB);
}, 300_000);

describe.runIf(process.platform === 'linux')('trim --attachments on a 300 MB PDF with a 32 MB heap', () => {
  it('archives, caches, cuts the attachment out and restores it byte for byte', async () => {
    expect(memoryEnforcement().enforcement, memoryEnforcement().detail).toBe('rlimit-data');
    expect(huge.valueBytes).toBeGreaterThan(RSS_LIMIT);
    const before = rowSha3();
    const pdf = pdfSha256();
    const cli = (args: string[], enforce = true): MemoryLimitedRun => runUnderMemoryLimit(process.execPath, [CLI, '--db', db, '--cache-dir', cacheDir, '--json', ...args], { rssBytes: RSS_LIMIT, heapMB: 32, env, timeoutMs: 240_000, enforce });
    // The peer figure: archiving the same session alone, same heap, measured.
    const archiveAlone = cli(['archive', '--session', 'ses_huge', '--output', join(dir, 'alone.json.gz')], false);
    expect(archiveAlone.status, describeRun(archiveAlone)).toBe(0);
    const archivePeak = archiveAlone.peakRssBytes ?? 0;

    const planRun = cli(['trim', '--attachments', '--older-than-days', '1']);
    expect(planRun.withinLimit, describeRun(planRun)).toBe(true);
    const plan = JSON.parse(planRun.stdout) as TrimPlan;
    expect(plan.targets).toHaveLength(1);
    expect(plan.targets[0]?.cuts).toHaveLength(1);

    const applied = cli(['trim', '--attachments', '--older-than-days', '1', '--apply', '--yes'], false);
    expect(applied.status, describeRun(applied)).toBe(0);
    expect(applied.stderr).not.toMatch(/heap out of memory/);
    console.log(`trim --attachments --apply: ${Math.round((applied.peakRssBytes ?? 0) / MB)} MB peak RSS; archive alone ${Math.round(archivePeak / MB)} MB`);
    expect(applied.peakRssBytes, describeRun(applied)).not.toBeNull();
    expect(applied.peakRssBytes as number).toBeLessThan(RSS_LIMIT);
    const outcome = JSON.parse(applied.stdout) as TrimOutcome;
    expect(outcome.rows).toEqual({ part: 1 });
    expect(statSync(outcome.archive as string).mode & 0o777).toBe(0o600);
    // The row is small now, valid JSON, a text/plain placeholder where the PDF was; the file shrank.
    const after = JSON.parse(execSync(`sqlite3 ${JSON.stringify(db)} "SELECT data FROM part WHERE id = 'prt_huge'"`, { encoding: 'utf8' })) as { url: string; mime: string; type: string };
    expect(after.type).toBe('file');
    expect(after.mime).toBe('text/plain');
    expect(after.url.startsWith(PLACEHOLDER_PREFIX)).toBe(true);
    expect(outcome.bytesAfter).toBeLessThan(outcome.bytesBefore - 300 * MB);
    // The PDF is in the attachment cache, decoded.
    const big = readdirSync(cacheDir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile() && statSync(join(e.parentPath, e.name)).size === huge.decodedBytes);
    expect(big.length).toBeGreaterThan(0);
    expect(await fileSha256(join((big[0] as Dirent).parentPath, (big[0] as Dirent).name))).toBe(pdf);

    const restored = cli(['restore', outcome.archive as string], false);
    expect(restored.status, describeRun(restored)).toBe(0);
    console.log(`restore: ${Math.round((restored.peakRssBytes ?? 0) / MB)} MB peak RSS`);
    expect(JSON.parse(restored.stdout)).toMatchObject({ restored: 0, putBack: [{ id: 'ses_huge', rows: 1 }] });
    expect(rowSha3()).toBe(before);
    expect(pdfSha256()).toBe(pdf);
  }, 600_000);
});
