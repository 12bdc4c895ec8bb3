/**
 * Compaction of a log the real OpenCode 1.18.33 wrote: the compacted log replays (the snapshot
 * events projected into rows, as OpenCode's own projectors do) to exactly the rows the full log does,
 * and afterwards the real OpenCode exports every session byte for byte as before, answers its API
 * the same, and continues a compacted session, its new events continuing the sequence.
 */
import Database from 'better-sqlite3';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseJson, runCli } from '../helpers/env.js';
import { eventSequence, otherEventsDigest } from '../helpers/event-log-facts.js';
import { diffProjections, replayDatabase } from '../helpers/event-projector.js';
import { apiMessages, exportSession, OPENCODE_DATA_TIMEOUT_MS, realOpenCodeData, runOpenCode, withServe, type OpenCodeData } from '../helpers/opencode.ts';

let data: OpenCodeData;

beforeAll(async () => {
  data = await realOpenCodeData();
}, OPENCODE_DATA_TIMEOUT_MS);

afterAll(() => data?.remove());

describe('compacting the event log of a database the real OpenCode wrote', () => {
  it('keeps every export, API answer and replay as it was, and OpenCode continues a compacted session', async () => {
    const db = new Database(data.dbPath);
    const full = replayDatabase(db);
    const other = otherEventsDigest(db);
    const sequence = eventSequence(db);
    db.close();

    const exportsBefore = new Map<string, string>();
    for (const s of data.manifest.sessions) exportsBefore.set(s.id, readFileSync((await exportSession(data.env, s.id, { cwd: data.projectDir })).file, 'utf8'));
    const apiBefore = await withServe(data.env, async (url) => new Map(await Promise.all(data.manifest.sessions.map(async (s) => [s.id, await apiMessages(url, s.id)] as const))), { cwd: data.projectDir });

    const env = data.env as Record<string, string>;
    const plan = parseJson<{ compactable: { count: number; bytes: number } }>(runCli(['--db', data.dbPath, '--json', 'compact'], { env }));
    expect(plan.compactable.count).toBeGreaterThan(0);
    const applied = parseJson<{ compaction: { deleted: { count: number } } }>(runCli(['--db', data.dbPath, '--json', 'compact', '--apply', '--yes'], { env }));
    expect(applied.compaction.deleted.count).toBe(plan.compactable.count);

    const after = new Database(data.dbPath);
    expect(diffProjections(full, replayDatabase(after))).toEqual([]);
    expect(otherEventsDigest(after)).toEqual(other);
    expect(eventSequence(after)).toEqual(sequence);
    expect(after.pragma('integrity_check', { simple: true })).toBe('ok');
    after.close();

    for (const s of data.manifest.sessions) {
      const again = readFileSync((await exportSession(data.env, s.id, { cwd: data.projectDir })).file, 'utf8');
      expect(again, `opencode export ${s.scenario}`).toBe(exportsBefore.get(s.id));
    }
    await withServe(data.env, async (url) => {
      for (const s of data.manifest.sessions) expect(await apiMessages(url, s.id), s.scenario).toEqual(apiBefore.get(s.id));
    }, { cwd: data.projectDir });

    const continued = data.sessions('continue')[0];
    expect(continued).toBeDefined();
    const id = continued?.id as string;
    const seqOf = (): number => {
      const check = new Database(data.dbPath, { readonly: true });
      try {
        return check.prepare('SELECT seq FROM event_sequence WHERE aggregate_id = ?').pluck().get(id) as number;
      } finally {
        check.close();
      }
    };
    const lastSeq = seqOf();
    const model = await data.startModel();
    try {
      const run = await runOpenCode(data.env, ['run', '--session', id, 'One more question after compaction.'], { cwd: data.projectDir });
      expect(run.status, run.stderr).toBe(0);
    } finally {
      await model.close();
    }
    const check = new Database(data.dbPath, { readonly: true });
    const seqs = check.prepare('SELECT seq FROM event WHERE aggregate_id = ? AND seq > ? ORDER BY seq').pluck().all(id, lastSeq) as number[];
    check.close();
    expect(seqs.length).toBeGreaterThan(0);
    // The new events carry on from the last sequence number, one after another.
    expect(seqs[0]).toBe(lastSeq + 1);
    expect(seqs).toEqual(seqs.map((_, i) => lastSeq + 1 + i));
    expect(seqOf()).toBe(seqs[seqs.length - 1]);
  }, 600_000);
});
