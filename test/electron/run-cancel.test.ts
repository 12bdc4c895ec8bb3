/**
 * A clean-up a person can follow and stop: progress comes from the work (sessions and bytes per
 * phase, counting up), `runStatus` shows the run to a UI that was not there when it started, and
 * `cancelRun` stops it between two session trees: every planned tree is either gone whole or
 * there whole, the file passes integrity_check, and the archive is kept and reads back with every
 * session it was written with. Through the real utility process, on a real generated database.
 */
import Database from 'better-sqlite3';
import { copyFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProgressView, ProtocolEvent } from '../../src/core/utility-protocol.js';
import { readArchiveSummaries } from '../../src/store/archive/archive-read.js';
import { generateFixture } from '../fixtures/generate.js';
import { startWebServer, type WebServer } from '../../dist/web/server.js';
import { tempDir } from '../helpers/env.js';

const dir = tempDir('sk-run-cancel-');
const base = join(dir, 'base.db');

beforeAll(() => {
  generateFixture({ path: base, targetBytes: 4 * 1024 * 1024, rootSessions: 300, seed: 33, diffFiles: false });
});

/** Rows per table of one session, for "whole or not at all". */
function rowsOf(conn: Database.Database, id: string): number[] {
  return ['session WHERE id', 'message WHERE session_id', 'part WHERE session_id'].map((t) => (conn.prepare(`SELECT count(*) AS n FROM ${t} = ?`).get(id) as { n: number }).n);
}

