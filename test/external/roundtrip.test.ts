/**
 * A generated OpenCode database (attachments, child sessions, a multi-chunk PDF) migrated into
 * each real server, then read back through the external store: the same list and show pages, the
 * same stats, every attachment decoded to the same bytes, and restored into SQLite byte for byte.
 * Writes through the store interface round-trip on each backend.
 */
import Database from 'better-sqlite3';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listResultSchema, showResultSchema } from '../../src/core/api.js';
import { generateFixture, type FixtureSummary } from '../fixtures/generate.js';
import { migrateTo, restoreFrom } from '../../src/main/migration.js';
import { ExternalStore } from '../../src/store/external/external-store.js';
import { openReader } from '../../src/store/open-store.js';
import type { PageReader } from '../../src/store/reader.js';
import { emptyOpenCodeDb, tempDir } from '../helpers/env.js';
import { BACKENDS, freshDatabase, rowsDigest, serverQuery, type FreshDatabase } from './servers.js';

const MB = 1024 * 1024;
const dir = tempDir('sk-external-');
const source = join(dir, 'opencode.db');
let fixture: FixtureSummary;

beforeAll(() => {
  // 3 MB decoded: the PDF spans several 1 MB chunks.
  fixture = generateFixture({ path: source, targetBytes: 6 * MB, hugeAttachmentBytes: 3 * MB, seed: 21 });
});

async function allShows(store: Pick<PageReader, 'showSession'>, id: string): Promise<unknown[]> {
  const pages: unknown[] = [];
  let cursor: string | null = null;
  do {
    const page = await store.showSession(id, { limit: 7, cursor });
    pages.push(showResultSchema.parse(page));
    cursor = page.nextCursor;
  } while (cursor);
  return pages;
}

