/**
 * The reader against a generated OpenCode database, checked by independent SQL: order across the
 * 2026-08-14 id wrap, counts and byte totals, every message and part paged, every attachment
 * decoded to the bytes the part holds.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { copyFileSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listResultSchema, showResultSchema, statsResultSchema, type ListResult, type ShowResult, type StatsResult } from '../../src/core/api.js';
import { generateFixture } from '../fixtures/generate.js';
import { SessionService } from '../../dist/main/service.js';
import { openFileReader } from '../../dist/store/open-store.js';
import { insertSession, parseJson, runCli, tempDir } from '../helpers/env.js';

const dir = tempDir();
const dbPath = join(dir, 'opencode.db');
const cacheDir = join(dir, 'cache');
let reference: Database.Database;
let service: SessionService;

beforeAll(() => {
  generateFixture({ path: dbPath, targetBytes: 24 * 1024 * 1024, seed: 7 });
  reference = new Database(dbPath, { readonly: true });
});
afterAll(async () => {
  reference.close();
  await service?.close();
});

/** Every data: URL of every part, decoded here without any of our code. */
function independentAttachments(): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const rows = reference.prepare('SELECT id, data FROM part').all() as { id: string; data: string }[];
  for (const row of rows) {
    const urls: string[] = [];
    const walk = (node: unknown): void => {
      if (typeof node === 'string' && node.startsWith('data:')) urls.push(node);
      else if (Array.isArray(node)) node.forEach(walk);
      else if (node && typeof node === 'object') Object.values(node).forEach(walk);
    };
    walk(JSON.parse(row.data));
    urls.forEach((url, index) => {
      out.set(index === 0 ? row.id : `${row.id}.${index}`, Buffer.from(url.slice(url.indexOf(',') + 1), 'base64'));
    });
  }
  return out;
}

