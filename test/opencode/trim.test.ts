/**
 * Trim on a database the real OpenCode 1.18.33 wrote (both layouts): after each mode, OpenCode
 * still lists, exports (`opencode export`), opens (the classic and newer message APIs of
 * `opencode serve`) and continues (`run --session`, a newer-API prompt) every trimmed session.
 * Then `restore` of each trim's archive puts every trimmed row back byte for byte, even after
 * the sessions went on.
 */
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TrimOutcome, TrimPlan } from '../../src/core/trim.js';
import { parseJson, runCli } from '../helpers/env.js';
import { apiMessages, exportSession, listSessions, OPENCODE_DATA_TIMEOUT_MS, realOpenCodeData, runOpenCode, withServe, type ManifestSession, type OpenCodeData } from '../helpers/opencode.ts';
import { promptV2, waitIdleV2 } from './api.ts';

let data: OpenCodeData;
let scratch: string;

beforeAll(async () => {
  data = await realOpenCodeData();
  scratch = mkdtempSync(join(tmpdir(), 'sk-trim-opencode-'));
}, OPENCODE_DATA_TIMEOUT_MS);

afterAll(() => {
  data?.remove();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

const cli = (args: string[]): ReturnType<typeof runCli> => runCli(['--db', data.dbPath, '--cache-dir', join(scratch, 'cache'), ...args], { env: data.env as Record<string, string> });

function one(scenario: string): ManifestSession {
  const found = data.sessions(scenario);
  if (found.length !== 1) throw new Error(`manifest has ${found.length} sessions of scenario ${scenario}`);
  return found[0] as ManifestSession;
}

const CONTENT_COLUMN: Record<string, string> = { part: 'data', session_message: 'data', session_input: 'prompt' };

/** The rows a plan names, each as its full row (null when absent). */
function rowsOf(plan: TrimPlan): Map<string, unknown[] | null> {
  const db = new Database(data.dbPath, { readonly: true });
  try {
    const out = new Map<string, unknown[] | null>();
    for (const t of plan.targets) {
      const row = db.prepare(`SELECT *, typeof(${CONTENT_COLUMN[t.table]}) FROM "${t.table}" WHERE id = ?`).raw().get(t.id) as unknown[] | undefined;
      out.set(`${t.table}:${t.id}`, row ?? null);
    }
    return out;
  } finally {
    db.close();
  }
}

interface Mode {
  args: string[];
  /** Classic sessions: continued with `run --session`; newer ones: with a prompt through the API. */
  classic: string[];
  v2: string[];
}

const MODES: Record<string, Mode> = {
  reasoning: { args: ['--reasoning'], classic: ['reasoning'], v2: ['v2-reasoning'] },
  'compacted-outputs': { args: ['--compacted-outputs'], classic: ['pruned-tool-output'], v2: [] },
  attachments: { args: ['--attachments', '--older-than-days', '0'], classic: ['run-attachments', 'read-image'], v2: ['v2-image', 'v2-tools'] },
};

describe('trim on the database the real OpenCode 1.18.33 wrote', () => {
  it('after each mode OpenCode lists, exports, opens and continues the trimmed sessions; restore puts every trimmed row back', async () => {
    const done: { archive: string; original: Map<string, unknown[] | null>; plan: TrimPlan }[] = [];
    for (const [name, mode] of Object.entries(MODES)) {
      const ids = [...mode.classic, ...mode.v2].map((s) => one(s).id);
      const sessionArgs = ['--session', ...ids];
      const plan = parseJson<TrimPlan>(cli(['--json', 'trim', ...mode.args, ...sessionArgs]));
      // Every session named has something of this mode to trim.
      expect(plan.sessions.filter((id) => ids.includes(id)).sort(), name).toEqual([...ids].sort());
      const original = rowsOf(plan);
      const outcome = parseJson<TrimOutcome>(cli(['--json', 'trim', ...mode.args, ...sessionArgs, '--apply', '--yes']));
      expect(outcome.changed, name).toBe(0);
      expect(outcome.archive).not.toBeNull();
      done.push({ archive: outcome.archive as string, original, plan });

      for (const scenario of mode.classic) {
        const s = one(scenario);
        const { exported } = await exportSession(data.env, s.id, { cwd: data.projectDir });
        expect(exported.info.id).toBe(s.id);
        const text = JSON.stringify(exported);
        if (name === 'reasoning') expect(text).not.toContain('"type":"reasoning"');
        if (name === 'attachments') expect(text).not.toMatch(/data:(image|application)\/[a-z]+;base64,/);
      }
      await withServe(data.env, async (url) => {
        const listed = await listSessions(url);
        for (const id of ids) expect(listed.v2.map((s) => s.id), `${name}: listed`).toContain(id);
        for (const id of ids) {
          const messages = await apiMessages(url, id);
          expect(messages.classic.length + messages.v2.length, `${name}: ${id} opens`).toBeGreaterThan(0);
        }
        if (mode.v2.length === 0) return;
        const model = await data.startModel();
        try {
          for (const scenario of mode.v2) {
            const s = one(scenario);
            await promptV2(url, s.id, { text: `Going on after trimming ${name}.` });
            const messages = await waitIdleV2(url, s.id);
            expect(JSON.stringify(messages)).toContain(`Going on after trimming ${name}.`);
          }
        } finally {
          await model.close();
        }
      }, { cwd: data.projectDir });
      const model = await data.startModel();
      try {
        for (const scenario of mode.classic) {
          const s = one(scenario);
          const run = await runOpenCode(data.env, ['run', '--session', s.id, `And on after trimming ${name}.`], { cwd: data.projectDir });
          expect(run.status, `${name}: run --session ${scenario}: ${run.stderr}`).toBe(0);
        }
      } finally {
        await model.close();
      }
    }
    // Every trim's archive puts its rows back as they were, newest trim first.
    for (const { archive, original, plan } of done.reverse()) {
      const restored = parseJson<{ putBack: { id: string }[] }>(cli(['--json', 'restore', archive]));
      expect(restored.putBack.map((s) => s.id).sort()).toEqual([...plan.sessions].sort());
      expect(rowsOf(plan)).toEqual(original);
    }
    const db = new Database(data.dbPath, { readonly: true });
    expect(db.prepare('SELECT quick_check FROM pragma_quick_check').pluck().get()).toBe('ok');
    db.close();
  }, 900_000);
});
