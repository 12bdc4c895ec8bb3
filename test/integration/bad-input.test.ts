/**
 * Bad input that concerns reading: every case ends in one line on stderr, a non-zero exit, and
 * nothing lost or written where it should not be.
 */
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { emptyOpenCodeDb, insertMessage, insertRawPart, insertSession, parseJson, runCli, tempDir } from '../helpers/env.js';

const dir = tempDir();
const cacheDir = join(dir, 'cache');

function expectOneLineFailure(run: ReturnType<typeof runCli>, pattern: RegExp, status = 1): void {
  expect(run.status).toBe(status);
  expect(run.stdout).toBe('');
  const lines = run.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^session-keeper: /);
  expect(lines[0]).toMatch(pattern);
}

/** A small valid database with one session, to damage in various ways. */
function validDb(name: string, sessions = 40): string {
  const path = join(dir, name);
  const db = emptyOpenCodeDb(path);
  db.pragma('journal_mode = DELETE');
  for (let i = 0; i < sessions; i++) {
    insertSession(db, `ses_${i}`, 1000 + i, 2000 + i);
    insertMessage(db, `msg_${i}`, `ses_${i}`, 1000 + i);
    insertRawPart(db, `prt_${i}`, `msg_${i}`, `ses_${i}`, 1000 + i, JSON.stringify({ type: 'text', text: 'x'.repeat(3000) }));
  }
  db.close();
  return path;
}

