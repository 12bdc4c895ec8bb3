/**
 * The real-OpenCode harness itself: the installed binary, the data folder it built (both storage
 * layouts, attachments, children, events, diffs), and running OpenCode again on a copy.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cachedOpenCodeData } from './build-data.ts';
import {
  apiMessages, exportSession, importSession, listSessions, OPENCODE_DATA_TIMEOUT_MS, realOpenCode, realOpenCodeData, runOpenCode,
  withServe, type ManifestSession, type OpenCodeData,
} from '../helpers/opencode.ts';

const SCHEMA_FILE = join(dirname(fileURLToPath(import.meta.url)), 'schema-1.18.33.sql');
const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

let data: OpenCodeData;
let db: Database.Database;

function one(scenario: string): ManifestSession {
  const found = data.sessions(scenario);
  if (found.length !== 1) throw new Error(`manifest has ${found.length} sessions of scenario ${scenario}, expected 1`);
  return found[0]!;
}

function count(sql: string, ...params: unknown[]): number {
  return (db.prepare(sql).get(...params) as { n: number }).n;
}

function decodeDataUrl(url: string): { mime: string; bytes: Buffer } {
  const match = /^data:([^;,]+);base64,(.*)$/s.exec(url);
  if (match?.[1] === undefined || match[2] === undefined) throw new Error(`not a base64 data: URL: ${url.slice(0, 60)}`);
  return { mime: match[1], bytes: Buffer.from(match[2], 'base64') };
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

beforeAll(async () => {
  data = await realOpenCodeData();
  db = new Database(data.dbPath, { readonly: true });
}, OPENCODE_DATA_TIMEOUT_MS);

afterAll(() => {
  db?.close();
  data?.remove();
});

describe('the installed OpenCode', () => {
  it('is opencode-ai 1.18.33 from npm', async () => {
    const { bin, version } = await realOpenCode();
    expect(version, 'pinned version').toBe('1.18.33');
    expect(existsSync(bin), `binary missing at ${bin}`).toBe(true);
    const run = await runOpenCode(data.env, ['--version']);
    expect(run.stdout.trim(), `opencode --version said: ${run.stdout} ${run.stderr}`).toBe('1.18.33');
  });
});

describe('the built data folder', () => {
  it('has about 30 sessions in both storage layouts, every one in the database', () => {
    const sessions = data.manifest.sessions;
    expect(sessions.length, 'session count').toBeGreaterThanOrEqual(28);
    expect(sessions.filter((s) => s.layout === 'message/part').length, 'message/part sessions').toBeGreaterThanOrEqual(15);
    expect(sessions.filter((s) => s.layout === 'session_message').length, 'session_message sessions').toBeGreaterThanOrEqual(6);
    expect(count('SELECT count(*) AS n FROM session'), 'rows in session vs manifest').toBe(sessions.length);
  });

  it('keeps each session in exactly one layout, and OpenCode\'s APIs count what the rows hold', () => {
    for (const s of data.manifest.sessions) {
      const messages = count('SELECT count(*) AS n FROM message WHERE session_id = ?', s.id);
      const v2 = count('SELECT count(*) AS n FROM session_message WHERE session_id = ?', s.id);
      if (s.layout === 'message/part') {
        expect(v2, `${s.scenario} ${s.id}: message/part session has session_message rows`).toBe(0);
        expect(messages, `${s.scenario} ${s.id}: classic API count vs message rows`).toBe(s.api.classicMessages);
        expect(s.api.v2Messages, `${s.scenario}: /api/session lists a message/part session's messages`).toBe(0);
      } else {
        expect(messages, `${s.scenario} ${s.id}: session_message session has message rows`).toBe(0);
        expect(v2, `${s.scenario} ${s.id}: /api count vs session_message rows`).toBe(s.api.v2Messages);
        expect(s.api.classicMessages, `${s.scenario}: classic API lists a session_message session's messages`).toBe(0);
      }
      expect(messages + v2, `${s.scenario} ${s.id} has no messages at all`).toBeGreaterThan(0);
    }
  });

  it('stores -f attachments as base64 data: URLs in part.data, byte for byte the files given', () => {
    const big = one('run-big-pdf');
    const parts = db.prepare("SELECT data FROM part WHERE session_id = ? AND json_extract(data, '$.type') = 'file'").all(big.id) as Array<{ data: string }>;
    const pdfs = parts.map((p) => JSON.parse(p.data) as { mime: string; url: string }).filter((p) => p.mime === 'application/pdf');
    expect(pdfs.length, 'file parts of the big PDF').toBe(1);
    const decoded = decodeDataUrl(pdfs[0]!.url);
    const original = readFileSync(join(data.projectDir, 'assets', 'report.pdf'));
    expect(original.length, 'the big PDF is a few MB').toBeGreaterThan(2 * 1024 * 1024);
    expect(sha256(decoded.bytes), 'decoded part bytes vs report.pdf').toBe(sha256(original));
  });

  it('stores read-tool images and PDFs in state.attachments', () => {
    for (const [scenario, mime] of [['read-image', 'image/png'], ['read-pdf', 'application/pdf']] as const) {
      const s = one(scenario);
      const rows = db.prepare("SELECT data FROM part WHERE session_id = ? AND json_extract(data, '$.tool') = 'read'").all(s.id) as Array<{ data: string }>;
      const attachments = rows.flatMap((r) => (JSON.parse(r.data) as { state: { attachments?: Array<{ mime: string; url: string }> } }).state.attachments ?? []);
      expect(attachments.map((a) => a.mime), `${scenario} attachments`).toContain(mime);
      expect(decodeDataUrl(attachments.find((a) => a.mime === mime)!.url).bytes.length, `${scenario} attachment is empty`).toBeGreaterThan(100);
    }
  });

  it('stores newer-API attachments as base64 in session_message.data and session_input.prompt', () => {
    const s = one('v2-image');
    const user = db.prepare("SELECT data FROM session_message WHERE session_id = ? AND type = 'user'").get(s.id) as { data: string } | undefined;
    expect(user, 'v2-image has a user session_message').toBeDefined();
    const files = (JSON.parse(user!.data) as { files?: Array<{ uri: string; mime: string }> }).files ?? [];
    const png = decodeDataUrl(files[0]?.uri ?? '');
    expect(png.bytes.subarray(0, 8).equals(PNG_MAGIC), 'decoded session_message file is a PNG').toBe(true);
    expect(sha256(png.bytes), 'session_message file vs photo.png').toBe(sha256(readFileSync(join(data.projectDir, 'assets', 'photo.png'))));
    const input = db.prepare('SELECT prompt FROM session_input WHERE session_id = ?').get(s.id) as { prompt: string };
    expect(input.prompt, 'session_input carries the same base64').toContain(files[0]!.uri.slice(0, 200));
  });

  it('has subtask children whose parent_id names a session of the data', () => {
    const children = data.manifest.sessions.filter((s) => s.parentId !== null);
    expect(children.length, 'child sessions').toBeGreaterThanOrEqual(3);
    for (const child of children) {
      expect(data.manifest.sessions.some((s) => s.id === child.parentId), `${child.id}: parent ${child.parentId} missing`).toBe(true);
      expect(child.scenario, `${child.id} is not a subtask's child`).toMatch(/:child$/);
    }
  });

  it('has events for the sessions OpenCode ran, of both kinds, with event_sequence at the last seq', () => {
    const types = new Set((db.prepare('SELECT DISTINCT type FROM event').all() as Array<{ type: string }>).map((r) => r.type));
    for (const t of ['session.created.1', 'session.updated.1', 'message.updated.1', 'message.part.updated.1', 'session.next.prompted.1']) {
      expect(types.has(t), `no ${t} events`).toBe(true);
    }
    const mismatched = count('SELECT count(*) AS n FROM event_sequence s WHERE s.seq <> (SELECT max(seq) FROM event e WHERE e.aggregate_id = s.aggregate_id)');
    expect(mismatched, 'event_sequence rows whose seq is not the last event').toBe(0);
    const big = one('run-big-pdf');
    const biggest = count("SELECT max(length(data)) AS n FROM event WHERE aggregate_id = ? AND type = 'message.part.updated.1'", big.id);
    expect(biggest, 'the PDF part event carries the base64 too').toBeGreaterThan(2 * 1024 * 1024);
  });

  it('has the files beside the database: diffs (also of a deleted session), tool output, snapshots', () => {
    const diffs = join(data.dataDir, 'storage', 'session_diff');
    expect(existsSync(join(diffs, `${one('write-revert').id}.json`)), 'session_diff of the reverted session').toBe(true);
    const deleted = data.manifest.deleted[0];
    expect(deleted, 'a deleted session in the manifest').toBeDefined();
    expect(count('SELECT count(*) AS n FROM session WHERE id = ?', deleted!.id), 'deleted session row').toBe(0);
    expect(existsSync(join(diffs, `${deleted!.id}.json`)), 'OpenCode leaves the deleted session\'s diff file').toBe(deleted!.diffFileLeft);
    expect(readdirSync(join(data.dataDir, 'tool-output')).length, 'tool-output files').toBeGreaterThan(0);
    expect(readdirSync(join(data.dataDir, 'snapshot')).length, 'snapshot repositories').toBeGreaterThan(0);
    expect(statSync(join(data.dataDir, 'log')).isDirectory(), 'log folder').toBe(true);
  });

  it('has pruned tool outputs, a compaction and an archived session', () => {
    const pruned = one('pruned-tool-output');
    expect(count("SELECT count(*) AS n FROM part WHERE session_id = ? AND json_extract(data, '$.state.time.compacted') IS NOT NULL", pruned.id), 'compacted tool parts').toBeGreaterThan(0);
    expect(count("SELECT count(*) AS n FROM part WHERE session_id = ? AND json_extract(data, '$.type') = 'compaction'", one('summarized').id), 'compaction part').toBe(1);
    expect(count('SELECT count(*) AS n FROM session WHERE id = ? AND time_archived IS NOT NULL', one('archived').id), 'archived session').toBe(1);
  });

  it('matches the schema committed as schema-1.18.33.sql (sqlite3 .schema output)', () => {
    const live = (db.prepare('SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY rowid').all() as Array<{ sql: string }>).map((r) => `${r.sql};`);
    // The sqlite3 shell prints a quoted table name's CREATE TABLE as CREATE TABLE IF NOT EXISTS.
    const committed = readFileSync(SCHEMA_FILE, 'utf8').replace(/CREATE TABLE IF NOT EXISTS /g, 'CREATE TABLE ').trim();
    expect(live.join('\n'), 'live schema differs from test/opencode/schema-1.18.33.sql').toBe(committed);
  });

  it('is copied byte for byte when relocation is off', async () => {
    const cache = await cachedOpenCodeData();
    const exact = await realOpenCodeData({ relocate: false });
    try {
      const cached = readFileSync(join(cache.root, 'home', '.local', 'share', 'opencode', 'opencode.db'));
      expect(sha256(readFileSync(exact.dbPath)), 'copied opencode.db vs cache').toBe(sha256(cached));
    } finally {
      exact.remove();
    }
  });
});

describe('OpenCode on a copy', () => {
  it('exports a session of each layout (to a file: the big one is far over a pipe buffer)', async () => {
    const big = one('run-big-pdf');
    const { file, exported } = await exportSession(data.env, big.id, { cwd: data.projectDir });
    expect(statSync(file).size, 'export size').toBeGreaterThan(2 * 1024 * 1024);
    expect(exported.info.id, 'exported id').toBe(big.id);
    expect(exported.messages.length, 'exported messages vs API count').toBe(big.api.classicMessages);
    const fileParts = exported.messages.flatMap((m) => m.parts).filter((p) => p.type === 'file');
    const row = db.prepare("SELECT data FROM part WHERE session_id = ? AND json_extract(data, '$.mime') = 'application/pdf'").get(big.id) as { data: string };
    expect(fileParts.map((p) => p['url']), 'exported PDF URL vs part.data').toContain((JSON.parse(row.data) as { url: string }).url);

    const v2 = one('v2-tools');
    const newer = await exportSession(data.env, v2.id, { cwd: data.projectDir });
    expect(newer.exported.info.id, 'exported v2 id').toBe(v2.id);
    expect(newer.exported.messages.length, 'export of a session_message session').toBe(0);
  });

  it('imports the export file kept with the data into the project', async () => {
    const source = join(data.root, data.manifest.exports['imported-source'] ?? 'missing');
    const id = (JSON.parse(readFileSync(source, 'utf8')) as { info: { id: string } }).info.id;
    await importSession(data.env, source, { cwd: data.projectDir });
    const check = new Database(data.dbPath, { readonly: true });
    try {
      const row = check.prepare('SELECT directory FROM session WHERE id = ?').get(id) as { directory: string } | undefined;
      expect(row?.directory, 'imported session moves to the importing directory').toBe(data.projectDir);
    } finally {
      check.close();
    }
  });

  it('serves both APIs with the counts the manifest recorded', async () => {
    await withServe(data.env, async (baseUrl) => {
      for (const scenario of ['plain', 'v2-multi-turn', 'subtask']) {
        const s = one(scenario);
        const { classic, v2 } = await apiMessages(baseUrl, s.id);
        expect([classic.length, v2.length], `${scenario}: classic and /api message counts`).toEqual([s.api.classicMessages, s.api.v2Messages]);
      }
      const listed = await listSessions(baseUrl, { directory: data.projectDir });
      expect(listed.v2.map((s) => s.id), '/api/session lists message/part sessions too').toContain(one('plain').id);
      expect(listed.v2.map((s) => s.id), '/api/session lists session_message sessions').toContain(one('v2-text').id);
      expect(listed.classic.map((s) => s.id), 'classic list of the project').toContain(one('plain').id);
    }, { cwd: data.projectDir });
  });

  it('continues a session with `opencode run --session` in the copy, leaving the cache alone', async () => {
    const s = one('plain');
    const cache = await cachedOpenCodeData();
    const cachedDb = join(cache.root, 'home', '.local', 'share', 'opencode', 'opencode.db');
    const cacheDigest = (): string[] => ['', '-wal'].map((suffix) => (existsSync(cachedDb + suffix) ? sha256(readFileSync(cachedDb + suffix)) : 'none'));
    const before = cacheDigest();
    const model = await data.startModel();
    try {
      const run = await runOpenCode(data.env, ['run', '--format', 'json', '--session', s.id, 'Continue from the copy [[bash pwd]]'], { cwd: data.projectDir, timeoutMs: 60_000 });
      expect(run.status, `run --session failed: ${run.stderr.slice(-300)}`).toBe(0);
      expect(run.stdout, 'bash ran in the copy\'s project').toContain(data.projectDir);
    } finally {
      await model.close();
    }
    const check = new Database(data.dbPath, { readonly: true });
    try {
      const after = (check.prepare('SELECT count(*) AS n FROM message WHERE session_id = ?').get(s.id) as { n: number }).n;
      expect(after, 'messages after continuing').toBeGreaterThanOrEqual(s.api.classicMessages + 2);
    } finally {
      check.close();
    }
    expect(cacheDigest(), 'the cached database files changed').toEqual(before);
  });
});
