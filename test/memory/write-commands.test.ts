/**
 * The writing commands on a database holding a 300 MiB PDF (a 400 MiB `part.data`), as whole
 * processes under a 300 MB cap on their memory (RLIMIT_DATA, see test/helpers/memory-limit.ts)
 * and a 32 MB V8 heap: `archive` (the value read through sk_chunks, hashed and written in
 * chunks), `restore` of that archive into an empty database (the part spilled to a temp file,
 * written into SQLite through sk_text_zeros + sk_blob_write_file), and `retention --apply`
 * (archive, delete, vacuum), and `migrate --to` PostgreSQL (the PDF cut out of the value and
 * stored chunk by chunk through COPY, verified). The restored row is byte-equal to the original by
 * the sqlite3 CLI's own reading, and stays TEXT; the server's chunks decode to the same PDF. The whole-value path (no chunk extension) dies under the same cap
 * and goes far over it without one.
 */
import { execSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { beforeAll, describe, expect, it } from 'vitest';
import { createHugePartDatabase, type HugePartDatabase } from '../fixtures/huge-part.js';
import { CLI, emptyOpenCodeDb, tempDir } from '../helpers/env.js';
import { memoryEnforcement, runUnderMemoryLimit, type MemoryLimitedRun } from '../helpers/memory-limit.js';
import { freshDatabase, serverQuery } from '../external/servers.js';

const MB = 1024 * 1024;
/**
 * The goal, whole process. The peaks measured are 120-160 MB (the 200 MB stretch goal), but
 * RLIMIT_DATA counts address space: glibc's per-thread malloc arenas (gzip and SQLite on libuv's
 * threads) reserve it beyond what is touched, and under a 200 MB cap a busy run failed to allocate.
 */
const RSS_LIMIT = 300 * MB;
const HEAP_MB = 32;
const dir = tempDir('sk-write-commands-');
const env = { ...process.env, XDG_CACHE_HOME: join(dir, 'xdg-cache'), XDG_DATA_HOME: join(dir, 'data'), XDG_CONFIG_HOME: join(dir, 'config'), TMPDIR: dir };
let fixture: HugePartDatabase;
let peerSha256: string;

/** sha256 of a part's data as the sqlite3 CLI prints it (its text and a newline), and its type. */
function sqliteRow(db: string, partId: string): { sha256: string; type: string } {
  const sha256 = execSync(`sqlite3 ${JSON.stringify(db)} "SELECT data FROM part WHERE id = '${partId}'" | sha256sum`, { encoding: 'utf8' }).split(' ')[0] as string;
  const type = execSync(`sqlite3 ${JSON.stringify(db)} "SELECT typeof(data) FROM part WHERE id = '${partId}'"`, { encoding: 'utf8' }).trim();
  return { sha256, type };
}

function emptyTarget(name: string): string {
  const path = join(dir, name, 'opencode.db');
  mkdirSync(join(dir, name), { recursive: true });
  emptyOpenCodeDb(path).close();
  return path;
}

function cli(db: string, args: string[], options: { enforce?: boolean; whole?: boolean } = {}): MemoryLimitedRun {
  return runUnderMemoryLimit(process.execPath, [CLI, '--db', db, '--cache-dir', join(dir, 'cache'), '--json', ...args], {
    rssBytes: RSS_LIMIT,
    heapMB: HEAP_MB,
    enforce: options.enforce ?? true,
    env: options.whole ? { ...env, SESSION_KEEPER_NO_CHUNK_EXTENSION: '1' } : env,
  });
}

const describeRun = (run: MemoryLimitedRun): string =>
  `status ${run.status}, signal ${run.signal}, peak ${run.peakRssBytes === null ? '?' : Math.round(run.peakRssBytes / MB)} MB: ${run.stderr.trim().split('\n').slice(-3).join(' | ')}`;

function withinLimit(db: string, args: string[]): MemoryLimitedRun {
  const run = cli(db, args);
  expect(run.withinLimit, describeRun(run)).toBe(true);
  console.log(`${args[0]}: ${Math.round((run.peakRssBytes ?? 0) / MB)} MB peak RSS`);
  return run;
}

beforeAll(() => {
  mkdirSync(join(dir, 'source'), { recursive: true });
  fixture = createHugePartDatabase(join(dir, 'source', 'opencode.db'), 300 * MB);
  peerSha256 = sqliteRow(fixture.path, fixture.partId).sha256;
}, 300_000);

describe.runIf(process.platform === 'linux')('writing commands on a 300 MB PDF, under 300 MB and a 32 MB heap', () => {
  const archive = join(dir, 'huge.json');

  it('can cap a whole process here', () => {
    expect(memoryEnforcement().enforcement, memoryEnforcement().detail).toBe('rlimit-data');
  });

  it('archive: the part goes through in chunks, verified, 0600', () => {
    withinLimit(fixture.path, ['archive', '--output', archive]);
    expect(statSync(archive).mode & 0o777).toBe(0o600);
    expect(statSync(archive).size).toBeGreaterThan(fixture.valueBytes);
  }, 300_000);

  it('restore: the row back byte for byte, still TEXT, the file intact', () => {
    const target = emptyTarget('restored');
    withinLimit(target, ['restore', archive]);
    expect(sqliteRow(target, fixture.partId)).toEqual({ sha256: peerSha256, type: 'text' });
    expect(execSync(`sqlite3 ${JSON.stringify(target)} "PRAGMA integrity_check"`, { encoding: 'utf8' }).trim()).toBe('ok');
    // The spill file is gone with the run.
    expect(readdirSync(dir).filter((name) => name.startsWith('session-keeper-restore-'))).toEqual([]);
  }, 300_000);

  it('retention --apply: archived, deleted, the archive restores to the same bytes', () => {
    const db = join(dir, 'retention', 'opencode.db');
    mkdirSync(join(dir, 'retention'), { recursive: true });
    copyFileSync(fixture.path, db);
    withinLimit(db, ['retention', '--max-size-mb', '1', '--apply', '--yes']);
    expect(execSync(`sqlite3 ${JSON.stringify(db)} "SELECT count(*) FROM part"`, { encoding: 'utf8' }).trim()).toBe('0');
    const archives = join(dir, 'data', 'opencode', 'archive');
    const [written] = readdirSync(archives);
    expect(written).toMatch(/\.json\.gz$/);
    const target = emptyTarget('from-retention');
    withinLimit(target, ['restore', join(archives, written as string)]);
    expect(sqliteRow(target, fixture.partId)).toEqual({ sha256: peerSha256, type: 'text' });
  }, 300_000);

  it('migrate --to postgres: the PDF cut out in chunks, stored through COPY, verified', async () => {
    const database = await freshDatabase('postgres');
    try {
      const run = withinLimit(fixture.path, ['migrate', '--to', database.url, '--no-progress']);
      expect(JSON.parse(run.stdout)).toMatchObject({ verified: true, sessions: 1 });
      // The PDF as SQLite holds it, decoded piece by piece (4 MiB of base64 at a time).
      const db = new Database(fixture.path, { readonly: true });
      const expected = createHash('sha256');
      try {
        const start = db.prepare("SELECT instr(data, 'base64,') + 7 FROM part WHERE id = ?").pluck().get(fixture.partId) as number;
        const end = fixture.valueBytes - 2; // the value ends with '"}'
        const piece = db.prepare('SELECT substr(data, ?, ?) FROM part WHERE id = ?').pluck();
        for (let at = start; at <= end; at += 4 * MB) expected.update(Buffer.from(piece.get(at, Math.min(4 * MB, end - at + 1), fixture.partId) as string, 'base64'));
      } finally {
        db.close();
      }
      const sha256 = expected.digest('hex');
      const [attachment] = await serverQuery<{ bytes: number; chunks: number; complete: number }>(database.url, `SELECT bytes, chunks, complete FROM sk_attachment WHERE sha256 = '${sha256}'`);
      expect([Number(attachment?.bytes), Number(attachment?.complete)]).toEqual([fixture.decodedBytes, 1]);
      // The server's chunks, read back one at a time, are that PDF.
      const stored = createHash('sha256');
      for (let seq = 0; seq < Number(attachment?.chunks); seq++) {
        const [chunk] = await serverQuery<{ data: Buffer }>(database.url, `SELECT data FROM sk_attachment_chunk WHERE sha256 = '${sha256}' AND seq = ${seq}`);
        stored.update(chunk?.data ?? Buffer.alloc(0));
      }
      expect(stored.digest('hex')).toBe(sha256);
      const [part] = await serverQuery<{ bytes: number; n: number }>(database.url, `SELECT bytes, octet_length(body) AS n FROM sk_part WHERE id = '${fixture.partId}'`);
      expect(Number(part?.bytes)).toBe(fixture.valueBytes);
      expect(Number(part?.n)).toBeLessThan(64 * 1024);
      // The value read whole (no chunk extension) does not fit under the same cap.
      const again = await freshDatabase('postgres');
      try {
        const whole = cli(fixture.path, ['migrate', '--to', again.url, '--no-progress'], { whole: true });
        expect(whole.status === 0 && whole.signal === null, `it should have failed: ${describeRun(whole)}`).toBe(false);
      } finally {
        await again.drop();
      }
    } finally {
      await database.drop();
    }
  }, 600_000);

  it('the whole-value path fails under the same cap (and is correct, only too big, without it)', () => {
    const wholeArchive = join(dir, 'whole.json');
    const limited = cli(fixture.path, ['archive', '--output', wholeArchive], { whole: true });
    expect(limited.status === 0 && limited.signal === null, `it should have failed: ${describeRun(limited)}`).toBe(false);
    const free = cli(fixture.path, ['archive', '--output', wholeArchive], { whole: true, enforce: false });
    expect(free.status, describeRun(free)).toBe(0);
    expect(free.peakRssBytes).toBeGreaterThan(RSS_LIMIT + fixture.valueBytes / 2);

    const target = emptyTarget('whole-restore');
    const limitedRestore = cli(target, ['restore', wholeArchive], { whole: true });
    expect(limitedRestore.status === 0 && limitedRestore.signal === null, `it should have failed: ${describeRun(limitedRestore)}`).toBe(false);
    const freeRestore = cli(target, ['restore', wholeArchive], { whole: true, enforce: false });
    expect(freeRestore.status, describeRun(freeRestore)).toBe(0);
    expect(sqliteRow(target, fixture.partId)).toEqual({ sha256: peerSha256, type: 'text' });
    expect(freeRestore.peakRssBytes).toBeGreaterThan(RSS_LIMIT + fixture.valueBytes / 2);
  }, 300_000);
});