for (const { backend, skip } of BACKENDS) {
  describe.skipIf(skip)(`${backend}${skip ? ' (skipped: set MSSQL_URL to a SQL Server to run these)' : ''}`, () => {
    let database: FreshDatabase;
    beforeAll(async () => {
      database = await freshDatabase(backend);
    });
    afterAll(async () => {
      await database?.drop();
    });

    it('migrates a generated database and reads every session back identically', async () => {
      expect(fixture.rootSessions).toBeLessThan(fixture.sessions); // child sessions present
      const before = readFileSync(source);
      const result = await migrateTo({ db: source, to: database.url });
      expect(result.verified).toBe(true);
      expect(result.copied).toBe(fixture.sessions);
      expect(result.messages).toBe(fixture.messages);
      expect(result.parts).toBe(fixture.parts);
      expect(readFileSync(source).equals(before)).toBe(true);

      const sqlite = await openReader(source);
      const external = await openReader(database.url);
      try {
        // Lists: every page the same, in the same order.
        let c1: string | null = null;
        let c2: string | null = null;
        let listed = 0;
        do {
          const a = await sqlite.listSessions({ limit: 5, cursor: c1 });
          const b = listResultSchema.parse(await external.listSessions({ limit: 5, cursor: c2 }));
          expect(b).toEqual(a);
          listed += a.sessions.length;
          c1 = a.nextCursor;
          c2 = b.nextCursor;
        } while (c1);
        expect(listed).toBe(fixture.sessions);

        const stats = await external.stats();
        const local = await sqlite.stats();
        expect(stats.sessions).toBe(local.sessions);
        expect(stats.rootSessions).toBe(local.rootSessions);
        expect(stats.messages).toBe(local.messages);
        expect(stats.parts).toBe(local.parts);
        expect(stats.attachments).toEqual(local.attachments);
        expect(stats.attachments.count).toBe(fixture.attachments.count);

        const db = new Database(source, { readonly: true });
        const sessionIds = db.prepare('SELECT id FROM session ORDER BY id').pluck().all() as string[];
        let extracted = 0;
        for (const id of sessionIds) {
          const a = await allShows(sqlite, id);
          const b = await allShows(external, id);
          expect(b).toEqual(a);
          // Every attachment reference on these pages, extracted from both stores.
          const refs = JSON.stringify(a).match(/"ref":"(prt_[A-Za-z0-9]+(?:\.\d+)?)"/g) ?? [];
          for (const match of refs) {
            const ref = match.slice(7, -1);
            const x = await sqlite.extractAttachment(ref, join(dir, 'cache-sqlite'));
            const y = await external.extractAttachment(ref, join(dir, `cache-${backend}`));
            expect({ ...y, path: '' }).toEqual({ ...x, path: '' });
            expect(readFileSync(y.path).equals(readFileSync(x.path))).toBe(true);
            extracted++;
          }
        }
        expect(extracted).toBe(fixture.attachments.count);
        db.close();
      } finally {
        await sqlite.close();
        await external.close();
      }
    });

    it('runs again without duplicating anything', async () => {
      const again = await migrateTo({ db: source, to: database.url });
      expect(again.copied).toBe(0);
      expect(again.skipped).toBe(fixture.sessions);
      expect(again.verified).toBe(true);
      const external = await openReader(database.url);
      try {
        const stats = await external.stats();
        expect(stats.parts).toBe(fixture.parts);
        expect(stats.messages).toBe(fixture.messages);
      } finally {
        await external.close();
      }
      // Content-addressed: the same bytes are stored once.
      const [rows] = await serverQuery<{ n: number | string }>(database.url, 'SELECT COUNT(*) AS n FROM sk_attachment');
      expect(Number(rows?.n)).toBeLessThanOrEqual(fixture.attachments.count);
    });

    it('restores every session into an empty SQLite file byte for byte', async () => {
      const target = join(dir, `restored-${backend}.db`);
      emptyOpenCodeDb(target).close();
      const db = new Database(source, { readonly: true });
      const roots = db.prepare('SELECT id FROM session WHERE parent_id IS NULL ORDER BY id').pluck().all() as string[];
      db.close();
      const result = await restoreFrom({ db: target, from: database.url, roots });
      expect(result.copied).toBe(fixture.sessions);
      const again = await restoreFrom({ db: target, from: database.url, roots });
      expect(again.skipped).toBe(fixture.sessions);
      expect(rowsDigest(target)).toBe(rowsDigest(source));
    });

    it('round-trips writes through the store interface', async () => {
      const store = await ExternalStore.open(database.url, { create: true });
      try {
        const pdf = Buffer.alloc(2 * MB + 7, 0x5a);
        pdf.write('%PDF-1.7', 0);
        const url = `data:application/pdf;base64,${pdf.toString('base64')}`;
        const session = {
          id: 'ses_write0000001', project_id: 'global', parent_id: null, slug: 's', directory: '/w', title: 'written',
          version: '1.1.0', time_created: 1000, time_updated: 2000, cost: 0.25, tokens_input: 1, tokens_output: 2,
          tokens_reasoning: 0, tokens_cache_read: 0, tokens_cache_write: 0,
        };
        await store.putSession(session);
        await store.putSession({ ...session, id: 'ses_write0000002', parent_id: 'ses_write0000001', title: 'child' });
        const message = '{"role":"user","time":{"created":1000},"agent":"build"}';
        await store.putMessage({ id: 'msg_w1', sessionId: session.id, timeCreated: 1000, timeUpdated: 1000, data: message });
        const partText = `{"type":"file","mime":"application/pdf","filename":"a.pdf","url":"${url}"}`;
        await store.putPart({ id: 'prt_w1', messageId: 'msg_w1', sessionId: session.id, timeCreated: 1001, timeUpdated: 1001, data: partText });
        await store.putPart({ id: 'prt_w2', messageId: 'msg_w1', sessionId: session.id, timeCreated: 1002, timeUpdated: 1002, data: '{"type":"text","text":"hello"}' });

        const page = await store.showSession(session.id);
        expect(page.messages).toHaveLength(1);
        const [file, text] = page.messages[0]?.parts ?? [];
        expect(file?.['attachment']).toEqual({ ref: 'prt_w1', mime: 'application/pdf', filename: 'a.pdf', bytes: pdf.length });
        expect(text?.['text']).toBe('hello');
        const out = await store.extractAttachment('prt_w1', join(dir, `wcache-${backend}`));
        expect(readFileSync(out.path).equals(pdf)).toBe(true);

        // The part comes back as the exact bytes written.
        const parts: string[] = [];
        for await (const item of store.exportSessions([session.id])) if (item.kind === 'part') parts.push(item.part.data.toString());
        expect(parts).toEqual([partText, '{"type":"text","text":"hello"}']);

        // Update: same id, new content; the old attachment is no longer stored.
        await store.putPart({ id: 'prt_w1', messageId: 'msg_w1', sessionId: session.id, timeCreated: 1001, timeUpdated: 1003, data: '{"type":"text","text":"replaced"}' });
        const list = await store.listSessions({ limit: 1000 });
        const mine = list.sessions.filter((s) => s.id.startsWith('ses_write'));
        expect(mine.map((s) => s.id)).toEqual(['ses_write0000002', 'ses_write0000001']);
        expect(mine[1]?.bytes).toBe(Buffer.byteLength(message) + Buffer.byteLength('{"type":"text","text":"replaced"}') + Buffer.byteLength('{"type":"text","text":"hello"}'));
        const chunks = await serverQuery(database.url, `SELECT sha256 FROM sk_attachment_chunk WHERE sha256 = '${out.sha256}'`);
        expect(chunks).toHaveLength(0);

        // Delete takes the child session along.
        const deleted = await store.deleteTrees([session.id]);
        expect(deleted.deleted).toEqual([session.id]);
        expect(deleted.sessionIds.sort()).toEqual(['ses_write0000001', 'ses_write0000002']);
        await expect(store.showSession(session.id)).rejects.toThrow(/no session/);
      } finally {
        await store.close();
      }
    });
  });
}
