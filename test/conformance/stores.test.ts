/**
 * One set of reader and writer tests for every backend this machine has: the SQLite file always,
 * PostgreSQL and MariaDB on loopback, SQL Server when MSSQL_URL names one. Each backend gets the
 * same generated sessions (a server through a copy) and must answer through the interfaces
 * exactly what independent SQL on the source file says.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openReader, openWriter } from '../../src/store/open-store.js';
import type { SessionReader } from '../../src/store/reader.js';
import type { SessionItem } from '../../src/store/session-items.js';
import { copySessions } from '../../src/store/transfer/copy.js';
import type { SessionWriter } from '../../src/store/writer.js';
import { BACKENDS, freshDatabase, type FreshDatabase } from '../external/servers.js';
import { generateFixture, type FixtureSummary } from '../fixtures/generate.js';
import { tempDir } from '../helpers/env.js';

const MB = 1024 * 1024;
const dir = tempDir('sk-conformance-');
const source = join(dir, 'source.db');
let fixture: FixtureSummary;

interface SourceFacts {
  sessions: { id: string; parentId: string | null; timeCreated: number; timeUpdated: number; bytes: number }[];
  counts: Map<string, { messages: number; parts: number }>;
  partDigest: Map<string, string>;
}
let facts: SourceFacts;

beforeAll(() => {
  fixture = generateFixture({ path: source, targetBytes: 4 * MB, hugeAttachmentBytes: 2 * MB, seed: 44, rootSessions: 14 });
  const db = new Database(source, { readonly: true });
  const sessions = db
    .prepare(
      `SELECT s.id, s.parent_id AS parentId, s.time_created AS timeCreated, s.time_updated AS timeUpdated,
         coalesce((SELECT sum(length(CAST(data AS BLOB))) FROM message WHERE session_id = s.id), 0) +
         coalesce((SELECT sum(length(CAST(data AS BLOB))) FROM part WHERE session_id = s.id), 0) AS bytes
       FROM session s ORDER BY s.time_updated DESC, s.id DESC`,
    )
    .all() as SourceFacts['sessions'];
  const counts = new Map(
    (db.prepare('SELECT id, (SELECT count(*) FROM message WHERE session_id = s.id) AS messages, (SELECT count(*) FROM part WHERE session_id = s.id) AS parts FROM session s').all() as {
      id: string;
      messages: number;
      parts: number;
    }[]).map((r) => [r.id, { messages: r.messages, parts: r.parts }]),
  );
  const partDigest = new Map<string, string>();
  for (const s of sessions) {
    const hash = createHash('sha256');
    for (const data of db.prepare('SELECT CAST(data AS BLOB) FROM part WHERE session_id = ? ORDER BY id').pluck().all(s.id) as Buffer[]) hash.update(data);
    partDigest.set(s.id, hash.digest('hex'));
  }
  db.close();
  facts = { sessions, counts, partDigest };
});

/** sha256 of a session's part data in id order, as a reader exports it. */
async function exportedPartDigest(reader: SessionReader, id: string): Promise<string> {
  const parts: { id: string; data: Buffer }[] = [];
  const items = reader.exportSessions([id]);
  const take = (item: SessionItem): void => {
    if (item.kind === 'part') parts.push({ id: item.part.id, data: item.part.data });
  };
  if (Symbol.asyncIterator in items) for await (const item of items as AsyncIterable<SessionItem>) take(item);
  else for (const item of items as Iterable<SessionItem>) take(item);
  const hash = createHash('sha256');
  for (const p of parts.sort((a, b) => (a.id < b.id ? -1 : 1))) hash.update(p.data);
  return hash.digest('hex');
}

const BACKEND_CASES = [{ backend: 'sqlite' as const, skip: false }, ...BACKENDS];