describe('reading a generated database', () => {
  it('lists every session newest first by time_updated, across the id wrap, page by page', () => {
    const ids: string[] = [];
    let cursor: string | null = null;
    do {
      const page: ListResult = listResultSchema.parse(
        parseJson(runCli(['--db', dbPath, '--json', 'list', '--limit', '7', ...(cursor ? ['--cursor', cursor] : [])], { cacheDir })),
      );
      expect(page.sessions.length).toBeLessThanOrEqual(7);
      ids.push(...page.sessions.map((s) => s.id));
      cursor = page.nextCursor;
    } while (cursor);
    const byTime = reference.prepare('SELECT id FROM session ORDER BY time_updated DESC, id DESC').pluck().all();
    const byId = reference.prepare('SELECT id FROM session ORDER BY id DESC').pluck().all();
    expect(ids).toEqual(byTime);
    // The fixture straddles the wrap, so sorting by id would have been visibly wrong.
    expect(byId).not.toEqual(byTime);
  });

  it('sizes each session as independent SQL does', () => {
    const page = listResultSchema.parse(parseJson(runCli(['--db', dbPath, '--json', 'list', '--limit', '1000'], { cacheDir })));
    const expected = reference.prepare(
      `SELECT s.id,
         (SELECT coalesce(sum(length(CAST(data AS BLOB))), 0) FROM message WHERE session_id = s.id) +
         (SELECT coalesce(sum(length(CAST(data AS BLOB))), 0) FROM part WHERE session_id = s.id) AS bytes
       FROM session s`,
    ).all() as { id: string; bytes: number }[];
    const byId = new Map(expected.map((r) => [r.id, r.bytes]));
    expect(page.sessions.length).toBe(expected.length);
    for (const s of page.sessions) expect(s.bytes).toBe(byId.get(s.id));
  });

  it('stats agree with independent counts, sizes and decoded attachment bytes', () => {
    const stats: StatsResult = statsResultSchema.parse(parseJson(runCli(['--db', dbPath, '--json', 'stats'], { cacheDir })));
    const count = (sql: string): number => reference.prepare(sql).pluck().get() as number;
    expect(stats.fileBytes).toBe(statSync(dbPath).size);
    expect(stats.sessions).toBe(count('SELECT count(*) FROM session'));
    expect(stats.rootSessions).toBe(count('SELECT count(*) FROM session WHERE parent_id IS NULL'));
    expect(stats.messages).toBe(count('SELECT count(*) FROM message'));
    expect(stats.parts).toBe(count('SELECT count(*) FROM part'));
    expect(stats.events).toBe(count('SELECT count(*) FROM event'));
    expect(stats.freeBytes).toBe(count('PRAGMA freelist_count') * count('PRAGMA page_size'));
    const attachments = independentAttachments();
    expect(stats.attachments.count).toBe(attachments.size);
    expect(stats.attachments.bytes).toBe([...attachments.values()].reduce((sum, b) => sum + b.length, 0));
    const largest = reference.prepare(
      `SELECT s.id, (SELECT coalesce(sum(length(CAST(data AS BLOB))),0) FROM message WHERE session_id = s.id)
         + (SELECT coalesce(sum(length(CAST(data AS BLOB))),0) FROM part WHERE session_id = s.id)
         + (SELECT coalesce(sum(length(CAST(data AS BLOB))),0) FROM event WHERE aggregate_id = s.id) AS bytes
       FROM session s ORDER BY bytes DESC, s.id LIMIT 10`,
    ).all();
    expect(stats.largest.map(({ id, bytes }) => ({ id, bytes }))).toEqual(largest);
    expect(stats.warnings).toEqual([]);
  });

  it('pages every message and part of every session in time order, attachments as references', async () => {
    service = await SessionService.open({ db: dbPath, cacheDir });
    const sessions = reference.prepare('SELECT id FROM session').pluck().all() as string[];
    const seenRefs: string[] = [];
    for (const id of sessions) {
      const messageIds: string[] = [];
      const partIds: string[] = [];
      let cursor: string | null = null;
      do {
        const page: ShowResult = showResultSchema.parse(await service.showSession(id, { limit: 3, cursor }));
        expect(page.session['id']).toBe(id);
        for (const m of page.messages) {
          messageIds.push(String(m.info['id']));
          expect(m.info['sessionID']).toBe(id);
          for (const p of m.parts) {
            partIds.push(String(p['id']));
            expect(JSON.stringify(p)).not.toContain('base64,');
            const refs = JSON.stringify(p).match(/"ref":"[^"]+"/g) ?? [];
            seenRefs.push(...refs.map((r) => r.slice(7, -1)));
          }
        }
        cursor = page.nextCursor;
      } while (cursor);
      expect(messageIds).toEqual(
        reference.prepare('SELECT id FROM message WHERE session_id = ? ORDER BY time_created, id').pluck().all(id),
      );
      expect(partIds).toEqual(
        reference
          .prepare('SELECT p.id FROM part p JOIN message m ON m.id = p.message_id WHERE m.session_id = ? ORDER BY m.time_created, m.id, p.time_created, p.id')
          .pluck()
          .all(id),
      );
    }
    expect(seenRefs.sort()).toEqual([...independentAttachments().keys()].sort());
  });

  it('decodes every attachment to the bytes the part holds', async () => {
    const attachments = independentAttachments();
    expect(attachments.size).toBeGreaterThan(10);
    for (const [ref, bytes] of attachments) {
      const result = await service.attachment(ref);
      expect(result.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
      expect(readFileSync(result.path).equals(bytes)).toBe(true);
      expect(result.path.startsWith(cacheDir)).toBe(true);
    }
    expect(service.workerHeapPeak).toBeGreaterThan(0);
  });

  it('writes an attachment where asked, with --json naming path, bytes and sha256', () => {
    const [ref, bytes] = [...independentAttachments()][0] as [string, Buffer];
    const out = join(dir, 'out.bin');
    const result = parseJson<{ ref: string; path: string; bytes: number; sha256: string }>(
      runCli(['--db', dbPath, '--json', 'attachment', ref, '--out', out], { cacheDir }),
    );
    expect(result).toMatchObject({ ref, path: out, bytes: bytes.length });
    expect(readFileSync(out).equals(bytes)).toBe(true);
    expect(statSync(out).mode & 0o777).toBe(0o600);
  });

  it('serves no stale page after another process commits', async () => {
    const before = await service.listSessions({ limit: 1 });
    const writer = new Database(dbPath);
    insertSession(writer, 'ses_zzzz_newest', Date.UTC(2027, 0, 1), Date.UTC(2027, 0, 1));
    writer.close();
    const after = await service.listSessions({ limit: 1 });
    expect(before.sessions[0]?.id).not.toBe('ses_zzzz_newest');
    expect(after.sessions[0]?.id).toBe('ses_zzzz_newest');
  });

  it('reads the same pages through a memory map (list in the CLI), and sees commits in the WAL and after a checkpoint', async () => {
    const path = join(dir, 'mapped.db');
    copyFileSync(dbPath, path);
    const plain = openFileReader(path);
    const mapped = openFileReader(path, { mapped: true });
    try {
      const everything = { limit: 500 };
      const [want, got] = [await plain.listSessions(everything), await mapped.listSessions(everything)];
      expect(got.sessions.length).toBeGreaterThan(10);
      expect(got).toEqual(want);
      const first = got.sessions[0]?.id as string;
      expect(await mapped.showSession(first, { limit: 5 })).toEqual(await plain.showSession(first, { limit: 5 }));

      const writer = new Database(path);
      writer.pragma('journal_mode = WAL');
      insertSession(writer, 'ses_zzzz_mapped', Date.UTC(2027, 0, 2), Date.UTC(2027, 0, 2));
      writer.prepare("INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES ('msg_zzzz_mapped', 'ses_zzzz_mapped', 1, 1, ?)").run(JSON.stringify({ role: 'user', pad: 'x'.repeat(300_000) }));
      // In the WAL only: the map covers the file, SQLite reads the newer pages from the log.
      const inWal = (await mapped.listSessions({ limit: 1 })).sessions[0];
      expect(inWal).toMatchObject({ id: 'ses_zzzz_mapped' });
      expect(inWal?.bytes).toBeGreaterThan(300_000);
      writer.pragma('wal_checkpoint(TRUNCATE)');
      writer.close();
      // Folded into a file that grew past what was mapped at first.
      expect((await mapped.listSessions({ limit: 1 })).sessions[0]).toEqual(inWal);
      expect(await mapped.listSessions(everything)).toEqual(await plain.listSessions(everything));
    } finally {
      await mapped.close();
      await plain.close();
    }
  });
});
