import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ID_WRAP_MS } from '../fixtures/ids.ts';
import { optionsFromArgs, parseSize } from '../fixtures/cli.ts';
import { generateFixture, hugeAttachmentLayout, type FixtureSummary } from '../fixtures/generate.ts';

const MB = 1024 * 1024;
const PART_TYPES = ['text', 'reasoning', 'file', 'tool', 'step-start', 'step-finish', 'snapshot', 'patch', 'agent', 'subtask', 'retry', 'compaction'];
const PDF_MAGIC = Buffer.from('%PDF-1.7', 'latin1');
const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

let dir: string;
let summary: FixtureSummary;
let db: Database.Database;

function digest(path: string, sql: string): string {
  const d = new Database(path, { readonly: true });
  try {
    const hash = createHash('sha256');
    for (const row of d.prepare(sql).raw().iterate()) hash.update(JSON.stringify(row)).update('\n');
    return hash.digest('hex');
  } finally {
    d.close();
  }
}

/** Decodes a data: URL the test's own way. */
function decodeDataUrl(url: string): { mime: string; bytes: Buffer } {
  const m = /^data:([^;,]+);base64,([A-Za-z0-9+/]*={0,2})$/.exec(url);
  if (m === null || m[1] === undefined || m[2] === undefined) throw new Error(`not a base64 data URL: ${url.slice(0, 60)}`);
  return { mime: m[1], bytes: Buffer.from(m[2], 'base64') };
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sk-fixtures-'));
  summary = generateFixture({ path: join(dir, 'a', 'opencode.db'), targetBytes: 5 * MB, seed: 1 });
  db = new Database(summary.path, { readonly: true });
});

