/**
 * Retention with an external primary (`storage` + `connectionString`): the local file is a cache.
 * A session leaves it without an archive only when the server holds a verified copy of exactly
 * the version the file holds (the plan says "mirrored, no archive needed"); one changed since it
 * was mirrored is mirrored first, one changed even in place between the check and the delete is
 * kept, and with the server unreachable the usual archive is written. `restore --from` brings an
 * evicted session back byte for byte. Against real PostgreSQL and MariaDB.
 */
import Database from 'better-sqlite3';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { mergeOverrides, parseSessionConfig, type SessionConfig } from '../../src/core/config.js';
import { restoreFrom } from '../../src/main/migration.js';
import { applyRetention, dryRun } from '../../src/main/retention.js';
import { runSync } from '../../src/main/sync.js';
import { openFileReader, openWriter } from '../../src/store/open-store.js';
import { sessionsAsText, syncFixture } from './sync-helpers.js';

const MB = 1024 * 1024;
// The mirror's source ids live beside the attachment cache: a private one for this file.
const { dir, copyOfSeed, fresh: freshDatabase } = syncFixture('sk-sync-retention-', { targetBytes: 3 * MB, seed: 24, rootSessions: 12, schema: '1.18', newerLayoutShare: 0.3 }, { cacheHome: true });

function configFor(url: string, archiveDir: string, maxSessions: number): SessionConfig {
  return mergeOverrides(parseSessionConfig({ storage: url.startsWith('postgres') ? 'postgres' : 'mysql', connectionString: url, archiveDir }, 'test'), { maxSessions });
}

const rootsOf = (db: string): string[] => {
  const file = new Database(db, { readonly: true });
  const ids = file.prepare('SELECT id FROM session WHERE parent_id IS NULL ORDER BY time_created').pluck().all() as string[];
  file.close();
  return ids;
};

describe.each(['postgres', 'mysql'] as const)('retention with an external primary (%s)', (backend) => {
  let url: string;
  beforeAll(async () => {
    const d = await freshDatabase(backend);
    url = d.url;
  });

  it('evicts what the server holds exactly, without an archive; restore --from brings it back byte for byte', async () => {
    const db = copyOfSeed();
    const archiveDir = join(dir, `archive-${backend}-1`);
    await runSync({ db, to: url, once: true });
    const before = await sessionsAsText(db);
    const config = configFor(url, archiveDir, 8);
    // One planned root changes after the mirror ran: the plan does not count it as mirrored.
    const changed = rootsOf(db)[0] as string;
    const file = new Database(db);
    file.prepare("UPDATE part SET data = json_set(data, '$.edited', 1) WHERE id = (SELECT id FROM part WHERE session_id = ? ORDER BY id LIMIT 1)").run(changed);
    file.close();
    const plan = await dryRun({ db, config });
    expect(plan.evict.length).toBe(4);
    expect(plan.mirrored?.sort()).toEqual(plan.evict.map((e) => e.id).filter((id) => id !== changed).sort());

    // Apply mirrors the changed one first, then evicts every planned tree on the strength of the server's copy.
    const applied = await applyRetention({ db, config, cacheDir: join(dir, 'cache', 'attachments'), log: () => undefined });
    expect(applied.evicted.sort()).toEqual(plan.evict.map((e) => e.id).sort());
    expect(applied.mirrored?.sort()).toEqual(applied.evicted.slice().sort());
    expect(applied.archive).toBeNull();
    expect(existsSync(archiveDir) ? readdirSync(archiveDir) : []).toEqual([]);
    // The server holds each evicted tree as the file held it, the edit included.
    const server = await sessionsAsText(url);
    expect(server.get(changed)).not.toBe(before.get(changed));

    await restoreFrom({ db, from: url, roots: applied.evicted });
    const restored = await sessionsAsText(db);
    for (const [id, text] of server) if (before.has(id)) expect(restored.get(id)).toBe(text);
    expect(restored.size).toBe(before.size);
  });

  it('keeps a session changed in place after the check, and archives as usual when the server cannot be asked', async () => {
    const db = copyOfSeed();
    await runSync({ db, to: url, once: true });
    const root = rootsOf(db)[0] as string;
    const reader = openFileReader(db);
    const marks = await reader.sessionMarks([root]);
    const versions = await reader.sessionVersions([root]);
    await reader.close();
    // Changed in place (same time_updated, same row counts): only the mark tells.
    const file = new Database(db);
    file.prepare("UPDATE part SET data = json_set(data, '$.edited', 2) WHERE id = (SELECT id FROM part WHERE session_id = ? ORDER BY id LIMIT 1)").run(root);
    file.close();
    const writer = await openWriter(db);
    try {
      const result = await writer.deleteTrees([root], { expected: new Map([[root, { updated: versions.get(root) as number, mark: marks.get(root)?.mark as string }]]) });
      expect(result.changed).toEqual([root]);
      expect(result.deleted).toEqual([]);
    } finally {
      await writer.close();
    }

    const archiveDir = join(dir, `archive-${backend}-2`);
    const unreachable = new URL(url);
    unreachable.port = '9';
    const lines: string[] = [];
    const applied = await applyRetention({ db, config: configFor(unreachable.toString(), archiveDir, 10), cacheDir: join(dir, 'cache', 'attachments'), log: (l) => lines.push(l) });
    expect(applied.evicted.length).toBe(2);
    expect(applied.mirrored ?? []).toEqual([]);
    expect(applied.archive).not.toBeNull();
    expect(lines.some((l) => /cannot be asked/.test(l))).toBe(true);
  });
});
