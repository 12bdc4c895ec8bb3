/**
 * One view of the file and its server in the session browser, through the real utility process
 * (dist/main/utility.js, `storage` naming PostgreSQL): `browseSessions` lists the sessions only
 * the server holds beside the file's, each marked where it lives, labelled with the server's
 * projects; `showSession` pages a server-only session from the server in small pages;
 * `attachment` of its part decodes from the server into the cache; `restoreFromServer` brings it
 * back into the file byte for byte (with `restore` progress, nothing deleted on the server), after
 * which it is in both, and a second restore skips it.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrowseRow } from '../../src/core/browse.js';
import type { ProtocolEvent } from '../../src/core/utility-protocol.js';
import { nodeSpawner, UtilityClient } from '../../src/main/client.js';
import { generateFixture } from '../fixtures/generate.js';
import { ROOT, runCli, tempDir } from '../helpers/env.js';
import { sessionRowsText } from '../helpers/session-rows.js';
import { freshDatabase, serverQuery, type FreshDatabase } from './servers.js';
import { mirrorAsPrimary } from './sync-helpers.js';

const ENTRY = join(ROOT, 'dist', 'main', 'utility.js');
const dir = tempDir('sk-one-view-browser-');
const db = join(dir, 'opencode.db');
const cacheDir = join(dir, 'cache', 'attachments');
const env = { XDG_CONFIG_HOME: join(dir, 'config'), XDG_DATA_HOME: join(dir, 'data'), XDG_CACHE_HOME: join(dir, 'cache'), OPENCODE_DB: '' };
const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

let server: FreshDatabase;
let client: UtilityClient;
const events: ProtocolEvent[] = [];
let roots = 0;
let serverSessions = 0;
/** The huge-PDF session and one more root: in the file before, only on the server after. */
let evicted: string[] = [];
let partId = '';
let pdfSha = '';
/** Each evicted session's rows as the file held them (what the server's copy was made from), and its project. */
const before = new Map<string, { rows: string; messages: number; project: string }>();


beforeAll(async () => {
  const fixture = generateFixture({ path: db, targetBytes: 2 * 1024 * 1024, seed: 63, rootSessions: 9, hugeAttachmentBytes: 3 * 1024 * 1024 + 7, diffFiles: false });
  partId = fixture.hugePartId!;
  server = await freshDatabase('postgres');
  expect(mirrorAsPrimary(dir, db, 'postgres', server.url, env)).toBe(0);

  const file = new Database(db);
  file.pragma('foreign_keys = ON');
  const data = JSON.parse(file.prepare('SELECT data FROM part WHERE id = ?').pluck().get(partId) as string) as { url: string };
  pdfSha = sha256(Buffer.from(data.url.slice(data.url.indexOf(',') + 1), 'base64'));
  const childless = "parent_id IS NULL AND id NOT IN (SELECT parent_id FROM session WHERE parent_id IS NOT NULL) AND id <> ?";
  const other = file.prepare(`SELECT id FROM session WHERE ${childless} ORDER BY time_created LIMIT 1`).pluck().get(fixture.hugeSessionId) as string;
  evicted = [fixture.hugeSessionId!, other];
  roots = file.prepare('SELECT count(*) FROM session WHERE parent_id IS NULL').pluck().get() as number;
  serverSessions = file.prepare('SELECT count(*) FROM session').pluck().get() as number;
  for (const id of evicted) {
    before.set(id, {
      rows: sessionRowsText(file, id),
      messages: file.prepare('SELECT count(*) FROM message WHERE session_id = ?').pluck().get(id) as number,
      project: file.prepare('SELECT coalesce(p.name, p.worktree) FROM session s JOIN project p ON p.id = s.project_id WHERE s.id = ?').pluck().get(id) as string,
    });
    file.prepare('DELETE FROM session WHERE id = ?').run(id);
  }
  file.close();

  // Each restored tree pauses a little, so a restore can be seen, and cancelled, mid-way.
  client = new UtilityClient(nodeSpawner({ entry: ENTRY, db, cacheDir, env: { ...process.env, ...env, SESSION_KEEPER_TEST_HOOKS: '1', SESSION_KEEPER_TEST_RUN_PAUSE_MS: '1500' } }), { initialDelayMs: 50 }).start();
  client.onEvent((e) => events.push(e));
  expect((await client.request('startup')).error).toBeNull();
}, 180_000);
afterAll(async () => {
  await client?.close();
  await server?.drop();
});

async function allRows(): Promise<BrowseRow[]> {
  const rows: BrowseRow[] = [];
  for (let offset = 0; ; offset += 4) {
    const page = await client.request('browseSessions', { sort: 'created', offset, limit: 4 });
    expect(page.server?.error).toBeNull();
    rows.push(...page.sessions);
    if (offset + 4 >= page.total) return rows;
  }
}