for (const { backend, skip } of BACKEND_CASES) {
  describe.skipIf(skip)(`${backend}${skip ? ' (skipped: set MSSQL_URL to a SQL Server to run these)' : ''}: reader and writer`, () => {
    let location: string;
    let database: FreshDatabase | undefined;
    let reader: SessionReader;
    let writer: SessionWriter;

    beforeAll(async () => {
      if (backend === 'sqlite') {
        location = join(dir, 'sqlite.db');
        copyFileSync(source, location);
      } else {
        database = await freshDatabase(backend);
        location = database.url;
        const from = await openReader(source);
        const to = await openWriter(location, { bulk: true });
        try {
          const copied = await copySessions(from, to, { copy: 'changed' });
          expect(copied.copied).toBe(fixture.sessions);
        } finally {
          await to.close();
          await from.close();
        }
      }
      reader = await openReader(location);
      writer = await openWriter(location);
    }, 120_000);
    afterAll(async () => {
      await reader?.close();
      await writer?.close();
      await database?.drop();
    });

    it('lists every session in OpenCode order, each with its bytes', async () => {
      const listed: { id: string; bytes: number }[] = [];
      let cursor: string | null = null;
      do {
        const page = await reader.listSessions({ limit: 4, cursor });
        listed.push(...page.sessions.map((s) => ({ id: s.id, bytes: s.bytes })));
        cursor = page.nextCursor;
      } while (cursor);
      expect(listed).toEqual(facts.sessions.map((s) => ({ id: s.id, bytes: s.bytes })));
    });

    it('answers the facts transfers and retention use', async () => {
      const ids = facts.sessions.map((s) => s.id);
      expect(await reader.missingSessions(['ses_nope', ids[0] as string])).toEqual(['ses_nope']);
      expect((await reader.allSessionIds()).sort()).toEqual([...ids].sort());
      const versions = await reader.sessionVersions(ids);
      for (const s of facts.sessions) expect(versions.get(s.id)).toBe(s.timeUpdated);
      const counts = await reader.sessionCounts(ids);
      for (const id of ids) expect(counts.get(id)).toEqual(facts.counts.get(id));
      expect(await reader.contentBytes(ids)).toBe(facts.sessions.reduce((n, s) => n + s.bytes, 0));

      const roots = facts.sessions.filter((s) => s.parentId === null);
      const child = facts.sessions.find((s) => s.parentId !== null);
      expect(child).toBeDefined();
      expect(await reader.sessionTrees([child?.parentId as string])).toContain(child?.id);
      expect((await reader.storeSize()).rootSessions).toBe(roots.length);
      expect(await reader.oldestRoot()).toEqual({ created: Math.min(...roots.map((r) => r.timeCreated)), updated: Math.min(...roots.map((r) => r.timeUpdated)) });
      const cutoff = [...roots].sort((a, b) => a.timeCreated - b.timeCreated)[3]?.timeCreated as number;
      expect(await reader.rootsCreatedBefore(cutoff)).toEqual(
        roots
          .filter((r) => r.timeCreated < cutoff)
          .sort((a, b) => a.timeCreated - b.timeCreated || (a.id < b.id ? -1 : 1))
          .map((r) => r.id),
      );
      const planned = await reader.retentionFacts(true);
      expect(planned.facts.map((f) => f.id).sort()).toEqual(roots.map((r) => r.id).sort());
      const family = planned.facts.find((f) => f.id === child?.parentId);
      expect(family?.children).toContain(child?.id);
    });

    it('shows every message, and exports every part byte for byte', async () => {
      for (const s of facts.sessions) {
        let messages = 0;
        let parts = 0;
        let cursor: string | null = null;
        do {
          const page = await reader.showSession(s.id, { limit: 3, cursor });
          messages += page.messages.length;
          parts += page.messages.reduce((n, m) => n + m.parts.length, 0);
          cursor = page.nextCursor;
        } while (cursor);
        expect({ messages, parts }).toEqual(facts.counts.get(s.id));
        expect(await exportedPartDigest(reader, s.id)).toBe(facts.partDigest.get(s.id));
      }
    });

    it('extracts the big attachment to the bytes the source holds', async () => {
      const a = await reader.extractAttachment(fixture.hugePartId as string, join(dir, `cache-${backend}`));
      expect(a.bytes).toBe(2 * MB);
      const check = await openReader(source);
      try {
        expect((await check.extractAttachment(fixture.hugePartId as string, join(dir, 'cache-source'))).sha256).toBe(a.sha256);
      } finally {
        await check.close();
      }
    });

    it('hands over the attachment as the open handle it was decoded through', async () => {
      const opened = await reader.openAttachment(fixture.hugePartId as string, join(dir, `cache-handle-${backend}`));
      try {
        const bytes = await opened.handle.readFile();
        expect(bytes.length).toBe(2 * MB);
        expect(createHash('sha256').update(bytes).digest('hex')).toBe(opened.result.sha256);
      } finally {
        await opened.handle.close();
      }
      await expect(reader.openAttachment(`${fixture.hugePartId as string}.9`, join(dir, `cache-handle-${backend}`))).rejects.toThrow(/no number 9/);
    });

    it('deletes whole trees, keeps a tree that changed, and imports an exported tree back whole', async () => {
      const family = facts.sessions.find((s) => s.parentId !== null);
      const root = family?.parentId as string;
      const tree = await reader.sessionTrees([root]);
      expect(tree.length).toBeGreaterThan(1);
      const versions = await reader.sessionVersions(tree);

      // An expected version that is not the stored one: the tree is left alone.
      const stale = new Map([...versions].map(([id, v]) => [id, { updated: v - 1 }]));
      const kept = await writer.deleteTrees([root], { expected: stale });
      expect(kept).toMatchObject({ deleted: [], changed: [root] });
      expect(await reader.missingSessions(tree)).toEqual([]);

      // The tree's items, gathered before the delete, go back in after it.
      const items: SessionItem[] = [];
      const exported = reader.exportSessions(tree);
      if (Symbol.asyncIterator in exported) for await (const item of exported as AsyncIterable<SessionItem>) items.push(item);
      else for (const item of exported as Iterable<SessionItem>) items.push(item);

      // Counts that are not the stored ones: kept as well.
      const wrongCounts = new Map([...versions].map(([id, v]) => [id, { updated: v, counts: { message: (facts.counts.get(id)?.messages ?? 0) + 1 } }]));
      expect(await writer.deleteTrees([root], { expected: wrongCounts })).toMatchObject({ deleted: [], changed: [root] });

      const exact = new Map([...versions].map(([id, v]) => [id, { updated: v, counts: { message: facts.counts.get(id)?.messages ?? 0, part: facts.counts.get(id)?.parts ?? 0 } }]));
      const deleted = await writer.deleteTrees([root], { expected: exact });
      expect(deleted.deleted).toEqual([root]);
      expect(deleted.sessionIds.sort()).toEqual([...tree].sort());
      expect(await reader.missingSessions(tree)).toEqual(tree);
      expect((await writer.sessionStates(tree)).size).toBe(0);

      const imported = await writer.importSessions(items, { existing: 'skip' });
      expect(imported.imported.map((s) => s.id).sort()).toEqual([...tree].sort());
      const states = await writer.sessionStates(tree);
      for (const id of tree) {
        expect(states.get(id)).toMatchObject({ whole: true, updated: versions.get(id), ...facts.counts.get(id) });
        expect(await exportedPartDigest(reader, id)).toBe(facts.partDigest.get(id));
      }
      const again = await writer.importSessions(items, { existing: 'skip' });
      expect(again.imported).toEqual([]);
      expect(again.skipped.sort()).toEqual([...tree].sort());
      expect(['none', 'vacuum', 'incremental']).toContain((await writer.reclaim()).mode);
    });
  });
}
