/**
 * Nothing lost, on a database the real OpenCode 1.18.33 wrote (both of its storage layouts):
 * session-keeper's figures equal independent SQL; archive, delete and restore give back every
 * session table and the event log row for row; and afterwards the real OpenCode lists, exports,
 * reads and continues the sessions as before. A split archive goes back through `opencode import`.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listResultSchema, showResultSchema, statsResultSchema } from '../../src/core/api.js';
import { parseJson, runCli } from '../helpers/env.js';
import {
  apiMessages, exportSession, importSession, listSessions, OPENCODE_DATA_TIMEOUT_MS, realOpenCodeData, runOpenCode, withServe,
  type ManifestSession, type OpenCodeData,
} from '../helpers/opencode.ts';
import { promptV2, waitIdleV2 } from './api.ts';

let data: OpenCodeData;
let scratch: string;

/** Every table a session owns, each as one digest over all its rows (equal digests: equal rows, byte for byte). */
const SESSION_TABLES = ['session', 'message', 'part', 'todo', 'session_share', 'session_message', 'session_input', 'session_context_epoch', 'event_sequence', 'event'];
function tableDigests(dbPath: string): Record<string, string> {
  const db = new Database(dbPath, { readonly: true });
  try {
    const out: Record<string, string> = {};
    for (const table of SESSION_TABLES) {
      const columns = (db.prepare('SELECT name FROM pragma_table_info(?)').pluck().all(table) as string[]).map((c) => `"${c}", typeof("${c}")`);
      // Rows as a set (a restore inserts them session by session: their rowids may come in another order).
      const rows = (db.prepare(`SELECT ${columns.join(', ')} FROM "${table}"`).raw().all() as unknown[][]).map((row) =>
        createHash('sha256').update(JSON.stringify(row)).digest('hex'),
      );
      out[table] = createHash('sha256').update(rows.sort().join('\n')).digest('hex');
    }
    return out;
  } finally {
    db.close();
  }
}

function sql<T>(dbPath: string, query: string, ...params: unknown[]): T {
  const db = new Database(dbPath, { readonly: true });
  try {
    return db.prepare(query).get(...params) as T;
  } finally {
    db.close();
  }
}

const cli = (args: string[]): ReturnType<typeof runCli> => runCli(['--db', data.dbPath, '--cache-dir', join(scratch, 'cache'), ...args], { env: data.env as Record<string, string> });

function one(scenario: string): ManifestSession {
  const found = data.sessions(scenario);
  if (found.length !== 1) throw new Error(`manifest has ${found.length} sessions of scenario ${scenario}`);
  return found[0] as ManifestSession;
}

beforeAll(async () => {
  data = await realOpenCodeData();
  scratch = mkdtempSync(join(tmpdir(), 'sk-nothing-lost-'));
}, OPENCODE_DATA_TIMEOUT_MS);

