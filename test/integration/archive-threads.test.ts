/**
 * Archives written with their second half read by another thread and verified behind the writer
 * (the compiled build, where those threads run; a gzipped one on one exporter): byte for byte the archive one thread writes and
 * verifies afterwards, gzipped too; a verification that fails, a verifying thread that dies and an
 * abort each leave no archive under the name and no temporary file, and fail the call.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, fstatSync, openSync, readdirSync, readFileSync, readSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { archiveSource, writeArchive, type ArchiveWriteOptions } from '../../dist/store/archive/archive-write.js';
import { openFileReader } from '../../dist/store/open-store.js';
import { generateFixture } from '../fixtures/generate.js';
import { tempDir } from '../helpers/env.js';

const MB = 1024 * 1024;
const dir = tempDir('sk-archive-threads-');
const db = join(dir, 'opencode.db');
let ids: string[] = [];

beforeAll(() => {
  generateFixture({ path: db, targetBytes: 24 * 1024 * 1024, rootSessions: 80, seed: 7 });
  const reader = openFileReader(db);
  ids = execFileSync('sqlite3', [db, 'SELECT id FROM session ORDER BY time_created, id'], { encoding: 'utf8' }).trim().split('\n');
  void reader.close();
}, 120_000);

/** Archives every session to `name` in a folder of its own; returns the folder's names afterwards too. */
async function archive(name: string, threads: boolean, options: ArchiveWriteOptions = {}): Promise<{ path: string; sessions: number; folder: string[]; verifierHeapPeak?: number; secondHalfSessions?: number }> {
  const out = tempDir('sk-archive-threads-out-');
  const path = join(out, name);
  const reader = openFileReader(db);
  try {
    const source = threads ? archiveSource(reader, ids, path) : { items: reader.exportSessions(ids) };
    // Small thresholds: the fixture is small, and the threads must run.
    const secondHalf = source.secondHalf && { ...source.secondHalf, afterBytes: MB };
    const written = await writeArchive(source.items, path, { verify: true, verifyBehind: threads && { fromBytes: MB }, secondHalf, ...options });
    return { path, sessions: written.sessions.length, folder: readdirSync(out), verifierHeapPeak: written.verifierHeapPeak, secondHalfSessions: written.secondHalfSessions };
  } finally {
    await reader.close();
  }
}

/** Runs a call expected to fail and returns the error with what the archive's folder holds after it. */
async function failing(name: string, options: ArchiveWriteOptions): Promise<{ error: Error; folder: string[] }> {
  const out = tempDir('sk-archive-threads-out-');
  const reader = openFileReader(db);
  try {
    const source = archiveSource(reader, ids, join(out, name));
    const secondHalf = source.secondHalf && { ...source.secondHalf, afterBytes: MB };
    const error = await writeArchive(source.items, join(out, name), { verify: true, verifyBehind: { fromBytes: MB }, secondHalf, ...options }).then(
      () => new Error('did not fail'),
      (e: unknown) => e as Error,
    );
    return { error, folder: readdirSync(out) };
  } finally {
    await reader.close();
  }
}