describe('the session browser over the file and its server', () => {
  it('lists server-only sessions beside the file’s, each marked where it lives, with the server’s projects', async () => {
    const rows = await allRows();
    expect(rows.length).toBe(roots);
    expect(new Set(rows.map((r) => r.id)).size).toBe(roots);
    expect(rows.filter((r) => r.where === 'server').map((r) => r.id).sort()).toEqual([...evicted].sort());
    expect(rows.filter((r) => r.where === 'both').length).toBe(roots - evicted.length);
    for (const id of evicted) {
      const row = rows.find((r) => r.id === id)!;
      expect(row.project.length).toBeGreaterThan(0);
      expect(before.get(id)!.project.endsWith(row.project)).toBe(true);
      expect(row.bytes).toBeGreaterThan(0);
    }
    // By attachment bytes: the file's sessions carry theirs; server-only ones have none and come last.
    const byAttachments = (await client.request('browseSessions', { sort: 'attachments', limit: 200 })).sessions;
    expect(byAttachments.slice(-evicted.length).map((r) => r.id).sort()).toEqual([...evicted].sort());
    expect(byAttachments.slice(-evicted.length).every((r) => r.space === null)).toBe(true);
    expect(byAttachments.slice(0, -evicted.length).every((r) => r.space !== null && r.space !== undefined)).toBe(true);
  });

  it('pages a server-only session from the server, and decodes its attachment from the server into the cache', async () => {
    const id = evicted[0]!;
    let cursor: string | null = null;
    let messages = 0;
    let pages = 0;
    const refs: string[] = [];
    do {
      const page = await client.request('showSession', { sessionId: id, limit: 2, cursor });
      expect(page.where).toBe('server');
      expect(page.messages.length).toBeLessThanOrEqual(2);
      messages += page.messages.length;
      for (const m of page.messages) for (const p of m.parts) if (p['attachment']) refs.push((p['attachment'] as { ref: string }).ref);
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    expect(messages).toBe(before.get(id)!.messages);
    expect(pages).toBeGreaterThan(0);
    expect(refs).toEqual([partId]);
    const file = await client.request('attachment', { ref: partId });
    expect(file.sha256).toBe(pdfSha);
    expect(file.relPath.startsWith('..')).toBe(false);
    expect(relative(cacheDir, join(cacheDir, file.relPath))).toBe(file.relPath);
    expect(sha256(readFileSync(join(cacheDir, file.relPath)))).toBe(pdfSha);
  });

  it('restores a server-only session into the file byte for byte, with progress; nothing leaves the server', async () => {
    const id = evicted[1]!;
    const result = await client.request('restoreFromServer', { sessionId: id });
    expect(result).toEqual({ restored: [id], skipped: [], verified: true, from: expect.stringContaining('127.0.0.1') });
    const progress = events.filter((e) => e.event === 'progress' && e.progress.phase === 'restore');
    expect(progress.length).toBeGreaterThan(0);
    const file = new Database(db, { readonly: true });
    try {
      expect(sessionRowsText(file, id)).toBe(before.get(id)!.rows);
    } finally {
      file.close();
    }
    const [onServer] = await serverQuery<{ n: string | number }>(server.url, 'SELECT count(*) AS n FROM sk_session');
    expect(Number(onServer?.n)).toBe(serverSessions);
    const rows = await allRows();
    expect(rows.find((r) => r.id === id)?.where).toBe('both');
    expect(rows.find((r) => r.id === evicted[0])?.where).toBe('server');
    // The mirror running beside it finds the restored session the same as the server's: no conflict.
    const end = Date.now() + 60_000;
    let status = await client.request('syncStatus');
    while ((status.state !== 'idle' || status.pending > 0) && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 200));
      status = await client.request('syncStatus');
    }
    expect(status).toMatchObject({ state: 'idle', pending: 0, conflicts: 0, error: null });
    // Present now: a second restore copies nothing.
    expect(await client.request('restoreFromServer', { sessionId: id })).toMatchObject({ restored: [], skipped: [id], verified: true });
  });

  it('pages from the server again after the server dropped every connection (the kept reader reconnects)', async () => {
    const name = new URL(server.url).pathname.slice(1);
    const [killed] = await serverQuery<{ n: string | number }>(server.url, `SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE datname = '${name}' AND pid <> pg_backend_pid()`);
    expect(Number(killed?.n)).toBeGreaterThan(0);
    let page;
    for (let attempt = 0; ; attempt++) {
      try {
        page = await client.request('showSession', { sessionId: evicted[0]!, limit: 2 });
        break;
      } catch (error) {
        // At most the one request that found its connection gone fails, with a connection error.
        expect(attempt).toBe(0);
        expect(error).toMatchObject({ code: 'connection' });
      }
    }
    expect(page.where).toBe('server');
    expect(page.messages.length).toBeGreaterThan(0);
  });

  it('runs a restore as a run: runStatus shows it, cancelRun stops it between two trees, runEnded ends it, the history lists it', async () => {
    // Both evicted sessions only on the server again; the huge one's tree first.
    const file = new Database(db);
    file.pragma('foreign_keys = ON');
    file.prepare('DELETE FROM session WHERE id = ?').run(evicted[1]!);
    file.close();
    const seen = events.length;
    const restoring = client.request('restoreFromServer', { sessionIds: [evicted[0]!, evicted[1]!] });
    // Seen by a UI that was not there when it started; cancelled once the first tree is in.
    let status = await client.request('runStatus');
    const end = Date.now() + 60_000;
    while (!(status.running?.progress?.done ?? 0) && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 50));
      status = await client.request('runStatus');
    }
    expect(status.running).toMatchObject({ kind: 'restore', planId: '', sessions: 2, cancelling: false });
    expect(await client.request('cancelRun')).toEqual({ cancelling: true });
    expect((await client.request('runStatus')).running?.cancelling).toBe(true);
    const outcome = await restoring;
    expect(outcome).toMatchObject({ restored: [evicted[0]], skipped: [], verified: true, cancelled: true, notReached: [evicted[1]] });
    const ended = events.slice(seen).filter((e) => e.event === 'runEnded');
    expect(ended).toHaveLength(1);
    expect(ended[0]).toMatchObject({ end: { kind: 'restore', outcome: null, error: null, restore: { cancelled: true, restored: [evicted[0]] } } });
    expect((await client.request('runStatus')).running).toBeNull();
    // The tree reached is whole, byte for byte; the one not reached was not started.
    const after = new Database(db, { readonly: true });
    try {
      expect(sessionRowsText(after, evicted[0]!)).toBe(before.get(evicted[0]!)!.rows);
      expect(after.prepare('SELECT count(*) FROM message WHERE session_id = ?').pluck().get(evicted[1]!)).toBe(0);
      expect(after.prepare('SELECT count(*) FROM session WHERE id = ?').pluck().get(evicted[1]!)).toBe(0);
    } finally {
      after.close();
    }
    const [entry] = (await client.request('history')).entries;
    expect(entry).toMatchObject({ kind: 'restore', restored: 1, cancelled: true, removed: 0 });
    expect(entry?.from).toContain(new URL(server.url).host);
    const password = new URL(server.url).password;
    if (password) expect(JSON.stringify(entry)).not.toContain(password);
    // Restored the rest afterwards: the one not reached comes back whole too.
    expect(await client.request('restoreFromServer', { sessionIds: [evicted[0]!, evicted[1]!] })).toMatchObject({ restored: [evicted[1]], skipped: [evicted[0]], verified: true });
  });

  it('refuses a restore of a session the server does not hold, and a malformed request', async () => {
    await expect(client.request('restoreFromServer', { sessionId: 'ses_nowhere000000000000000000' })).rejects.toMatchObject({ code: 'not-found' });
    await expect(client.request('restoreFromServer', { sessionId: '' } as never)).rejects.toMatchObject({ code: 'bad-request' });
    await expect(client.request('restoreFromServer', { sessionId: evicted[0]!, sessionIds: [evicted[1]!] } as never)).rejects.toMatchObject({ code: 'bad-request' });
  });
});