describe('runs a person can follow', () => {
  const servers: WebServer[] = [];
  afterAll(async () => {
    for (const s of servers) await s.close();
  });
  // One session tree per delete transaction: on a file this small every tree would fit in one, and
  // a cancel or a status request could only arrive after the delete.
  const open = async (name: string): Promise<{ server: WebServer; db: string; archiveDir: string }> => {
    const db = join(dir, `${name}.db`);
    copyFileSync(base, db);
    const archiveDir = join(dir, `${name}-archive`);
    const config = join(dir, `${name}.jsonc`);
    writeFileSync(config, `{ "session": { "archiveDir": ${JSON.stringify(archiveDir)} } }\n`);
    const server = await startWebServer({ db, cacheDir: join(dir, `${name}-cache`), configPath: config, token: 't', env: { ...process.env, SESSION_KEEPER_WRITE_BUDGET_MS: '0', XDG_DATA_HOME: join(dir, `${name}-data`), XDG_CONFIG_HOME: join(dir, `${name}-cfg`) } });
    servers.push(server);
    return { server, db, archiveDir };
  };

  it('reports sessions and bytes per phase, counting up, and the run while it runs', async () => {
    const { server } = await open('progress');
    const plan = await server.client.request('plan', { policy: { maxSessions: 100 } });
    const seen: ProgressView[] = [];
    let status: Awaited<ReturnType<typeof server.client.request<'runStatus'>>> | null = null;
    const ended: ProtocolEvent[] = [];
    server.client.onEvent((event) => {
      if (event.event === 'progress' && event.requestId !== null) {
        seen.push(event.progress);
        if (event.progress.phase === 'delete' && status === null) void server.client.request('runStatus').then((s) => (status = s));
      }
      if (event.event === 'runEnded') ended.push(event);
    });
    const outcome = await server.client.request('apply', { planId: plan.planId });
    expect(outcome.evicted.length).toBe(plan.evict.length);
    const phases = [...new Set(seen.map((p) => p.phase))];
    expect(phases).toEqual(['plan', 'archive', 'verify', 'delete', 'reclaim', 'done']);
    const archive = seen.filter((p) => p.phase === 'archive');
    const trees = plan.evict.reduce((n, e) => n + 1 + e.children.length, 0);
    expect(archive.at(-1)).toMatchObject({ sessions: trees, done: trees });
    expect(archive.at(-1)!.bytes).toBeGreaterThan(0);
    const done = archive.map((p) => p.done ?? 0);
    expect(done).toEqual([...done].sort((a, b) => a - b));
    expect(seen.filter((p) => p.phase === 'verify').at(-1)).toMatchObject({ sessions: trees, done: trees });
    const deletes = seen.filter((p) => p.phase === 'delete');
    expect(deletes.at(-1)).toMatchObject({ deleted: plan.evict.length, of: plan.evict.length });
    expect(deletes.at(-1)!.ofBytes).toBe(plan.evict.reduce((n, e) => n + e.bytes, 0));
    expect(deletes.at(-1)!.bytes).toBe(deletes.at(-1)!.ofBytes);
    expect(seen.filter((p) => p.phase === 'reclaim').at(-1)!.bytesAfter).toBe(outcome.bytesAfter);
    // A UI that asked during the run saw it; once ended, every UI is told, and the status says so.
    await expect.poll(() => status).not.toBeNull();
    expect(status!.running).toMatchObject({ planId: plan.planId, sessions: plan.evict.length });
    expect(ended).toHaveLength(1);
    const after = await server.client.request('runStatus');
    expect(after.running).toBeNull();
    expect(after.last?.outcome?.evicted.length).toBe(plan.evict.length);
  }, 120_000);

  it('Cancel stops between session trees: nothing half-deleted, integrity ok, the archive kept and readable', async () => {
    const { server, db, archiveDir } = await open('cancel');
    const plan = await server.client.request('plan', { policy: { maxSessions: 20 } });
    const conn = new Database(db, { readonly: true });
    const trees = plan.evict.map((e) => [e.id, ...e.children]);
    const before = new Map(trees.flat().map((id) => [id, rowsOf(conn, id)]));
    conn.close();
    let asked = false;
    server.client.onEvent((event) => {
      if (event.event === 'progress' && event.progress.phase === 'delete' && !asked) {
        asked = true;
        void server.client.request('cancelRun');
      }
    });
    const outcome = await server.client.request('apply', { planId: plan.planId });
    expect(outcome.cancelled).toBe(true);
    expect(outcome.notReached!.length).toBeGreaterThan(0);
    expect(outcome.evicted.length + outcome.notReached!.length + outcome.changed.length).toBe(plan.evict.length);
    const check = new Database(db, { readonly: true });
    try {
      expect(check.prepare('PRAGMA integrity_check').pluck().get()).toBe('ok');
      expect(check.prepare('PRAGMA foreign_key_check').all()).toEqual([]);
      const evicted = new Set(outcome.evicted);
      for (const tree of trees) {
        for (const id of tree) {
          const now = rowsOf(check, id);
          // Whole or not at all: gone in every table, or exactly as before.
          if (evicted.has(tree[0]!)) expect(now, id).toEqual([0, 0, 0]);
          else expect(now, id).toEqual(before.get(id));
        }
      }
    } finally {
      check.close();
    }
    const archives = readdirSync(archiveDir).filter((f) => f.endsWith('.json.gz'));
    expect(archives).toHaveLength(1);
    expect(outcome.archive).toBe(join(archiveDir, archives[0]!));
    const inArchive = new Set((await readArchiveSummaries(outcome.archive!)).map((s) => s.id));
    for (const id of trees.flat()) expect(inArchive.has(id), id).toBe(true);
    // The run is over: a new plan can run.
    expect((await server.client.request('runStatus')).running).toBeNull();
  }, 120_000);

  it('Cancel while archiving leaves no archive and deletes nothing', async () => {
    const { server, db, archiveDir } = await open('cancel-archive');
    const plan = await server.client.request('plan', { policy: { maxSessions: 20 } });
    const conn = new Database(db, { readonly: true });
    const count = (): number => (conn.prepare('SELECT count(*) AS n FROM session').get() as { n: number }).n;
    const sessions = count();
    let asked = false;
    server.client.onEvent((event) => {
      if (event.event === 'progress' && event.progress.phase === 'archive' && !asked) {
        asked = true;
        void server.client.request('cancelRun');
      }
    });
    const outcome = await server.client.request('apply', { planId: plan.planId });
    expect(outcome.cancelled).toBe(true);
    expect(outcome.evicted).toEqual([]);
    expect(count()).toBe(sessions);
    conn.close();
    expect(readdirSync(archiveDir).filter((f) => !f.startsWith('.'))).toEqual([]);
  }, 120_000);
});