describe('archives written and verified on two more threads', () => {
  it('offers the sessions of a SQLite file to a second thread, not those of a gzipped archive', () => {
    const reader = openFileReader(db);
    expect(archiveSource(reader, ids, join(dir, 'a.json')).secondHalf).toMatchObject({ db, ids });
    // Gzip members are cut where the writes fall: one thread writes a gzipped archive.
    expect(archiveSource(reader, ids, join(dir, 'a.json.gz')).secondHalf).toBeUndefined();
    void reader.close();
  });

  it('keeps a small archive on one thread, with the default thresholds', async () => {
    const out = tempDir('sk-archive-threads-out-');
    const reader = openFileReader(db);
    const source = archiveSource(reader, ids, join(out, 'small.json'));
    const written = await writeArchive(source.items, join(out, 'small.json'), { verify: true, secondHalf: source.secondHalf });
    await reader.close();
    expect(written.sessions).toHaveLength(ids.length);
    expect(written.secondHalfSessions).toBeUndefined();
    expect(written.verifierHeapPeak).toBeUndefined();
  });

  it('writes byte for byte what one thread writes, verified behind the writer, mode 0600', async () => {
    const one = await archive('one.json', false);
    const two = await archive('two.json', true);
    expect(statSync(one.path).size).toBeGreaterThan(8 * 1024 * 1024);
    expect(readFileSync(two.path).equals(readFileSync(one.path))).toBe(true);
    expect(two.sessions).toBe(ids.length);
    // The second thread took half of what was left once a megabyte was written.
    expect(two.secondHalfSessions).toBeGreaterThan(ids.length / 4);
    expect(two.secondHalfSessions).toBeLessThan(ids.length / 2 + 1);
    expect(two.verifierHeapPeak).toBeGreaterThan(0);
    expect(one.verifierHeapPeak).toBeUndefined();
    expect(statSync(two.path).mode & 0o777).toBe(0o600);
    expect(two.folder).toEqual(['two.json']);
  });

  it('gzipped (one exporter, verified behind): the same file, and the plain archive once gunzipped', async () => {
    const one = await archive('one.json.gz', false);
    const two = await archive('two.json.gz', true);
    expect(readFileSync(two.path).equals(readFileSync(one.path))).toBe(true);
    expect(two.verifierHeapPeak).toBeGreaterThan(0);
    const plain = await archive('plain.json', false);
    expect(execFileSync('gzip', ['-dc', two.path], { maxBuffer: 1 << 30 }).equals(readFileSync(plain.path))).toBe(true);
  });

  it('a byte damaged after the writing fails the verification: no archive, no temporary file', async () => {
    const { error, folder } = await failing('damaged.json', { verifyBehindWorker: new URL('../fixtures/verify-behind-damage.mjs', import.meta.url) });
    expect(error.message).toMatch(/failed verification: session \S+ differs/);
    expect(folder).toEqual([]);
  });

  it('reads the end of the sealed archive back on the second exporter: a byte damaged there fails the verification', async () => {
    let verified = 0;
    const { error, folder } = await failing('damaged-second.json', {
      onVerified: (n) => (verified = Math.max(verified, n)),
      // Stands for the disk: the sealed file changes under the check, in its last session.
      afterWrite: (temp) => {
        const fd = openSync(temp, 'r+');
        const bytes = Buffer.alloc(fstatSync(fd).size);
        readSync(fd, bytes, 0, bytes.length, 0);
        const at = bytes.lastIndexOf('base64,') + 40;
        writeSync(fd, Buffer.from([bytes[at] === 0x41 ? 0x42 : 0x41]), 0, 1, at);
        closeSync(fd);
      },
    });
    expect(error.message).toMatch(/failed verification: session \S+ differs/);
    // The damaged session is the last: the second exporter reads it back, the thread behind the writer never does.
    const damaged = /session (\S+) differs/.exec(error.message)?.[1] as string;
    expect(ids.indexOf(damaged)).toBeGreaterThan(ids.length / 2);
    expect(folder).toEqual([]);
  });

  it('reads the first sessions of the second half back on the thread behind the writer: a byte damaged there fails the verification too', async () => {
    const second = (await archive('split.json', true)).secondHalfSessions as number;
    // The second half's first session: copied in by this thread, read back by the one behind it
    // (the second exporter starts reading back at a session boundary after it).
    const target = ids.length - second;
    process.env['SK_TEST_DAMAGE_SESSION'] = String(target);
    try {
      const { error, folder } = await failing('damaged-quarter.json', { verifyBehindWorker: new URL('../fixtures/verify-behind-damage-at.mjs', import.meta.url) });
      expect(error.message).toContain(`session ${ids[target] as string} differs`);
      expect(folder).toEqual([]);
    } finally {
      delete process.env['SK_TEST_DAMAGE_SESSION'];
    }
  });

  it('reports every session read back, both halves together', async () => {
    const out = tempDir('sk-archive-threads-out-');
    const reader = openFileReader(db);
    let verified = 0;
    try {
      const source = archiveSource(reader, ids, join(out, 'progress.json'));
      const secondHalf = source.secondHalf && { ...source.secondHalf, afterBytes: MB };
      const written = await writeArchive(source.items, join(out, 'progress.json'), { verify: true, verifyBehind: { fromBytes: MB }, secondHalf, onVerified: (n) => (verified = n) });
      expect(written.secondHalfSessions).toBeGreaterThan(0);
    } finally {
      await reader.close();
    }
    expect(verified).toBe(ids.length);
  });

  it('a verifying thread that dies fails the call: no archive, no temporary file', async () => {
    const { error, folder } = await failing('crashed.json', { verifyBehindWorker: new URL('../fixtures/verify-behind-crash.mjs', import.meta.url) });
    expect(error.message).toMatch(/verification of .*crashed\.json stopped before it finished/);
    expect(folder).toEqual([]);
  });

  it('an abort while the halves are written leaves nothing, and throws the reason', async () => {
    const controller = new AbortController();
    const reason = new Error('stop');
    const { error, folder } = await failing('aborted.json', {
      signal: controller.signal,
      onSession: (done) => {
        if (done >= 10) controller.abort(reason);
      },
    });
    expect(error).toBe(reason);
    expect(folder).toEqual([]);
    expect(existsSync(join(dir, 'aborted.json'))).toBe(false);
  });
});
