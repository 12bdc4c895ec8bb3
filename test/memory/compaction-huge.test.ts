/**
 * The memory ceiling for compaction: a `read` tool part carrying a 400 MB base64 attachment,
 * snapshotted three times (pending; completed, 400 MB; pruned, 400 MB and equal to the row), is
 * compacted and the space reclaimed in a child process with a 64 MB V8 heap. Every payload is
 * built inside SQLite, never as a JavaScript string; compaction compares them in SQL. The row
 * orders its keys differently from the snapshot, as OpenCode's rows do.
 */
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { OPENCODE_118_DDL } from '../fixtures/event-log.js';
import { ROOT, tempDir } from '../helpers/env.js';

const MB = 1024 * 1024;
/** 'QUJD' (base64 of "ABC") repeated: 4 characters per zeroblob byte. */
const ATTACHMENT_CHARS = 400 * MB;
const dir = tempDir('sk-compaction-huge-');
const dbPath = join(dir, 'opencode.db');
const S = 'ses_huge00000000000000000000001';
const M = 'msg_huge00000000000000000000001';
const P = 'prt_huge00000000000000000000001';

beforeAll(() => {
  const db = new Database(dbPath);
  db.pragma('journal_mode = WAL');
  db.exec(OPENCODE_118_DDL);
  db.prepare("INSERT INTO project (id, worktree, time_created, time_updated, sandboxes) VALUES ('global', '/', 1, 1, '[]')").run();
  const info = { id: S, slug: 's', projectID: 'global', directory: '/w', path: '', cost: 0, tokens: { input: 0, output: 0, reasoning: 0, cache: { read: 0, write: 0 } }, title: 'PDF', version: '1.18.33', time: { created: 1, updated: 1 } };
  db.prepare("INSERT INTO session (id, project_id, slug, directory, path, title, version, time_created, time_updated) VALUES (?, 'global', 's', '/w', '', 'PDF', '1.18.33', 1, 1)").run(S);
  db.prepare('INSERT INTO event_sequence (aggregate_id, seq) VALUES (?, 4)').run(S);
  const event = db.prepare('INSERT INTO event (id, aggregate_id, seq, type, data) VALUES (?, ?, ?, ?, ?)');
  event.run('evt_0', S, 0, 'session.created.1', JSON.stringify({ sessionID: S, info }));
  const message = { role: 'assistant', time: { created: 2 }, modelID: 'm', providerID: 'p' };
  db.prepare('INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?, ?, 2, 2, ?)').run(M, S, JSON.stringify(message));
  event.run('evt_1', S, 1, 'message.updated.1', JSON.stringify({ sessionID: S, info: { id: M, sessionID: S, ...message } }));
  const ids = `"id":"${P}","sessionID":"${S}","messageID":"${M}",`;
  event.run('evt_2', S, 2, 'message.part.updated.1', `{"sessionID":"${S}","part":{${ids}"type":"tool","callID":"c1","tool":"read","state":{"status":"pending","input":{},"raw":""}},"time":3}`);
  // The row: the pruned state, with its 400 MB attachment, assembled by SQLite.
  db.prepare(
    `INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?, ?, ?, 3, 5,
       '{"type":"tool","callID":"c1","tool":"read","state":{"status":"completed","input":{"filePath":"/w/scan.pdf"},"output":"PDF read",' ||
       '"attachments":[{"type":"file","mime":"application/pdf","url":"data:application/pdf;base64,' || replace(hex(zeroblob(?)), '00', 'QUJD') || '"}],' ||
       '"time":{"start":3,"end":4,"compacted":5}}}')`,
  ).run(P, M, S, ATTACHMENT_CHARS / 4);
  // Its newest snapshot: the row's values with the ids put back and the keys in schema order
  // (tool before callID), as OpenCode encodes it; the completed one before it lacks the mark.
  db.prepare(
    `INSERT INTO event (id, aggregate_id, seq, type, data)
     SELECT 'evt_4', ?, 4, 'message.part.updated.1', '{"sessionID":"${S}","part":{${ids}"type":"tool","tool":"read","callID":"c1","state":' || (data -> '$.state') || '},"time":5}'
     FROM part WHERE id = ?`,
  ).run(S, P);
  db.prepare(`INSERT INTO event (id, aggregate_id, seq, type, data) SELECT 'evt_3', aggregate_id, 3, type, replace(replace(data, ',"compacted":5', ''), '"time":5}', '"time":4}') FROM event WHERE id = 'evt_4'`).run();
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
}, 300_000);

describe('compaction under a 64 MB heap', () => {
  it('drops a superseded 400 MB snapshot, compares the 400 MB newest one with its row, and reclaims the space', () => {
    const before = new Database(dbPath, { readonly: true });
    const sizes = before.prepare('SELECT id, octet_length(data) AS bytes FROM event ORDER BY seq').all() as Array<{ id: string; bytes: number }>;
    before.close();
    expect(sizes.find((s) => s.id === 'evt_3')?.bytes).toBeGreaterThan(ATTACHMENT_CHARS);

    const run = spawnSync(process.execPath, ['--max-old-space-size=64', join(ROOT, 'test', 'helpers', 'compact-child.mjs'), dbPath, '--reclaim'], {
      encoding: 'utf8',
      maxBuffer: 16 * MB,
    });
    expect(run.stderr).not.toMatch(/heap out of memory/);
    expect(run.signal).toBeNull();
    expect(run.status).toBe(0);
    const done = JSON.parse(run.stdout.trim().split('\n').pop() as string) as {
      result: { deleted: { count: number; bytes: number }; kept: Record<string, { count: number }> };
      reclaim: { mode: string; bytesBefore: number; bytesAfter: number };
      heapPeak: number;
      vmHwm: number | null;
    };
    expect(done.result.deleted).toEqual({ count: 1, bytes: sizes.find((s) => s.id === 'evt_3')?.bytes });
    expect(done.result.kept['first']?.count).toBe(1);
    expect(done.heapPeak).toBeLessThan(32 * MB);
    expect(done.reclaim.mode).toBe('vacuum');
    expect(done.reclaim.bytesBefore - done.reclaim.bytesAfter).toBeGreaterThan(ATTACHMENT_CHARS * 0.95);

    const after = new Database(dbPath, { readonly: true });
    expect(after.prepare('SELECT id FROM event ORDER BY seq').pluck().all()).toEqual(['evt_0', 'evt_1', 'evt_2', 'evt_4']);
    expect(after.pragma('integrity_check', { simple: true })).toBe('ok');
    after.close();
  }, 300_000);
});