describe('the session browser when the configured server cannot be read', () => {
  it('lists the file’s sessions, unmarked, and says why the server’s are missing, password masked', async () => {
    const name = 'unreachable';
    const config = join(dir, name, 'config');
    mkdirSync(join(config, 'opencode'), { recursive: true });
    writeFileSync(join(config, 'opencode', 'opencode.json'), JSON.stringify({ session: { storage: 'postgres', connectionString: 'postgres://sk:browse-s3cret@127.0.0.1:1/nothing' } }));
    const other = new UtilityClient(nodeSpawner({ entry: ENTRY, db, cacheDir, env: { ...process.env, XDG_CONFIG_HOME: config, XDG_DATA_HOME: join(dir, name, 'data'), XDG_CACHE_HOME: join(dir, name, 'cache') } }), { initialDelayMs: 50 }).start();
    try {
      const page = await other.request('browseSessions', { limit: 200 });
      const file = new Database(db, { readonly: true });
      const inFile = file.prepare('SELECT count(*) FROM session WHERE parent_id IS NULL').pluck().get() as number;
      file.close();
      expect(page.total).toBe(inFile);
      expect(page.sessions.every((r) => r.where === undefined)).toBe(true);
      expect(page.server?.error).toMatch(/127\.0\.0\.1:1/);
      expect(JSON.stringify(page)).not.toContain('browse-s3cret');
      // A session of the file still opens; one the file lacks says the server cannot be reached.
      const local = page.sessions[0]!.id;
      expect((await other.request('showSession', { sessionId: local, limit: 2 })).messages.length).toBeGreaterThan(0);
      await expect(other.request('showSession', { sessionId: 'ses_nowhere000000000000000000' })).rejects.toMatchObject({ code: 'connection' });
    } finally {
      await other.close();
    }
  }, 60_000);
});
