/**
 * Plans are objects: `plan` answers an id and the exact set of root sessions; `apply` takes the
 * id and runs only when the same inputs still give the same set. A session written between plan
 * and apply (as OpenCode would), a planned session touched, or settings changed: refused with the
 * new plan, nothing written. Through the real utility process, on a real generated database.
 */
import Database from 'better-sqlite3';
import { copyFileSync, existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiError, PlanResult } from '../../src/core/utility-protocol.js';
import { generateFixture } from '../fixtures/generate.js';
import { startWebServer, type WebServer } from '../../dist/web/server.js';
import { tempDir } from '../helpers/env.js';
import { sessionIds } from '../helpers/session-rows.js';

const dir = tempDir('sk-plan-objects-');
const base = join(dir, 'base.db');
const DAY = 24 * 60 * 60 * 1000;

beforeAll(() => {
  generateFixture({ path: base, targetBytes: 3 * 1024 * 1024, rootSessions: 12, seed: 21, diffFiles: false });
});

/** A new root session, old enough to be planned for eviction: a copy of `like` under a new id. */
function writeSession(db: string, like: string, id: string): void {
  const conn = new Database(db);
  try {
    const columns = (conn.prepare('PRAGMA table_info(session)').all() as { name: string }[]).map((c) => c.name);
    const values = columns.map((c) => (c === 'id' ? '?' : c === 'time_created' || c === 'time_updated' ? '?' : `"${c}"`));
    const old = Date.now() - 400 * DAY;
    conn.prepare(`INSERT INTO session (${columns.map((c) => `"${c}"`).join(', ')}) SELECT ${values.join(', ')} FROM session WHERE id = ?`).run(id, old, old, like);
  } finally {
    conn.close();
  }
}

async function refusal(promise: Promise<unknown>): Promise<ApiError> {
  try {
    await promise;
  } catch (error) {
    // The client is the built one: its ApiError is dist's class, so it is recognised by its code.
    if (error instanceof Error && 'code' in error) return error as ApiError;
    throw error;
  }
  throw new Error('expected a refusal');
}

