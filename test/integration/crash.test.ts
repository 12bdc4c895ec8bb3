/**
 * Crash safety: `retention --apply` killed with SIGKILL at many points across its run (archive,
 * verify, delete, vacuum). Afterwards every session is whole in the database or in an archive
 * that verifies, and the database passes PRAGMA integrity_check.
 */
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateFixture } from '../fixtures/generate.js';
import { verifyArchive } from '../../dist/store/archive/archive-read.js';
import { CLI, tempDir } from '../helpers/env.js';

const KILLS = 24;
const dir = tempDir('sk-crash-');
const base = join(dir, 'base.db');
let original: Map<string, { messages: number; parts: number }>;

beforeAll(() => {
  generateFixture({ path: base, targetBytes: 12 * 1024 * 1024, seed: 5, diffFiles: false });
  const db = new Database(base, { readonly: true });
  original = new Map(
    (db.prepare(
      `SELECT s.id, (SELECT count(*) FROM message WHERE session_id = s.id) AS messages,
              (SELECT count(*) FROM part WHERE session_id = s.id) AS parts FROM session s`,
    ).all() as { id: string; messages: number; parts: number }[]).map((r) => [r.id, { messages: r.messages, parts: r.parts }]),
  );
  db.close();
});

function runRetention(db: string, dataHome: string, killAfterMs: number | null): Promise<{ ms: number; killed: boolean }> {
  const started = Date.now();
  const child = spawn(process.execPath, [CLI, '--db', db, 'retention', '--max-sessions', '4', '--apply', '--yes'], {
    env: { ...process.env, XDG_DATA_HOME: dataHome, XDG_CACHE_HOME: join(dataHome, 'cache') },
    stdio: 'ignore',
  });
  const timer = killAfterMs === null ? undefined : setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  return new Promise((resolve) => {
    child.once('exit', (_code, signal) => {
      clearTimeout(timer);
      resolve({ ms: Date.now() - started, killed: signal === 'SIGKILL' });
    });
  });
}

/**
 * Deterministic kill points, spread over the first 90% of a run, round after round: a point that
 * lands after the run has finished (a faster run than the probe) kills nothing, so more follow.
 */
function* killPoints(fullRunMs: number): Generator<number> {
  let state = 12345;
  for (let i = 0; ; i++) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    const spread = ((i % KILLS) + state / 2 ** 31) / KILLS;
    yield Math.round(40 + spread * fullRunMs * 0.9);
  }
}

describe('retention killed with SIGKILL', () => {
  it(`loses no session at ${KILLS} kill points`, async () => {
    const probe = join(dir, 'probe');
    mkdirSync(probe, { recursive: true });
    copyFileSync(base, join(probe, 'opencode.db'));
    const full = await runRetention(join(probe, 'opencode.db'), join(probe, 'data'), null);
    expect(full.killed).toBe(false);

    let killedRuns = 0;
    let i = 0;
    for (const delay of killPoints(full.ms)) {
      if (killedRuns >= KILLS || i >= KILLS * 2) break;
      const home = join(dir, `kill-${i++}`);
      mkdirSync(home, { recursive: true });
      const db = join(home, 'opencode.db');
      copyFileSync(base, db);
      const run = await runRetention(db, join(home, 'data'), delay);
      if (run.killed) killedRuns++;

      const conn = new Database(db);
      expect(conn.pragma('integrity_check', { simple: true }), `integrity after kill at ${delay} ms`).toBe('ok');
      const present = new Map(
        (conn.prepare(
          `SELECT s.id, (SELECT count(*) FROM message WHERE session_id = s.id) AS messages,
                  (SELECT count(*) FROM part WHERE session_id = s.id) AS parts FROM session s`,
        ).all() as { id: string; messages: number; parts: number }[]).map((r) => [r.id, { messages: r.messages, parts: r.parts }]),
      );
      conn.close();

      const archived = new Map<string, { messages: number; parts: number }>();
      const archiveDir = join(home, 'data', 'opencode', 'archive');
      for (const name of existsSync(archiveDir) ? readdirSync(archiveDir) : []) {
        if (name.endsWith('.tmp')) continue; // an unfinished archive: never trusted, never the only copy
        for (const s of await verifyArchive(join(archiveDir, name))) archived.set(s.id, s);
      }
      for (const [id, counts] of original) {
        const where = present.get(id) ?? archived.get(id);
        expect(where, `session ${id} lost after kill at ${delay} ms`).toBeDefined();
        // Whole, wherever it is.
        expect({ messages: where?.messages, parts: where?.parts }, `session ${id} after kill at ${delay} ms`).toEqual(counts);
      }
    }
    // Runs must really have been cut short, or this tested little.
    expect(killedRuns).toBeGreaterThanOrEqual(20);
  }, 300_000);
});
