/**
 * Compaction beside a running OpenCode: another process appends events (and updates their
 * rows, in one transaction each, as OpenCode 1.18 does) while compaction runs round after round.
 * Nothing the writer committed is lost: each of its events is still there or superseded by a
 * newer snapshot of the same entity that is, its last snapshot of each entity is the newest in
 * the log, no write failed with SQLITE_BUSY, and the log still replays to the projection.
 */
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { compactEvents } from '../../src/store/sqlite/event-compaction.js';
import { openConnection as openDatabase } from '../../src/store/sqlite/connection.js';
import { cachedEventLog, copyDatabase } from '../fixtures/event-log.js';
import { ROOT, tempDir } from '../helpers/env.js';
import { ENTITY_SQL } from '../helpers/event-log-facts.js';
import { diffProjections, projectionTables, replayDatabase } from '../helpers/event-projector.js';

const MB = 1024 * 1024;
const WRITER = join(ROOT, 'test', 'helpers', 'opencode-writer.mjs');
const dir = tempDir('sk-compaction-concurrent-');

interface Committed {
  id: string;
  aggregate: string;
  type: string;
  entity: string;
  seq: number;
}

describe('compaction beside a writer', () => {
  it('loses nothing a concurrent writer commits', async () => {
    const manifest = cachedEventLog({ targetBytes: 32 * MB, seed: 23 });
    const path = join(dir, 'opencode.db');
    copyDatabase(manifest.path, path);

    const writer = spawn(process.execPath, [WRITER, path, '3000'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const lines: string[] = [];
    let ready = false;
    let exited = false;
    createInterface({ input: writer.stdout }).on('line', (line) => {
      if (line.startsWith('{"ready"')) ready = true;
      else lines.push(line);
    });
    const exit = new Promise<void>((resolve) => writer.once('exit', () => {
      exited = true;
      resolve();
    }));
    while (!ready) await new Promise((r) => setTimeout(r, 10));

    const open = openDatabase(path, { readonly: false });
    let rounds = 0;
    let deleted = 0;
    while (!exited) {
      const result = compactEvents(open);
      rounds++;
      deleted += result.deleted.count;
      expect(result.longestTransactionMs).toBeLessThan(1000);
      await new Promise((r) => setTimeout(r, 5));
    }
    await exit;
    deleted += compactEvents(open).deleted.count;
    open.db.close();

    const report = JSON.parse(lines.at(-1) ?? '{}') as { committed: Committed[]; errors: string[] };

    expect(report.errors).toEqual([]);
    expect(report.committed.length).toBeGreaterThan(100);
    expect(rounds).toBeGreaterThan(1);
    expect(deleted).toBeGreaterThan(0);

    const db = new Database(path);
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    const present = new Set(db.prepare('SELECT id FROM event').pluck().all() as string[]);
    const newestOf = db.prepare(`SELECT e.id FROM event e WHERE e.aggregate_id = ? AND e.type = ? AND ${ENTITY_SQL} = ? ORDER BY e.seq DESC LIMIT 1`).pluck();
    const lastByEntity = new Map<string, Committed>();
    for (const c of report.committed) lastByEntity.set(`${c.aggregate}|${c.type}|${c.entity}`, c);
    for (const c of report.committed) {
      const last = lastByEntity.get(`${c.aggregate}|${c.type}|${c.entity}`) as Committed;
      // Gone only when a later snapshot of the same entity, one the writer made, is there.
      if (!present.has(c.id)) expect(last.seq, `${c.id} deleted without a newer snapshot`).toBeGreaterThan(c.seq);
    }
    // Rounds that ran after the writer's own updates compacted some of them too.
    expect(report.committed.filter((c) => !present.has(c.id)).length).toBeGreaterThan(0);
    for (const last of lastByEntity.values()) expect(newestOf.get(last.aggregate, last.type, last.entity), last.entity).toBe(last.id);
    // The sequence continues where the writer left it.
    const gaps = db.prepare('SELECT es.aggregate_id FROM event_sequence es WHERE es.seq <> (SELECT max(seq) FROM event e WHERE e.aggregate_id = es.aggregate_id)').all();
    expect(gaps).toEqual([]);
    // The log still describes the rows, the writer's included.
    const perturbed = new Set(manifest.perturbed.map((p) => `${p.kind}:${p.id}`));
    const differences = diffProjections(replayDatabase(db), projectionTables(db), { canonical: true }).filter((d) => !perturbed.has(`${d.kind}:${d.id}`));
    expect(differences).toEqual([]);
    db.close();
  }, 300_000);
});
