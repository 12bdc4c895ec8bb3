/**
 * PostgreSQL digests a verification group itself (one query, no rows back): its digest of the
 * stored rows is the one the copy computed from the SQLite file, event-log rows included; it
 * changes when a stored body, time or attachment list does; and ids whose bytewise order differs
 * from JavaScript's (private-use characters beside characters beyond the BMP) still verify,
 * through the row-by-row re-check.
 */
import { join } from 'node:path';
import pg from 'pg';
import { Kysely, PostgresDialect } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateTo } from '../../src/main/migration.js';
import { postgresDialect } from '../../src/store/external/dialects/postgres.js';
import type { SkTables } from '../../src/store/external/tables.js';
import { generateFixture } from '../fixtures/generate.js';
import { emptyOpenCodeDb, insertMessage, insertRawPart, insertSession, tempDir } from '../helpers/env.js';
import { freshDatabase, type FreshDatabase } from './servers.js';

const dir = tempDir('sk-server-digest-');
const generated = join(dir, 'generated.db');
const unusual = join(dir, 'unusual.db');

/** Ids sorted one way by UTF-16 units and the other way by UTF-8 bytes. */
const PRIVATE_USE = 'prt_\uE000';
const ASTRAL = 'prt_\u{1F600}';

beforeAll(() => {
  generateFixture({ path: generated, targetBytes: 2 * 1024 * 1024, seed: 11, events: true });
  const db = emptyOpenCodeDb(unusual);
  insertSession(db, 'ses_unusual0001', 1000, 2000);
  insertMessage(db, 'msg_\u{1F600}', 'ses_unusual0001', 1000);
  insertMessage(db, 'msg_\uE000', 'ses_unusual0001', 1000);
  insertRawPart(db, PRIVATE_USE, 'msg_\uE000', 'ses_unusual0001', 1001, '{"type":"text","text":"private use"}');
  insertRawPart(db, ASTRAL, 'msg_\u{1F600}', 'ses_unusual0001', 1001, '{"type":"text","text":"astral"}');
  db.close();
});

describe('postgres: server-side group digests', () => {
  let database: FreshDatabase;
  let db: Kysely<SkTables>;
  beforeAll(async () => {
    database = await freshDatabase('postgres');
    db = new Kysely<SkTables>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: database.url, max: 2 }) }) });
  });
  afterAll(async () => {
    await db?.destroy();
    await database?.drop();
  });

  const digests = async (ids: readonly string[]): Promise<Map<string, { messages: number; parts: number; digest: string }>> => {
    if (!postgresDialect.storedDigests) throw new Error('postgres has no storedDigests');
    return await postgresDialect.storedDigests(db, ids);
  };

  it('gives the digest and counts the copy computed from the file, event rows included', async () => {
    const result = await migrateTo({ db: generated, to: database.url });
    expect(result.verified).toBe(true);
    const sessions = await db.selectFrom('sk_session').select(['id', 'digest', 'messages', 'parts']).execute();
    const withEvents = await db.selectFrom('sk_row').select('session_id').distinct().execute();
    expect(withEvents.length).toBeGreaterThan(0);
    const found = await digests(sessions.map((s) => s.id));
    for (const s of sessions) {
      expect(found.get(s.id), s.id).toEqual({ id: s.id, messages: Number(s.messages), parts: Number(s.parts), digest: s.digest });
    }
  });

  it('changes when a stored body, time or attachment list changes', async () => {
    const part = await db.selectFrom('sk_part').select(['id', 'session_id', 'body', 'time_updated', 'attachments']).orderBy('id').limit(1).executeTakeFirstOrThrow();
    const row = await db.selectFrom('sk_row').select(['session_id', 'ord', 'body']).orderBy('session_id').limit(1).executeTakeFirstOrThrow();
    const before = await digests([part.session_id, row.session_id]);
    const changes: [() => Promise<unknown>, () => Promise<unknown>, string][] = [
      [() => db.updateTable('sk_part').set({ body: Buffer.concat([part.body, Buffer.from(' ')]) }).where('id', '=', part.id).execute(), () => db.updateTable('sk_part').set({ body: part.body }).where('id', '=', part.id).execute(), part.session_id],
      [() => db.updateTable('sk_part').set({ time_updated: Number(part.time_updated) + 1 }).where('id', '=', part.id).execute(), () => db.updateTable('sk_part').set({ time_updated: part.time_updated }).where('id', '=', part.id).execute(), part.session_id],
      [() => db.updateTable('sk_part').set({ attachments: '[]' }).where('id', '=', part.id).execute(), () => db.updateTable('sk_part').set({ attachments: part.attachments }).where('id', '=', part.id).execute(), part.session_id],
      [() => db.updateTable('sk_row').set({ body: Buffer.from('x') }).where('session_id', '=', row.session_id).where('ord', '=', row.ord).execute(), () => db.updateTable('sk_row').set({ body: row.body }).where('session_id', '=', row.session_id).where('ord', '=', row.ord).execute(), row.session_id],
    ];
    for (const [change, undo, sessionId] of changes) {
      await change();
      expect((await digests([sessionId])).get(sessionId)?.digest).not.toBe(before.get(sessionId)?.digest);
      await undo();
      expect((await digests([sessionId])).get(sessionId)?.digest).toBe(before.get(sessionId)?.digest);
    }
  });

  it('verifies a session whose ids the server sorts otherwise, by the row-by-row re-check', async () => {
    const result = await migrateTo({ db: unusual, to: database.url });
    expect(result.verified).toBe(true);
    const stored = await db.selectFrom('sk_session').select(['digest', 'complete']).where('id', '=', 'ses_unusual0001').executeTakeFirstOrThrow();
    expect(Number(stored.complete)).toBe(1);
    // The server's own digest differs here (bytewise order), which is why the re-check exists.
    expect((await digests(['ses_unusual0001'])).get('ses_unusual0001')?.digest).not.toBe(stored.digest);
  });
});
