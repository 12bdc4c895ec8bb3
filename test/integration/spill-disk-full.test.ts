/**
 * A restore whose spill file cannot be written, the temp dir being on a full disk (a 1 MB tmpfs,
 * mounted where the test runs as root; skipped elsewhere): one line saying the disk is full, the
 * spill file's path and the bytes it needed, a non-zero exit, nothing restored and nothing left
 * in the temp dir. The archive itself is fine and restores with room.
 */
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { archiveSessions } from '../../src/main/archives.js';
import { emptyOpenCodeDb, insertMessage, insertRawPart, insertSession, runCli, tempDir } from '../helpers/env.js';

const MB = 1024 * 1024;
const dir = tempDir('sk-spill-disk-full-');
const source = join(dir, 'source.db');
const archive = join(dir, 'big.json');
const tiny = mkdtempSync(join(tmpdir(), 'sk-tiny-tmp-'));
const mounted = process.platform === 'linux' && process.getuid?.() === 0 && spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', tiny]).status === 0;

afterAll(() => {
  if (mounted) spawnSync('umount', [tiny]);
  rmSync(tiny, { recursive: true, force: true });
});

beforeAll(async () => {
  const db = emptyOpenCodeDb(source);
  insertSession(db, 'ses_big', 1, 2);
  insertMessage(db, 'msg_big', 'ses_big', 1);
  insertRawPart(db, 'prt_big', 'msg_big', 'ses_big', 1, JSON.stringify({ type: 'text', text: 'y'.repeat(10 * MB) }));
  db.close();
  await archiveSessions({ db: source, output: archive, cacheDir: join(dir, 'cache') });
});

function sessions(path: string): number {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare('SELECT count(*) FROM session').pluck().get() as number;
  } finally {
    db.close();
  }
}

describe.runIf(mounted)('a restore whose temp dir is on a full disk', () => {
  it('says the disk is full, where and how much, exits non-zero and restores nothing', () => {
    mkdirSync(join(dir, 'full'));
    const target = join(dir, 'full', 'opencode.db');
    emptyOpenCodeDb(target).close();
    const run = runCli(['--db', target, 'restore', archive], { env: { TMPDIR: tiny }, cacheDir: join(dir, 'cache') });
    expect(run.status).not.toBe(0);
    const lines = run.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      new RegExp(`^session-keeper: disk full while writing ${tiny}/session-keeper-restore-\\w+/[0-9a-f-]+\\.part, a temporary copy of a large value of the archive \\(\\d+ bytes written, at least \\d+ needed\\): free space there or set TMPDIR to a folder with room`),
    );
    expect(lines[0]).not.toMatch(/not a readable archive/);
    expect(sessions(target)).toBe(0);
    expect(readdirSync(tiny)).toEqual([]);
  });

  it('restores the same archive where there is room', () => {
    mkdirSync(join(dir, 'room'));
    const target = join(dir, 'room', 'opencode.db');
    emptyOpenCodeDb(target).close();
    const run = runCli(['--db', target, 'restore', archive], { env: { TMPDIR: dir }, cacheDir: join(dir, 'cache') });
    expect(run.status, run.stderr).toBe(0);
    expect(sessions(target)).toBe(1);
  });
});
