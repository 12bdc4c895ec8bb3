/**
 * A 200 MB PDF that only the server holds (the file mirrored into PostgreSQL, then its session
 * removed from the file), as whole processes under a 300 MB cap (RLIMIT_DATA, see
 * test/helpers/memory-limit.ts) and a 32 MB V8 heap: `attachment` decodes it chunk by chunk from
 * the server into the attachment cache, and with --out into a file, to the bytes
 * `sqlite3 | base64 -d` gave before the session left the file; `restore --from` (what the
 * browser's Restore runs) puts the part back into the file, through a file of ours, to exactly the
 * bytes it had. Held whole, the value alone (267 MB of base64 and 200 MB decoded) would not fit
 * under the cap (restore held the part whole before: 1.28 GB peak RSS).
 */
import Database from 'better-sqlite3';
import { execSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateFixture, type FixtureSummary } from '../fixtures/generate.js';
import { CLI, runCli, tempDir } from '../helpers/env.js';
import { memoryEnforcement, runUnderMemoryLimit, type MemoryLimitedRun } from '../helpers/memory-limit.js';
import { freshDatabase, type FreshDatabase } from '../external/servers.js';

const MB = 1024 * 1024;
const RSS_LIMIT = 300 * MB;
const HEAP_MB = 32;
const PDF_BYTES = 200 * MB;
const dir = tempDir('sk-server-attachment-');
const db = join(dir, 'opencode.db');
const cacheDir = join(dir, 'cache');
const env = { ...process.env, XDG_CACHE_HOME: join(dir, 'xdg-cache'), XDG_DATA_HOME: join(dir, 'data'), XDG_CONFIG_HOME: join(dir, 'config'), OPENCODE_DB: '' };
let fixture: FixtureSummary;
let server: FreshDatabase;
let peerSha256: string;
/** The PDF part's row as the file held it: type, length and the sha256 of its bytes. */
let partRow: string;
const partRowOf = (): string =>
  execSync(`sqlite3 ${JSON.stringify(db)} "SELECT typeof(data), length(CAST(data AS BLOB)) FROM part WHERE id = '${fixture.hugePartId}'; SELECT CAST(data AS BLOB) FROM part WHERE id = '${fixture.hugePartId}'" | sha256sum`, { encoding: 'utf8', maxBuffer: 1024 }).split(' ')[0] as string;

beforeAll(async () => {
  fixture = generateFixture({ path: db, targetBytes: 8 * MB, rootSessions: 6, hugeAttachmentBytes: PDF_BYTES, seed: 7, diffFiles: false });
  execSync(`sqlite3 ${JSON.stringify(db)} "PRAGMA wal_checkpoint(TRUNCATE)"`);
  const sql = `SELECT substr(json_extract(data, '$.url'), instr(json_extract(data, '$.url'), ',') + 1) FROM part WHERE id = '${fixture.hugePartId}'`;
  peerSha256 = execSync(`sqlite3 ${JSON.stringify(db)} ${JSON.stringify(sql)} | base64 -d | sha256sum`, { encoding: 'utf8' }).split(' ')[0] as string;
  partRow = partRowOf();
  server = await freshDatabase('postgres');
  mkdirSync(join(dir, 'config', 'opencode'), { recursive: true });
  writeFileSync(join(dir, 'config', 'opencode', 'opencode.json'), JSON.stringify({ session: { storage: 'postgres', connectionString: server.url } }));
  const sync = runCli(['--db', db, 'sync', '--once'], { env: env as Record<string, string> });
  expect(sync.status, sync.stderr).toBe(0);
  const file = new Database(db);
  file.pragma('foreign_keys = ON');
  file.prepare('DELETE FROM session WHERE id = ?').run(fixture.hugeSessionId);
  file.close();
}, 600_000);
afterAll(async () => server?.drop());

function withinLimit(args: string[]): unknown {
  const run: MemoryLimitedRun = runUnderMemoryLimit(process.execPath, [CLI, '--db', db, '--cache-dir', cacheDir, '--json', ...args], { rssBytes: RSS_LIMIT, heapMB: HEAP_MB, env });
  const peak = run.peakRssBytes === null ? '?' : Math.round(run.peakRssBytes / MB);
  expect(run.withinLimit, `status ${run.status}, signal ${run.signal}, peak ${peak} MB: ${run.stderr.trim().split('\n').slice(-3).join(' | ')}`).toBe(true);
  console.log(`${args.join(' ')}: ${peak} MB peak RSS`);
  return JSON.parse(run.stdout);
}

describe.runIf(process.platform === 'linux')('attachment of a 200 MB PDF only the server holds, under 300 MB and a 32 MB heap', () => {
  it('can cap a whole process here', () => {
    expect(memoryEnforcement().enforcement, memoryEnforcement().detail).toBe('rlimit-data');
  });

  it('decodes it from the server into the attachment cache, and with --out into a file, to the original bytes', () => {
    const cached = withinLimit(['attachment', fixture.hugePartId as string]) as { path: string; bytes: number; sha256: string };
    expect(cached).toMatchObject({ bytes: PDF_BYTES, sha256: peerSha256 });
    expect(cached.path.startsWith(cacheDir)).toBe(true);
    expect(execSync(`sha256sum ${JSON.stringify(cached.path)}`, { encoding: 'utf8' }).split(' ')[0]).toBe(peerSha256);
    const out = join(dir, 'huge.pdf');
    const written = withinLimit(['attachment', fixture.hugePartId as string, '--out', out]) as { path: string; bytes: number; sha256: string };
    expect(written).toMatchObject({ path: out, bytes: PDF_BYTES, sha256: peerSha256 });
    expect(execSync(`sha256sum ${JSON.stringify(out)}`, { encoding: 'utf8' }).split(' ')[0]).toBe(peerSha256);
  }, 300_000);

  it('restore --from puts the session back into the file with the part exactly as it was', () => {
    const restored = withinLimit(['restore', '--from', server.url, fixture.hugeSessionId as string]) as { restored: number; sessions: string[] };
    expect(restored).toMatchObject({ restored: 1, sessions: [fixture.hugeSessionId] });
    expect(partRowOf()).toBe(partRow);
  }, 300_000);
});
