/**
 * A value larger than V8's string limit (536,870,888 characters): stock better-sqlite3 cannot read
 * it at all. With our length-limit extension it is read as a Buffer and decoded in chunks; without
 * it, it is listed by size and refused with one line. Nothing crashes either way.
 */
import { execSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { V8_STRING_LIMIT } from '../../src/core/page-rules.js';
import { emptyOpenCodeDb, insertMessage, insertSession, loadLengthExtension, runCli, tempDir } from '../helpers/env.js';

const MB = 1024 * 1024;
const dir = tempDir('sk-oversize-');
const dbPath = join(dir, 'opencode.db');
const cacheDir = join(dir, 'cache');
const BLOCKS = Math.ceil((V8_STRING_LIMIT + 4096) / 4);
const PREFIX = 'data:application/pdf;base64,';
let extensionBuilt = false;

beforeAll(() => {
  const db = emptyOpenCodeDb(dbPath);
  extensionBuilt = loadLengthExtension(db);
  insertSession(db, 'ses_big', 1, 2);
  insertMessage(db, 'msg_big', 'ses_big', 1);
  if (extensionBuilt) {
    // Built inside SQLite: 'QUJD' (base64 of "ABC") repeated past V8's limit.
    db.prepare(
      `INSERT INTO part (id, message_id, session_id, time_created, time_updated, data)
       VALUES ('prt_big', 'msg_big', 'ses_big', 1, 1,
         '{"type":"file","mime":"application/pdf","filename":"huge.pdf","url":"${PREFIX}' || replace(hex(zeroblob(?)), '00', 'QUJD') || '"}')`,
    ).run(BLOCKS);
  }
  db.close();
}, 300_000);

const flag = ['--max-old-space-size=64'];

describe.runIf(process.platform !== 'win32')('a value over V8 string limit', () => {
  it('needs the length-limit extension, built by `npm run build`', () => {
    expect(extensionBuilt, 'native/build/limit_length.so was not built: is a C compiler installed?').toBe(true);
  });

  it('is listed by size in stats, readable with the extension', () => {
    const run = runCli(['--db', dbPath, '--json', 'stats'], { nodeArgs: flag, cacheDir });
    expect(run.status).toBe(0);
    const stats = JSON.parse(run.stdout) as { oversize: { id: string; bytes: number; readable: boolean }[]; attachments: { count: number } };
    expect(stats.oversize).toEqual([
      expect.objectContaining({ table: 'part', id: 'prt_big', readable: true, bytes: expect.any(Number) }),
    ]);
    expect(stats.oversize[0]?.bytes).toBeGreaterThan(V8_STRING_LIMIT);
    expect(stats.attachments.count).toBe(1);
  }, 120_000);

  it('shows as an attachment reference and decodes to the right bytes under a 64 MB heap', async () => {
    const show = runCli(['--db', dbPath, '--json', 'show', 'ses_big'], { nodeArgs: flag, cacheDir });
    expect(show.status).toBe(0);
    expect(show.stdout).toContain(`"bytes": ${BLOCKS * 3}`);
    const run = runCli(['--db', dbPath, '--json', 'attachment', 'prt_big'], { nodeArgs: flag, cacheDir });
    expect(run.stderr).toBe('');
    const result = JSON.parse(run.stdout) as { path: string; bytes: number; sha256: string };
    expect(result.bytes).toBe(BLOCKS * 3);
    // Independent: the same bytes are "ABC" repeated.
    const expected = createHash('sha256');
    const block = Buffer.from('ABC'.repeat(1 << 20));
    for (let left = BLOCKS * 3; left > 0; left -= block.length) expected.update(left >= block.length ? block : block.subarray(0, left));
    expect(result.sha256).toBe(expected.digest('hex'));
    const onDisk = createHash('sha256');
    for await (const chunk of createReadStream(result.path)) onDisk.update(chunk as Buffer);
    expect(onDisk.digest('hex')).toBe(result.sha256);
  }, 300_000);

  it('without the extension: listed as unreadable, shown as such, refused with one line', () => {
    const env = { SESSION_KEEPER_NO_LENGTH_EXTENSION: '1' };
    const stats = runCli(['--db', dbPath, '--json', 'stats'], { nodeArgs: flag, env, cacheDir });
    expect(stats.stderr).toBe('');
    expect(stats.status).toBe(0);
    expect(JSON.parse(stats.stdout).oversize[0]).toMatchObject({ id: 'prt_big', readable: false });
    const show = runCli(['--db', dbPath, '--json', 'show', 'ses_big'], { nodeArgs: flag, env, cacheDir });
    expect(show.stderr).toBe('');
    expect(show.status).toBe(0);
    expect(show.stdout).toContain('"type": "unreadable"');
    const run = runCli(['--db', dbPath, 'attachment', 'prt_big'], { nodeArgs: flag, env, cacheDir });
    expect(run.status).toBe(1);
    expect(run.stderr.trim()).toMatch(/^session-keeper: part prt_big is \d+ bytes, over the 536870888-byte limit this build can read$/);
  }, 120_000);

  it('the sqlite3 CLI agrees on the stored size', () => {
    const size = Number(execSync(`sqlite3 ${JSON.stringify(dbPath)} "SELECT length(CAST(data AS BLOB)) FROM part WHERE id = 'prt_big'"`, { encoding: 'utf8' }).trim());
    expect(size).toBe(PREFIX.length + BLOCKS * 4 + '{"type":"file","mime":"application/pdf","filename":"huge.pdf","url":"'.length + 2);
  });
});
