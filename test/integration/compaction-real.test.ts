/**
 * Compaction of a database the real OpenCode 1.18 wrote (a copy of it): set SK_OPENCODE_DB to
 * such a file (the OpenCode test harness builds one). Skipped, and says so, without it.
 * Checks the projector against reality (the log replays to the projection tables but for
 * rows OpenCode changes without an event: `-f` file parts gain `synthetic: true`), then that the
 * compacted log replays to exactly the same rows and nothing else in the log moved.
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compactEvents, compactionPlan } from '../../src/store/sqlite/event-compaction.js';
import { openDatabase } from '../../src/store/sqlite/open.js';
import { tempDir } from '../helpers/env.js';
import { eventSequence, otherEventsDigest, snapshotGroups } from '../helpers/event-log-facts.js';
import { diffProjections, projectionTables, replayDatabase } from '../helpers/event-projector.js';

const REAL_DB = process.env['SK_OPENCODE_DB'];

describe.skipIf(REAL_DB === undefined)(`a log OpenCode 1.18 wrote${REAL_DB === undefined ? ' (skipped: set SK_OPENCODE_DB to a copy of a real opencode.db to run it)' : ''}`, () => {
  it('replays to the rows before and after compaction', () => {
    const dir = tempDir('sk-compaction-real-');
    const path = join(dir, 'opencode.db');
    // A consistent copy, WAL included, without writing to the source.
    const source = new Database(REAL_DB as string, { readonly: true });
    source.prepare('VACUUM INTO ?').run(path);
    source.close();

    const db = new Database(path);
    const full = replayDatabase(db);
    const differences = diffProjections(full, projectionTables(db), { canonical: true });
    const synthetic = db.prepare("SELECT id FROM part WHERE json_extract(data, '$.synthetic') = 1 AND json_extract(data, '$.type') = 'file'").pluck().all() as string[];
    expect(differences.filter((d) => !(d.kind === 'part' && synthetic.includes(d.id)))).toEqual([]);
    const before = { groups: snapshotGroups(db), other: otherEventsDigest(db), sequence: eventSequence(db) };
    db.close();

    const open = openDatabase(path, { readonly: false });
    const plan = compactionPlan(open);
    const result = compactEvents(open);
    expect(result.deleted).toEqual(plan.compactable);
    expect(result.deleted.count).toBeGreaterThan(0);
    expect(diffProjections(full, replayDatabase(open.db))).toEqual([]);
    expect(otherEventsDigest(open.db)).toEqual(before.other);
    expect(eventSequence(open.db)).toEqual(before.sequence);
    const after = snapshotGroups(open.db);
    for (const [key, group] of before.groups) expect(after.get(key)?.newestId, key).toBe(group.newestId);
    expect(open.db.pragma('integrity_check', { simple: true })).toBe('ok');
    open.db.close();
  });
});
