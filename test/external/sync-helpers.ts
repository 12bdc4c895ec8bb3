/** The sync tests' shared set-up, and comparing a mirror with its source: one line of text per session. */
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { openReader } from '../../src/store/open-store.js';
import type { SessionItem } from '../../src/store/session-items.js';
import { generateFixture, type FixtureOptions } from '../fixtures/generate.js';
import { runCli, tempDir } from '../helpers/env.js';
import { freshDatabase, type Backend, type FreshDatabase } from './servers.js';

/** Every item of every session, as a comparable text: ids, times, exact bytes of every value, every table. */
export async function sessionsAsText(location: string, ids?: readonly string[]): Promise<Map<string, string>> {
  const reader = await openReader(location);
  try {
    const out = new Map<string, string>();
    const all = ids ?? (await reader.allSessionIds());
    const items = reader.exportSessions(all);
    let hash = createHash('sha256');
    const norm = (value: unknown): unknown =>
      Buffer.isBuffer(value) ? `b:${createHash('sha256').update(value).digest('hex')}` : value && typeof value === 'object' && 'bytes' in (value as object) ? `B:${createHash('sha256').update((value as { bytes: Buffer }).bytes).digest('hex')}` : typeof value === 'bigint' ? value.toString() : value;
    const rowText = (row: Record<string, unknown>): string => JSON.stringify(Object.keys(row).sort().map((k) => [k, norm(row[k])]));
    const take = (item: SessionItem): void => {
      switch (item.kind) {
        case 'session':
          hash = createHash('sha256');
          hash.update(rowText(item.header.session)).update(JSON.stringify(item.header.todos.map(rowText))).update(item.header.share ? rowText(item.header.share) : '-');
          hash.update(item.header.diff ?? Buffer.alloc(0));
          return;
        case 'message':
          hash.update(`m${item.message.id}${item.message.timeCreated}${item.message.timeUpdated}`).update(item.message.data);
          return;
        case 'part':
          hash.update(`p${item.part.id}${item.part.messageId}${item.part.timeCreated}${item.part.timeUpdated}`).update(item.part.data);
          return;
        case 'rows':
          for (const row of item.rows) hash.update(`${item.table}:${rowText(row)}`);
          return;
        case 'end':
          out.set(item.sessionId, `${JSON.stringify(Object.entries(item.counts).filter(([, n]) => n > 0).sort())}:${hash.digest('hex')}`);
      }
    };
    for await (const item of items as AsyncIterable<SessionItem>) take(item);
    return out;
  } finally {
    await reader.close();
  }
}


/**
 * The set-up the sync tests share: a private folder, a generated seed file made once, copies of it
 * each with its own name (so its own source id), and fresh server databases dropped at the end.
 * With `cacheHome`, XDG_CACHE_HOME points into the folder while the file's tests run (where the
 * mirror keeps source ids when no state folder is given).
 */
export function syncFixture(prefix: string, seedOptions: Omit<FixtureOptions, 'path'>, options: { cacheHome?: boolean } = {}): {
  dir: string;
  seed: string;
  copyOfSeed: () => string;
  fresh: (backend: Backend) => Promise<FreshDatabase>;
} {
  const dir = tempDir(prefix);
  const seed = join(dir, 'seed.db');
  const databases: FreshDatabase[] = [];
  const savedCache = process.env['XDG_CACHE_HOME'];
  beforeAll(() => {
    if (options.cacheHome) process.env['XDG_CACHE_HOME'] = join(dir, 'cache');
    generateFixture({ path: seed, ...seedOptions });
  });
  afterAll(async () => {
    if (options.cacheHome) {
      if (savedCache === undefined) delete process.env['XDG_CACHE_HOME'];
      else process.env['XDG_CACHE_HOME'] = savedCache;
    }
    for (const d of databases) await d.drop();
  });
  let copies = 0;
  return {
    dir,
    seed,
    copyOfSeed: () => {
      const path = join(dir, `opencode-${copies++}.db`);
      copyFileSync(seed, path);
      return path;
    },
    fresh: async (backend) => {
      const d = await freshDatabase(backend);
      databases.push(d);
      return d;
    },
  };
}

/**
 * The server as the configured primary (`session.storage` + `connectionString` in
 * `<dir>/config/opencode/opencode.json`, the XDG config home of `env`), then one mirror pass of
 * `db` into it; returns that pass's exit status.
 */
export function mirrorAsPrimary(dir: string, db: string, backend: Backend, url: string, env: NodeJS.ProcessEnv): number | null {
  mkdirSync(join(dir, 'config', 'opencode'), { recursive: true });
  writeFileSync(join(dir, 'config', 'opencode', 'opencode.json'), JSON.stringify({ session: { storage: backend, connectionString: url } }));
  return runCli(['--db', db, 'sync', '--once'], { env }).status;
}