afterAll(() => {
  db?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('generateFixture (5 MB)', () => {
  it('is a sound WAL database in OpenCode shape', () => {
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    expect(db.pragma('foreign_key_check')).toEqual([]);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('auto_vacuum', { simple: true })).toBe(0);
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all();
    for (const t of ['project', 'session', 'message', 'part', 'todo', 'session_share', 'permission', 'event_sequence', 'event']) expect(tables).toContain(t);
    expect(summary.fileBytes).toBeGreaterThan(4 * MB);
    expect(summary.payloadBytes).toBeGreaterThan(4 * MB);
    expect(summary.payloadBytes).toBeLessThan(7 * MB);
  });

  it('summary counts equal SQL counts', () => {
    const count = (sql: string): number => db.prepare(sql).pluck().get() as number;
    expect(summary.sessions).toBe(count('SELECT COUNT(*) FROM session'));
    expect(summary.rootSessions).toBe(count('SELECT COUNT(*) FROM session WHERE parent_id IS NULL'));
    expect(summary.messages).toBe(count('SELECT COUNT(*) FROM message'));
    expect(summary.parts).toBe(count('SELECT COUNT(*) FROM part'));
    expect(summary.events).toBe(count('SELECT COUNT(*) FROM event'));
    expect(summary.projects).toBe(count('SELECT COUNT(*) FROM project'));
    expect(summary.rootSessions).toBeGreaterThanOrEqual(8);
    expect(count('SELECT COUNT(*) FROM permission')).toBe(summary.projects);
    expect(count('SELECT COUNT(*) FROM todo')).toBeGreaterThan(0);
    expect(count('SELECT COUNT(*) FROM session_share')).toBeGreaterThan(0);
    expect(count('SELECT COUNT(*) FROM event_sequence')).toBe(summary.sessions);
    expect(count('SELECT COUNT(*) FROM event_sequence s WHERE s.seq <> (SELECT MAX(seq) FROM event e WHERE e.aggregate_id = s.aggregate_id)')).toBe(0);
    const projects = db.prepare('SELECT id FROM project').pluck().all() as string[];
    for (const id of projects) expect(id === 'global' || /^[0-9a-f]{40}$/.test(id)).toBe(true);
  });

  it('has parts of every type, and part.data without ids', () => {
    const types = db.prepare("SELECT DISTINCT json_extract(data, '$.type') FROM part").pluck().all();
    for (const t of PART_TYPES) expect(types).toContain(t);
    const withIds = db.prepare("SELECT COUNT(*) FROM part WHERE json_extract(data, '$.id') IS NOT NULL OR json_extract(data, '$.sessionID') IS NOT NULL OR json_extract(data, '$.messageID') IS NOT NULL").pluck().get();
    expect(withIds).toBe(0);
    const readWithAttachments = db
      .prepare("SELECT COUNT(*) FROM part WHERE json_extract(data, '$.tool') = 'read' AND json_array_length(data, '$.state.attachments') > 0")
      .pluck()
      .get() as number;
    expect(readWithAttachments).toBeGreaterThan(0);
    const notCompleted = db.prepare("SELECT COUNT(*) FROM part WHERE json_extract(data, '$.type') = 'tool' AND json_extract(data, '$.state.status') <> 'completed'").pluck().get();
    expect(notCompleted).toBe(0);
    const badTimes = db.prepare('SELECT COUNT(*) FROM part WHERE time_updated < time_created').pluck().get();
    expect(badTimes).toBe(0);
    const eventTypes = db.prepare('SELECT DISTINCT type FROM event').pluck().all();
    expect(eventTypes).toEqual(expect.arrayContaining(['message.updated.1', 'session.updated.1', 'message.part.updated.1']));
  });

  it('attachments.bytes equals the decoded bytes of every data: URL', () => {
    const fileUrls = db.prepare("SELECT json_extract(data, '$.url') FROM part WHERE json_extract(data, '$.type') = 'file'").pluck().all() as string[];
    const toolUrls = db
      .prepare("SELECT json_extract(a.value, '$.url') FROM part, json_each(part.data, '$.state.attachments') AS a WHERE json_extract(part.data, '$.type') = 'tool'")
      .pluck()
      .all() as string[];
    const urls = [...fileUrls, ...toolUrls];
    let bytes = 0;
    const mimes = new Set<string>();
    for (const url of urls) {
      const { mime, bytes: decoded } = decodeDataUrl(url);
      mimes.add(mime);
      bytes += decoded.length;
      const magic = mime === 'application/pdf' ? PDF_MAGIC : PNG_MAGIC;
      expect(decoded.subarray(0, magic.length).equals(magic)).toBe(true);
    }
    expect(urls.length).toBe(summary.attachments.count);
    expect(bytes).toBe(summary.attachments.bytes);
    expect([...mimes].sort()).toEqual(['application/pdf', 'image/png']);
    expect(toolUrls.length).toBeGreaterThan(0);
    // attachments carry a large share of the bytes, and there are a few big ones
    expect(summary.attachments.bytes).toBeGreaterThan(summary.payloadBytes * 0.2);
  });

  it('messages alternate user/assistant with strictly increasing times and OpenCode fields', () => {
    const rows = db
      .prepare("SELECT session_id, time_created, time_updated, json_extract(data, '$.role') AS role, data FROM message ORDER BY session_id, time_created, id")
      .all() as Array<{ session_id: string; time_created: number; time_updated: number; role: string; data: string }>;
    let prev: (typeof rows)[number] | undefined;
    for (const row of rows) {
      const data = JSON.parse(row.data) as Record<string, unknown>;
      expect(data.id).toBeUndefined();
      expect(row.time_updated).toBeGreaterThanOrEqual(row.time_created);
      if (row.role === 'user') {
        expect(data).toMatchObject({ time: { created: row.time_created }, agent: expect.any(String), model: { providerID: expect.any(String), modelID: expect.any(String) } });
      } else {
        expect(row.role).toBe('assistant');
        expect(data).toMatchObject({
          modelID: expect.any(String),
          providerID: expect.any(String),
          cost: expect.any(Number),
          tokens: { input: expect.any(Number), output: expect.any(Number), reasoning: expect.any(Number), cache: { read: expect.any(Number), write: expect.any(Number) } },
          finish: expect.any(String),
          path: { cwd: expect.any(String), root: expect.any(String) },
          time: { created: row.time_created, completed: expect.any(Number) },
        });
      }
      if (prev !== undefined && prev.session_id === row.session_id) {
        expect(row.time_created).toBeGreaterThan(prev.time_created);
        expect(row.role).not.toBe(prev.role);
      } else {
        expect(row.role).toBe('user');
      }
      prev = row;
    }
  });

  it('session ids straddle the 2026-08-14 wrap: ORDER BY id is not time order', () => {
    const byId = db.prepare('SELECT id FROM session ORDER BY id').pluck().all();
    const byTime = db.prepare('SELECT id FROM session ORDER BY time_updated DESC, id').pluck().all();
    expect(byId).not.toEqual(byTime);
    const before = db.prepare('SELECT COUNT(*) FROM session WHERE time_created < ?').pluck().get(ID_WRAP_MS) as number;
    const after = db.prepare('SELECT COUNT(*) FROM session WHERE time_created >= ?').pluck().get(ID_WRAP_MS) as number;
    expect(before).toBeGreaterThan(0);
    expect(after).toBeGreaterThan(0);
    // post-wrap sessions' ids sort after pre-wrap ones although they are newer
    const newestId = db.prepare('SELECT id FROM session ORDER BY time_updated DESC LIMIT 1').pluck().get();
    expect(byId[0]).not.toBe(newestId);
    for (const id of byId as string[]) expect(id).toMatch(/^ses_[0-9a-f]{12}[0-9A-Za-z]{14}$/);
    const anchor = Date.UTC(2026, 10, 1);
    const range = db.prepare('SELECT MIN(time_created) lo, MAX(time_updated) hi FROM session').get() as { lo: number; hi: number };
    expect(range.lo).toBeGreaterThanOrEqual(anchor - 151 * 86_400_000);
    expect(db.prepare('SELECT COUNT(*) FROM session WHERE time_updated < time_created').pluck().get()).toBe(0);
    expect(db.prepare('SELECT COUNT(*) FROM session WHERE time_archived IS NOT NULL AND time_archived < time_updated').pluck().get()).toBe(0);
  });

  it('child sessions point at existing roots and live inside their lifetime', () => {
    const children = db
      .prepare(
        `SELECT c.id, c.time_created AS cc, c.time_updated AS cu, p.id AS pid, p.parent_id AS pp, p.time_created AS pc, p.time_updated AS pu
         FROM session c LEFT JOIN session p ON p.id = c.parent_id WHERE c.parent_id IS NOT NULL`,
      )
      .all() as Array<{ id: string; cc: number; cu: number; pid: string | null; pp: string | null; pc: number; pu: number }>;
    expect(children.length).toBeGreaterThan(0);
    for (const c of children) {
      expect(c.pid).not.toBeNull();
      expect(c.pp).toBeNull();
      expect(c.cc).toBeGreaterThanOrEqual(c.pc);
      expect(c.cu).toBeLessThanOrEqual(c.pu);
    }
    // the parent's task tool part names the child
    const linked = db.prepare("SELECT COUNT(*) FROM part WHERE json_extract(data, '$.tool') = 'task' AND json_extract(data, '$.state.metadata.sessionId') IN (SELECT id FROM session WHERE parent_id IS NOT NULL)").pluck().get();
    expect(linked).toBe(children.length);
  });

  it('writes storage/session_diff/<sessionID>.json for sessions with diffs', () => {
    const withDiffs = db.prepare('SELECT id, summary_files, summary_diffs FROM session WHERE summary_diffs IS NOT NULL').all() as Array<{ id: string; summary_files: number; summary_diffs: string }>;
    expect(withDiffs.length).toBe(summary.diffFiles);
    expect(withDiffs.length).toBeGreaterThan(0);
    for (const s of withDiffs) {
      const file = join(dir, 'a', 'storage', 'session_diff', `${s.id}.json`);
      expect(existsSync(file)).toBe(true);
      const diffs = JSON.parse(readFileSync(file, 'utf8')) as unknown[];
      expect(Array.isArray(diffs)).toBe(true);
      expect(diffs.length).toBe(s.summary_files);
      expect((JSON.parse(s.summary_diffs) as unknown[]).length).toBe(s.summary_files);
    }
  });

  it('is deterministic: same seed, same rows; other seed, other rows', () => {
    const again = generateFixture({ path: join(dir, 'b', 'opencode.db'), targetBytes: 5 * MB, seed: 1 });
    const other = generateFixture({ path: join(dir, 'c', 'opencode.db'), targetBytes: 5 * MB, seed: 2 });
    const partsSql = 'SELECT id, data FROM part ORDER BY id';
    expect(digest(again.path, partsSql)).toBe(digest(summary.path, partsSql));
    for (const sql of ['SELECT * FROM session ORDER BY id', 'SELECT * FROM message ORDER BY id', 'SELECT * FROM event ORDER BY id', 'SELECT * FROM todo ORDER BY session_id, position']) {
      expect(digest(again.path, sql)).toBe(digest(summary.path, sql));
    }
    expect(digest(other.path, partsSql)).not.toBe(digest(summary.path, partsSql));
    const { fileBytes: _a, path: _p, ...rest } = summary;
    const { fileBytes: _b, path: _q, ...restAgain } = again;
    expect(restAgain).toEqual(rest);
    // the same diff files too
    const firstDiff = db.prepare('SELECT id FROM session WHERE summary_diffs IS NOT NULL ORDER BY id LIMIT 1').pluck().get() as string;
    expect(readFileSync(join(dir, 'b', 'storage', 'session_diff', `${firstDiff}.json`), 'utf8')).toBe(readFileSync(join(dir, 'a', 'storage', 'session_diff', `${firstDiff}.json`), 'utf8'));
  });

  it('refuses to overwrite unless asked; honours options', () => {
    expect(() => generateFixture({ path: summary.path, targetBytes: MB })).toThrow(/exists/);
    const path = join(dir, 'd', 'opencode.db');
    const s = generateFixture({ path, targetBytes: 2 * MB, seed: 3, events: false, diffFiles: false, autoVacuum: 'incremental', rootSessions: 9 });
    const s2 = generateFixture({ path, targetBytes: 2 * MB, seed: 3, events: false, diffFiles: false, autoVacuum: 'incremental', rootSessions: 9, overwrite: true });
    expect(s2.rootSessions).toBe(9);
    expect(s.events).toBe(0);
    expect(existsSync(join(dir, 'd', 'storage', 'session_diff'))).toBe(false);
    const d = new Database(path, { readonly: true });
    try {
      expect(d.pragma('auto_vacuum', { simple: true })).toBe(2);
      expect(d.prepare('SELECT COUNT(*) FROM event').pluck().get()).toBe(0);
      expect(d.pragma('integrity_check', { simple: true })).toBe('ok');
    } finally {
      d.close();
    }
  });
});

describe('huge attachment', () => {
  it('layout decodes to exactly the requested size', () => {
    for (const size of [4096, 4097, 4098, 5000, 123_457, MB, 20 * MB + 1, 300 * MB, 300 * MB + 47]) {
      const layout = hugeAttachmentLayout(size);
      expect(layout.decodedBytes).toBe(size);
      expect(layout.prefix.includes('00')).toBe(false);
      expect(layout.suffix.includes('00')).toBe(false);
      expect(layout.totalChars).toBe(layout.prefix.length + layout.blocks * 64 + layout.suffix.length);
    }
    expect(() => hugeAttachmentLayout(100)).toThrow(RangeError);
  });

  it('is built inside SQLite with the exact decoded length and PDF magic', () => {
    const huge = 20 * MB + 5;
    const s = generateFixture({ path: join(dir, 'h', 'opencode.db'), targetBytes: 2 * MB, hugeAttachmentBytes: huge, seed: 5 });
    expect(s.hugePartId).toMatch(/^prt_/);
    expect(s.hugeSessionId).toMatch(/^ses_/);
    const d = new Database(s.path, { readonly: true });
    try {
      expect(d.pragma('integrity_check', { simple: true })).toBe('ok');
      const row = d.prepare('SELECT session_id, CAST(data AS BLOB) AS data FROM part WHERE id = ?').get(s.hugePartId) as { session_id: string; data: Buffer };
      expect(row.session_id).toBe(s.hugeSessionId);
      const head = '{"type":"file","mime":"application/pdf","filename":"huge.pdf","url":"data:application/pdf;base64,';
      expect(row.data.subarray(0, head.length).toString('latin1')).toBe(head);
      expect(row.data.subarray(row.data.length - 2).toString('latin1')).toBe('"}');
      const b64 = row.data.subarray(head.length, row.data.length - 2).toString('latin1');
      expect(/^[A-Za-z0-9+/]*={0,2}$/.test(b64)).toBe(true);
      const decoded = Buffer.from(b64, 'base64');
      expect(decoded.length).toBe(huge);
      expect(decoded.subarray(0, 8).toString('latin1')).toBe('%PDF-1.7');
      expect(decoded.subarray(decoded.length - 7).toString('latin1')).toBe('\n%%EOF\n');
      // one file part in its session; it is counted in the summary
      const files = d.prepare("SELECT COUNT(*) FROM part WHERE session_id = ? AND json_extract(data, '$.type') = 'file'").pluck().get(s.hugeSessionId);
      expect(files).toBe(1);
      const others = (d.prepare("SELECT json_extract(data, '$.url') FROM part WHERE json_extract(data, '$.type') = 'file' AND id <> ?").pluck().all(s.hugePartId) as string[])
        .concat(d.prepare("SELECT json_extract(a.value, '$.url') FROM part, json_each(part.data, '$.state.attachments') AS a").pluck().all() as string[])
        .reduce((sum, url) => sum + decodeDataUrl(url).bytes.length, 0);
      expect(s.attachments.bytes).toBe(others + huge);
      expect(s.sessions).toBe(d.prepare('SELECT COUNT(*) FROM session').pluck().get());
    } finally {
      d.close();
    }
  });
});

describe('fixture CLI arguments', () => {
  it('parses sizes', () => {
    expect(parseSize('600MB')).toBe(600 * MB);
    expect(parseSize('1.5GB')).toBe(1.5 * 1024 * MB);
    expect(parseSize('300kb')).toBe(300 * 1024);
    expect(parseSize('4096')).toBe(4096);
    expect(parseSize('2M')).toBe(2 * MB);
    expect(() => parseSize('3XB')).toThrow();
    expect(() => parseSize('-1MB')).toThrow();
  });

  it('maps flags to options', () => {
    const o = optionsFromArgs(['--out', 'x.db', '--size', '600MB', '--huge-attachment', '300MB', '--seed', '7', '--sessions', '12', '--overwrite', '--incremental']);
    expect(o).toEqual({ path: 'x.db', targetBytes: 600 * MB, hugeAttachmentBytes: 300 * MB, seed: 7, rootSessions: 12, overwrite: true, autoVacuum: 'incremental' });
    expect(() => optionsFromArgs(['--size', '1MB'])).toThrow(/--out/);
    expect(() => optionsFromArgs(['--out', 'x', '--bogus'])).toThrow();
  });
});