describe('files that are not a readable OpenCode database', () => {
  it('a missing file', () => {
    expectOneLineFailure(runCli(['--db', join(dir, 'nope.db'), 'list'], { cacheDir }), /no database at .*nope\.db/);
  });

  it('an empty file', () => {
    const path = join(dir, 'empty.db');
    writeFileSync(path, '');
    expectOneLineFailure(runCli(['--db', path, 'stats'], { cacheDir }), /is empty \(0 bytes\)/);
    expect(statSync(path).size).toBe(0);
  });

  it('a text file', () => {
    const path = join(dir, 'notes.db');
    writeFileSync(path, 'these are my notes, not a database\n'.repeat(10));
    const before = readFileSync(path);
    expectOneLineFailure(runCli(['--db', path, 'list'], { cacheDir }), /is not a SQLite database/);
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  it('a truncated database', () => {
    const path = validDb('truncated.db');
    truncateSync(path, Math.floor(statSync(path).size / 2));
    expectOneLineFailure(runCli(['--db', path, 'stats'], { cacheDir }), /is truncated: its header says \d+ bytes, the file has \d+/);
  });

  it('a database whose pages are garbage', () => {
    const path = validDb('corrupt.db');
    const fd = openSync(path, 'r+');
    const size = statSync(path).size;
    // Leave the header and schema page, scribble over every page after the second.
    for (let at = 8192; at < size; at += 4096) writeSync(fd, Buffer.alloc(512, 0xa5), 0, 512, at);
    closeSync(fd);
    const before = createHash('sha256').update(readFileSync(path)).digest('hex');
    expectOneLineFailure(runCli(['--db', path, 'stats'], { cacheDir }), /is corrupt|malformed/);
    expect(createHash('sha256').update(readFileSync(path)).digest('hex')).toBe(before);
  });

  it('a SQLite database of another program', () => {
    const path = join(dir, 'foreign.db');
    const db = new Database(path);
    db.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)');
    db.close();
    expectOneLineFailure(runCli(['--db', path, 'list'], { cacheDir }), /is not an OpenCode database \(no session\/message\/part table\)/);
  });

  it('an OpenCode 2.x database is named as such', () => {
    const path = join(dir, 'v2.db');
    const db = new Database(path);
    db.exec(`CREATE TABLE session_v2 (id text PRIMARY KEY, data text);
             CREATE TABLE session_message (id text PRIMARY KEY, session_id text, data text)`);
    db.close();
    expectOneLineFailure(runCli(['--db', path, 'list'], { cacheDir }), /OpenCode 2\.x database .*reads OpenCode 1\.x/);
  });

  it('a database locked by another process', async () => {
    const path = validDb('locked.db', 3);
    // Another process holds an exclusive lock, as a writer in rollback-journal mode does.
    const holder = spawn(process.execPath, [
      '-e',
      `const D=require(${JSON.stringify(require.resolve('better-sqlite3'))});const d=new D(${JSON.stringify(path)});` +
        `d.exec('BEGIN EXCLUSIVE');process.stdout.write('locked\\n');setTimeout(()=>{},60000)`,
    ]);
    try {
      await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
      const run = runCli(['--db', path, 'list'], { cacheDir });
      expectOneLineFailure(run, /is locked by another process/);
    } finally {
      holder.kill();
    }
    // Nothing lost: once the lock is gone, every session is there.
    await new Promise((resolve) => holder.once('exit', resolve));
    expect(parseJson<{ sessions: unknown[] }>(runCli(['--db', path, '--json', 'list'], { cacheDir })).sessions).toHaveLength(3);
  }, 30_000);
});

describe('hostile part JSON', () => {
  const path = join(dir, 'hostile.db');
  const png = Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), Buffer.alloc(2000, 0x42)]);
  {
    const db = emptyOpenCodeDb(path);
    insertSession(db, 'ses_h', 1, 2);
    insertMessage(db, 'msg_h', 'ses_h', 1);
    insertRawPart(db, 'prt_escape', 'msg_h', 'ses_h', 1, JSON.stringify({
      type: 'file', mime: 'image/png', filename: '../../../../tmp/sk-escaped.png', url: `data:image/png;base64,${png.toString('base64')}`,
    }));
    insertRawPart(db, 'prt_notb64', 'msg_h', 'ses_h', 2, JSON.stringify({
      type: 'file', mime: 'application/pdf', filename: 'x.pdf', url: 'data:application/pdf;base64,JVBERi0x@@@not base64###',
    }));
    insertRawPart(db, 'prt_broken', 'msg_h', 'ses_h', 3, '{"type":"text","text":"never closed');
    insertRawPart(db, 'prt_plain', 'msg_h', 'ses_h', 4, JSON.stringify({ type: 'file', mime: 'text/plain', url: 'data:text/plain,hello%20world' }));
    db.close();
  }

  it('a filename with ../ never becomes a path: the file lands in the cache by its hash', () => {
    const result = parseJson<{ path: string; sha256: string; filename: string }>(
      runCli(['--db', path, '--json', 'attachment', 'prt_escape'], { cacheDir }),
    );
    expect(result.filename).toBe('../../../../tmp/sk-escaped.png');
    expect(result.path.startsWith(cacheDir)).toBe(true);
    expect(result.sha256).toBe(createHash('sha256').update(png).digest('hex'));
    expect(existsSync('/tmp/sk-escaped.png')).toBe(false);
  });

  it('a data URL that is not base64 is refused with its offset, and no file is left behind', () => {
    const run = runCli(['--db', path, 'attachment', 'prt_notb64'], { cacheDir });
    expectOneLineFailure(run, /part prt_notb64 attachment 0: data URL is not valid base64 \("@" at payload offset 8\)/);
    expect(readdirSync(join(cacheDir, 'tmp'))).toEqual([]);
  });

  it('a percent-encoded data URL decodes', () => {
    const result = parseJson<{ path: string }>(runCli(['--db', path, '--json', 'attachment', 'prt_plain'], { cacheDir }));
    expect(readFileSync(result.path, 'utf8')).toBe('hello world');
  });

  it('malformed part JSON is shown as unreadable; the rest of the page is intact', () => {
    const page = parseJson<{ messages: { parts: { id: string; type: string; error?: string }[] }[] }>(
      runCli(['--db', path, '--json', 'show', 'ses_h'], { cacheDir }),
    );
    const parts = page.messages[0]?.parts ?? [];
    expect(parts.map((p) => [p.id, p.type])).toEqual([
      ['prt_escape', 'file'],
      ['prt_notb64', 'file'],
      ['prt_broken', 'unreadable'],
      ['prt_plain', 'file'],
    ]);
    expect(parts[2]?.error).toMatch(/malformed JSON/);
  });

  it('stats counts what it can read and does not fail on the broken part', () => {
    const stats = parseJson<{ attachments: { count: number } }>(runCli(['--db', path, '--json', 'stats'], { cacheDir }));
    expect(stats.attachments.count).toBe(3);
  });
});

describe('usage errors', () => {
  it('an unknown command or a bad number exits 2 with one line', () => {
    const path = validDb('usage.db', 1);
    const unknown = runCli(['--db', path, 'frobnicate'], { cacheDir });
    expect(unknown.status).toBe(2);
    expect(unknown.stderr.trim().split('\n')).toHaveLength(1);
    const badLimit = runCli(['--db', path, 'list', '--limit', 'many'], { cacheDir });
    expect(badLimit.status).toBe(2);
    expect(badLimit.stderr).toMatch(/expected a positive whole number/);
    expectOneLineFailure(runCli(['--db', path, 'list', '--cursor', 'zzz'], { cacheDir }), /invalid cursor/, 2);
    expectOneLineFailure(runCli(['--db', path, 'attachment', '../x'], { cacheDir }), /not an attachment reference/, 2);
  });
});