afterAll(() => {
  data?.remove();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('on the database the real OpenCode 1.18.33 wrote', () => {
  it('stats names the layout and every figure equals independent SQL', () => {
    const stats = statsResultSchema.parse(parseJson(cli(['--json', 'stats'])));
    expect(stats.layout).toBe('1.18');
    type Count = { n: number };
    expect(stats.sessions).toBe(sql<Count>(data.dbPath, 'SELECT count(*) AS n FROM session').n);
    expect(stats.rootSessions).toBe(sql<Count>(data.dbPath, 'SELECT count(*) AS n FROM session WHERE parent_id IS NULL').n);
    expect(stats.messages).toBe(sql<Count>(data.dbPath, 'SELECT (SELECT count(*) FROM message) + (SELECT count(*) FROM session_message) AS n').n);
    expect(stats.parts).toBe(sql<Count>(data.dbPath, 'SELECT count(*) AS n FROM part').n);
    expect(stats.events).toBe(sql<Count>(data.dbPath, 'SELECT count(*) AS n FROM event').n);
    // Every `"data:` that opens a JSON string value in the three tables that hold attachments.
    const occurrences = (table: string, column: string): string => `coalesce((SELECT sum((length(${column}) - length(replace(${column}, '"data:', ''))) / 6) FROM ${table}), 0)`;
    const attachments = sql<Count>(data.dbPath, `SELECT ${occurrences('part', 'data')} + ${occurrences('session_message', 'data')} + ${occurrences('session_input', 'prompt')} AS n`).n;
    expect(stats.attachments.count).toBe(attachments);
    for (const table of ['message', 'part', 'session_message', 'session_input', 'event']) {
      const column = table === 'session_input' ? 'prompt' : 'data';
      const want = sql<{ rows: number; bytes: number }>(data.dbPath, `SELECT count(*) AS rows, coalesce(sum(length(CAST(${column} AS BLOB))), 0) AS bytes FROM ${table}`);
      expect(stats.tables.find((t) => t.name === table), table).toEqual({ name: table, rows: want.rows, payloadBytes: want.bytes });
    }
  });

  it('lists every session, each with the bytes its rows hold', () => {
    const listed = listResultSchema.parse(parseJson(cli(['--json', 'list', '--limit', '1000'])));
    expect(listed.sessions.map((s) => s.id).sort()).toEqual(data.manifest.sessions.map((s) => s.id).sort());
    for (const s of listed.sessions) {
      const want = sql<{ b: number }>(
        data.dbPath,
        `SELECT coalesce((SELECT sum(length(CAST(data AS BLOB))) FROM message WHERE session_id = @id), 0)
              + coalesce((SELECT sum(length(CAST(data AS BLOB))) FROM part WHERE session_id = @id), 0)
              + coalesce((SELECT sum(length(CAST(id AS BLOB)) + length(CAST(session_id AS BLOB)) + length(CAST(type AS BLOB)) + length(CAST(data AS BLOB))) FROM session_message WHERE session_id = @id), 0)
              + coalesce((SELECT sum(length(CAST(id AS BLOB)) + length(CAST(session_id AS BLOB)) + length(CAST(prompt AS BLOB)) + length(CAST(delivery AS BLOB))) FROM session_input WHERE session_id = @id), 0)
              + coalesce((SELECT sum(length(CAST(session_id AS BLOB)) + length(CAST(baseline AS BLOB)) + length(CAST(snapshot AS BLOB))) FROM session_context_epoch WHERE session_id = @id), 0) AS b`,
        { id: s.id },
      );
      expect(s.bytes, s.id).toBe(want.b);
    }
  });

  it('shows a session of the newer layout: its messages as OpenCode lists them, the image as a reference', () => {
    const image = one('v2-image');
    const page = showResultSchema.parse(parseJson(cli(['--json', 'show', image.id, '--limit', '100'])));
    expect(page.messages).toHaveLength(image.api.v2Messages);
    const refs = JSON.stringify(page).match(/"ref":"(msg_[A-Za-z0-9]+(?:\.\d+)?)"/g) ?? [];
    expect(refs.length).toBeGreaterThan(0);
    expect(JSON.stringify(page)).not.toContain(';base64,');
    const ref = (refs[0] as string).slice(7, -1);
    const out = join(scratch, 'photo.png');
    const extracted = parseJson<{ bytes: number; sha256: string }>(cli(['--json', 'attachment', ref, '--out', out]));
    const original = readFileSync(join(data.projectDir, 'assets', 'photo.png'));
    expect(extracted.bytes).toBe(original.length);
    expect(readFileSync(out).equals(original)).toBe(true);
  });

  it('archive, delete and restore give back every session table and the event log, row for row; OpenCode reads, exports and continues them as before', async () => {
    const before = tableDigests(data.dbPath);
    const roots = data.manifest.sessions.filter((s) => s.parentId === null).map((s) => s.id);
    const sample = ['run-attachments', 'todo', 'v2-image', 'v2-tools', 'subtask', 'imported'].map((scenario) => one(scenario));
    const exportsBefore = new Map<string, unknown>();
    for (const s of sample) exportsBefore.set(s.id, (await exportSession(data.env, s.id, { cwd: data.projectDir })).exported);
    const apiBefore = await withServe(data.env, async (url) => {
      const answers = new Map<string, Awaited<ReturnType<typeof apiMessages>>>();
      for (const s of data.manifest.sessions) answers.set(s.id, await apiMessages(url, s.id));
      return answers;
    }, { cwd: data.projectDir });

    const archive = join(scratch, 'everything.json.gz');
    const archived = parseJson<{ sessions: number }>(cli(['--json', 'archive', '--output', archive]));
    expect(archived.sessions).toBe(data.manifest.sessions.length);
    const deleted = parseJson<{ evicted: string[] }>(cli(['--json', 'delete', '--no-archive', '--yes', ...roots]));
    expect(deleted.evicted.sort()).toEqual([...roots].sort());
    for (const table of SESSION_TABLES) {
      const left = sql<{ n: number }>(data.dbPath, `SELECT count(*) AS n FROM "${table}"`).n;
      expect(left, `${table} rows left after deleting every session`).toBe(0);
    }
    const restored = parseJson<{ restored: number }>(cli(['--json', 'restore', archive]));
    expect(restored.restored).toBe(data.manifest.sessions.length);
    expect(tableDigests(data.dbPath)).toEqual(before);
    expect(sql<{ q: string }>(data.dbPath, 'SELECT quick_check AS q FROM pragma_quick_check').q).toBe('ok');

    for (const s of sample) {
      const again = (await exportSession(data.env, s.id, { cwd: data.projectDir })).exported;
      expect(again, `opencode export ${s.scenario}`).toEqual(exportsBefore.get(s.id));
    }
    await withServe(data.env, async (url) => {
      const listed = await listSessions(url);
      expect(listed.v2.map((s) => s.id).sort()).toEqual(data.manifest.sessions.map((s) => s.id).sort());
      for (const s of data.manifest.sessions) expect(await apiMessages(url, s.id), `messages of ${s.scenario}`).toEqual(apiBefore.get(s.id));
      // The newer layout continues through its own API, the classic one through `opencode run`.
      const model = await data.startModel();
      try {
        const v2 = one('v2-multi-turn');
        await promptV2(url, v2.id, { text: 'One more turn after the restore.' });
        const messages = await waitIdleV2(url, v2.id);
        expect(messages.length).toBeGreaterThanOrEqual(v2.api.v2Messages + 2);
        expect(JSON.stringify(messages)).toContain('One more turn after the restore.');
      } finally {
        await model.close();
      }
    }, { cwd: data.projectDir });
    const model = await data.startModel();
    try {
      const classic = one('continue');
      const run = await runOpenCode(data.env, ['run', '--session', classic.id, 'And once more after the restore.'], { cwd: data.projectDir });
      expect(run.status, run.stderr).toBe(0);
      const messages = sql<{ n: number }>(data.dbPath, 'SELECT count(*) AS n FROM message WHERE session_id = ?', classic.id).n;
      expect(messages).toBeGreaterThanOrEqual(classic.rows.message + 2);
    } finally {
      await model.close();
    }
  }, 600_000);

  it('a split archive goes back through opencode import', async () => {
    const dir = join(scratch, 'split');
    const session = one('run-attachments');
    parseJson(cli(['--json', 'archive', '--split', '--output', dir, '--session', session.id]));
    expect(readdirSync(dir)).toEqual([`${session.id}.json`]);
    const fresh = await realOpenCodeData();
    try {
      const dbFresh = fresh.dbPath;
      const db = new Database(dbFresh);
      db.pragma('foreign_keys = ON');
      db.prepare('DELETE FROM session WHERE id = ?').run(session.id);
      db.close();
      const run = await importSession(fresh.env, join(dir, `${session.id}.json`), { cwd: fresh.projectDir });
      expect(run.status, run.stderr).toBe(0);
      expect(sql<{ n: number }>(dbFresh, 'SELECT count(*) AS n FROM message WHERE session_id = ?', session.id).n).toBe(session.rows.message);
      expect(sql<{ n: number }>(dbFresh, 'SELECT count(*) AS n FROM part WHERE session_id = ?', session.id).n).toBe(session.rows.part);
    } finally {
      fresh.remove();
    }
  }, 300_000);
});