describe('plans are objects; apply names one', () => {
  let n = 0;
  const servers: WebServer[] = [];
  const open = async (): Promise<{ server: WebServer; db: string; archiveDir: string; config: string }> => {
    const at = join(dir, `run-${++n}`);
    const db = `${at}.db`;
    copyFileSync(base, db);
    const archiveDir = `${at}-archive`;
    const config = `${at}.jsonc`;
    writeFileSync(config, `{\n  // test\n  "session": { "archiveDir": ${JSON.stringify(archiveDir)} }\n}\n`);
    const server = await startWebServer({ db, cacheDir: `${at}-cache`, configPath: config, token: 't', env: { ...process.env, XDG_DATA_HOME: `${at}-data`, XDG_CONFIG_HOME: `${at}-cfg` } });
    servers.push(server);
    return { server, db, archiveDir, config };
  };
  afterAll(async () => {
    for (const s of servers) await s.close();
  });

  it('applies exactly the planned set when nothing changed, and only once', async () => {
    const { server, db, archiveDir } = await open();
    const plan = await server.client.request('plan', { policy: { maxSessions: 8 } });
    expect(plan.planId).toMatch(/^[0-9a-f-]{36}$/);
    expect(plan.applicable).toBe(true);
    expect(plan.rootSessions).toBe(12);
    expect(plan.evict.length).toBe(4);
    const planned = plan.evict.flatMap((e) => [e.id, ...e.children]);
    const before = sessionIds(db);
    const applied = await server.client.request('apply', { planId: plan.planId });
    expect([...applied.evicted].sort()).toEqual(plan.evict.map((e) => e.id).sort());
    const after = sessionIds(db);
    expect([...before].filter((id) => !after.has(id)).sort()).toEqual([...planned].sort());
    expect(readdirSync(archiveDir).filter((f) => f.endsWith('.json.gz'))).toHaveLength(1);
    // Applied plans are gone: the same id cannot run twice.
    expect((await refusal(server.client.request('apply', { planId: plan.planId }))).code).toBe('not-found');
  }, 60_000);

  it('refuses a plan when a session was written between plan and apply, with the new plan', async () => {
    const { server, db, archiveDir } = await open();
    const plan = await server.client.request('plan', { policy: { maxSessions: 8 } });
    const before = sessionIds(db);
    writeSession(db, plan.evict[0]!.id, 'ses_written_meanwhile');
    const error = await refusal(server.client.request('apply', { planId: plan.planId }));
    expect(error.code).toBe('stale-plan');
    expect(error.message).toContain('the database changed');
    const fresh = error.plan as PlanResult;
    expect(fresh.planId).not.toBe(plan.planId);
    expect(fresh.evict.map((e) => e.id)).toContain('ses_written_meanwhile');
    expect(fresh.evict.length).toBe(plan.evict.length + 1);
    // Nothing was written: every session is there, and no archive.
    const after = sessionIds(db);
    for (const id of before) expect(after.has(id), id).toBe(true);
    expect(existsSync(archiveDir) ? readdirSync(archiveDir) : []).toEqual([]);
    // The new plan, shown and applied, runs.
    const applied = await server.client.request('apply', { planId: fresh.planId });
    expect(applied.evicted).toContain('ses_written_meanwhile');
  }, 60_000);

  it('refuses when a planned session was touched, or the settings changed, since the plan', async () => {
    const { server, db, config } = await open();
    const plan = await server.client.request('plan', { policy: { maxSessions: 8 } });
    const conn = new Database(db);
    conn.prepare('UPDATE session SET time_updated = time_updated + 1 WHERE id = ?').run(plan.evict[1]!.id);
    conn.close();
    expect((await refusal(server.client.request('apply', { planId: plan.planId }))).code).toBe('stale-plan');
    const second = await server.client.request('plan', { policy: { maxSessions: 8 } });
    // Archiving turned off after the plan was shown: not the plan the user saw.
    writeFileSync(config, `{ "session": { "archive": false } }\n`);
    const error = await refusal(server.client.request('apply', { planId: second.planId }));
    expect(error.code).toBe('stale-plan');
    expect(error.plan?.archive).toBe(false);
    expect(sessionIds(db).size).toBeGreaterThan(12);
  }, 60_000);

  it('a preview of unsaved settings is never applicable; exclusions stay', async () => {
    const { server } = await open();
    const preview = await server.client.request('plan', { settings: { maxSessions: 8 } });
    expect(preview.applicable).toBe(false);
    expect((await refusal(server.client.request('apply', { planId: preview.planId }))).code).toBe('not-found');
    const plain = await server.client.request('plan', { policy: { maxSessions: 8 } });
    const kept = plain.evict[0]!.id;
    const excluding = await server.client.request('plan', { policy: { maxSessions: 8 }, exclude: [kept] });
    expect(excluding.exclude).toEqual([kept]);
    expect(excluding.evict.map((e) => e.id)).not.toContain(kept);
    expect(excluding.evict.length).toBe(plain.evict.length);
  }, 60_000);

  it('a plan of chosen sessions removes exactly those trees, holds pinned ones back, and is refused once one changed', async () => {
    const { server, db, archiveDir } = await open();
    const reading = new Database(db, { readonly: true });
    const roots = reading.prepare('SELECT id FROM session WHERE parent_id IS NULL ORDER BY time_created').pluck().all() as string[];
    reading.close();
    const [a, b, c] = roots as [string, string, string];
    await server.client.request('setPinned', { sessionId: c, pinned: true });
    const plan = await server.client.request('plan', { sessions: [a, b, c, 'ses_missing'] });
    expect(plan.evict.map((e) => e.id)).toEqual([a, b]);
    expect(plan.held).toEqual([
      { id: c, why: 'pinned' },
      { id: 'ses_missing', why: 'not-found' },
    ]);
    const conn = new Database(db);
    conn.prepare('UPDATE session SET time_updated = time_updated + 1 WHERE id = ?').run(b);
    conn.close();
    const refused = await refusal(server.client.request('apply', { planId: plan.planId }));
    expect(refused.code).toBe('stale-plan');
    const fresh = refused.plan as PlanResult;
    const before = sessionIds(db);
    const outcome = await server.client.request('apply', { planId: fresh.planId });
    expect(outcome.evicted.sort()).toEqual([a, b].sort());
    const after = sessionIds(db);
    const gone = [...before].filter((id) => !after.has(id)).sort();
    expect(gone).toEqual(fresh.evict.flatMap((e) => [e.id, ...e.children]).sort());
    expect(after.has(c)).toBe(true);
    expect(readdirSync(archiveDir).filter((f) => f.endsWith('.json.gz'))).toHaveLength(1);
  }, 60_000);
});
