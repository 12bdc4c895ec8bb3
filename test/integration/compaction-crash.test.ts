/**
 * Crash safety of event compaction: a compaction and reclaim (`compact-child.mjs`, the built
 * code) killed with SIGKILL at points spread over its run. After each kill the log still
 * replays to the full log's rows, every newest snapshot and every other event is there,
 * event_sequence is unchanged, the file passes integrity_check, and finishing the compaction
 * deletes exactly what the plan said.
 */
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { beforeAll, describe, expect, it } from 'vitest';
import { compactEvents, compactionPlan } from '../../src/store/sqlite/event-compaction.js';
import { openConnection as openDatabase } from '../../src/store/sqlite/connection.js';
import { cachedEventLog, copyDatabase, type EventLogManifest } from '../fixtures/event-log.js';
import { ROOT, tempDir } from '../helpers/env.js';
import { eventSequence, otherEventsDigest, snapshotGroups } from '../helpers/event-log-facts.js';
import { diffProjections, replayDatabase, type Projection } from '../helpers/event-projector.js';

const KILLS = 24;
const MB = 1024 * 1024;
const CHILD = join(ROOT, 'test', 'helpers', 'compact-child.mjs');
const dir = tempDir('sk-compaction-crash-');

let manifest: EventLogManifest;
let fullReplay: Projection;
let base: { events: number; compactable: number; sequence: unknown[]; other: ReturnType<typeof otherEventsDigest>; newest: string[] };

beforeAll(() => {
  manifest = cachedEventLog({ targetBytes: 64 * MB, seed: 11 });
  const db = new Database(manifest.path, { readonly: true });
  fullReplay = replayDatabase(db);
  base = {
    events: db.prepare('SELECT count(*) FROM event').pluck().get() as number,
    compactable: 0,
    sequence: eventSequence(db),
    other: otherEventsDigest(db),
    newest: [...snapshotGroups(db).values()].map((g) => g.newestId),
  };
  db.close();
  const open = openDatabase(manifest.path);
  base.compactable = compactionPlan(open).compactable.count;
  open.db.close();
});

interface ChildRun {
  killed: boolean;
  finished: boolean;
  /** ms from the child's "ready" line to its exit */
  ms: number;
}

/** Runs the child on `db`; with `killAfterMs`, SIGKILLs it that long after it said it was ready. */
function runChild(db: string, killAfterMs: number | null): Promise<ChildRun> {
  const child = spawn(process.execPath, [CHILD, db, '--reclaim'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let ready = 0;
  let finished = false;
  let timer: NodeJS.Timeout | undefined;
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (line.startsWith('{"ready"')) {
      ready = performance.now();
      if (killAfterMs !== null) timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    }
    if (line.startsWith('{"done"')) finished = true;
  });
  return new Promise((resolve) => {
    child.once('exit', (_code, signal) => {
      clearTimeout(timer);
      resolve({ killed: signal === 'SIGKILL', finished, ms: performance.now() - ready });
    });
  });
}

/** Kill points spread over the first 95% of a run, round after round, each round offset. */
function* killPoints(runMs: number): Generator<number> {
  let state = 4242;
  for (let i = 0; ; i++) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    const spread = ((i % KILLS) + state / 2 ** 31) / KILLS;
    yield Math.round(spread * runMs * 0.95);
  }
}

describe('event compaction killed with SIGKILL', () => {
  it(`leaves a log that replays to the same rows at ${KILLS} kill points`, async () => {
    const probe = join(dir, 'probe.db');
    copyDatabase(manifest.path, probe);
    const full = await runChild(probe, null);
    expect(full.finished).toBe(true);

    let killedRuns = 0;
    let midCompaction = 0;
    let attempt = 0;
    for (const delay of killPoints(full.ms)) {
      if (killedRuns >= KILLS || attempt >= KILLS * 3) break;
      const db = join(dir, `kill-${attempt++}.db`);
      copyDatabase(manifest.path, db);
      const run = await runChild(db, delay);
      if (run.killed && !run.finished) killedRuns++;

      const conn = new Database(db);
      const at = `after a kill at ${delay} ms`;
      expect(conn.pragma('integrity_check', { simple: true }), at).toBe('ok');
      expect(conn.pragma('foreign_key_check'), at).toEqual([]);
      expect(eventSequence(conn), at).toEqual(base.sequence);
      expect(otherEventsDigest(conn), at).toEqual(base.other);
      const present = new Set(conn.prepare('SELECT id FROM event').pluck().all() as string[]);
      expect(base.newest.filter((id) => !present.has(id)), at).toEqual([]);
      expect(diffProjections(fullReplay, replayDatabase(conn)), at).toEqual([]);
      const deletedBeforeKill = base.events - present.size;
      if (deletedBeforeKill > 0 && deletedBeforeKill < base.compactable) midCompaction++;
      conn.close();

      // Finishing the job removes exactly the rest of what the plan promised.
      const open = openDatabase(db, { readonly: false });
      const rest = compactEvents(open);
      expect(deletedBeforeKill + rest.deleted.count, at).toBe(base.compactable);
      expect(diffProjections(fullReplay, replayDatabase(open.db)), at).toEqual([]);
      open.db.close();
      for (const suffix of ['', '-wal', '-shm']) rmSync(db + suffix, { force: true });
    }
    // The runs must really have been cut short, many of them in the middle of deleting.
    expect(killedRuns).toBeGreaterThanOrEqual(20);
    expect(midCompaction).toBeGreaterThanOrEqual(8);
  }, 600_000);
});
