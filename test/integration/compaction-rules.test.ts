/**
 * Edges of the compaction rule on small hand-built logs: an entity OpenCode writes while its
 * aggregate is being compacted, unreadable JSON, whitespace and key order, keys the session
 * mapping does not know, two snapshots with one seq, a part whose row moved.
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compactEvents, compactionPlan } from '../../src/store/sqlite/event-compaction.js';
import { openConnection as openDatabase } from '../../src/store/sqlite/connection.js';
import { OPENCODE_SCHEMA_DDL } from '../../src/store/sqlite/schema.js';
import { OPENCODE_118_DDL } from '../fixtures/event-log.js';
import { tempDir } from '../helpers/env.js';
import { entityEventIds } from '../helpers/event-log-facts.js';
import { diffProjections, EventProjector, replayDatabase } from '../helpers/event-projector.js';

const dir = tempDir('sk-compaction-rules-');
const SES = 'ses_rules000000000000000000001';
const MSG = 'msg_rules000000000000000000001';
let dbCounter = 0;

type Json = Record<string, unknown>;

interface LogEventInput {
  type: string;
  /** JSON text as written to event.data (hand-formatted when a test needs it) */
  json: string;
}

/**
 * A database holding one session whose log is `events`, with the rows OpenCode's projector
 * makes of them (then `afterRows` may change rows the way another writer would).
 */
function handBuilt(events: LogEventInput[], options: { legacy?: boolean; afterRows?: (db: Database.Database) => void } = {}): string {
  const path = join(dir, `hand-${++dbCounter}.db`);
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec(options.legacy ? OPENCODE_SCHEMA_DDL : OPENCODE_118_DDL);
  db.prepare("INSERT INTO project (id, worktree, time_created, time_updated, sandboxes) VALUES ('global', '/', 1, 1, '[]')").run();
  const all = [{ type: 'session.created.1', json: JSON.stringify({ sessionID: SES, info: sessionInfo(1) }) }, ...events];
  db.prepare('INSERT INTO event_sequence (aggregate_id, seq) VALUES (?, ?)').run(SES, all.length - 1);
  const insert = db.prepare('INSERT INTO event (id, aggregate_id, seq, type, data) VALUES (?, ?, ?, ?, ?)');
  const projector = new EventProjector();
  all.forEach((e, seq) => {
    insert.run(`evt_${String(seq).padStart(26, '0')}`, SES, seq, e.type, e.json);
    try {
      projector.apply({ aggregateId: SES, seq, type: e.type, data: JSON.parse(e.json) as unknown });
    } catch {
      // a corrupt event projects nothing
    }
  });
  writeRows(db, projector);
  options.afterRows?.(db);
  db.close();
  return path;
}

function writeRows(db: Database.Database, projector: EventProjector): void {
  const { sessions, messages, parts } = projector.projection;
  const columns = new Set(db.prepare("SELECT name FROM pragma_table_info('session')").pluck().all() as string[]);
  for (const row of sessions.values()) {
    const names = Object.keys(row).filter((c) => columns.has(c));
    db.prepare(`INSERT INTO session (${names.join(', ')}) VALUES (${names.map(() => '?').join(', ')})`).run(...names.map((c) => row[c] ?? null));
  }
  for (const m of messages.values()) db.prepare('INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?, ?, ?, ?, ?)').run(m.id, m.sessionId, m.timeCreated, 1, m.data);
  for (const p of parts.values()) db.prepare('INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?, ?, ?, ?, ?, ?)').run(p.id, p.messageId, p.sessionId, p.timeCreated, 1, p.data);
}

function sessionInfo(updated: number, extra: Json = {}): Json {
  return { id: SES, slug: 'slug', projectID: 'global', directory: '/w', path: '', cost: 0, tokens: { input: 0, output: 0, reasoning: 0, cache: { read: 0, write: 0 } }, title: 'T', version: '1.18.33', time: { created: 1, updated }, ...extra };
}

const messageEvent = (text: string, extra: Json = {}): LogEventInput => ({
  type: 'message.updated.1',
  json: JSON.stringify({ sessionID: SES, info: { id: MSG, sessionID: SES, role: 'assistant', time: { created: 5 }, note: text, ...extra } }),
});
const partEvent = (id: string, text: string, time: number, messageID = MSG): LogEventInput => ({
  type: 'message.part.updated.1',
  json: JSON.stringify({ sessionID: SES, part: { id, sessionID: SES, messageID, type: 'text', text }, time }),
});
const sessionEvent = (info: Json): LogEventInput => ({ type: 'session.updated.1', json: JSON.stringify({ sessionID: SES, info }) });

function compactFile(path: string): { result: ReturnType<typeof compactEvents>; before: ReturnType<typeof replayDatabase>; after: ReturnType<typeof replayDatabase>; db: Database.Database } {
  const open = openDatabase(path, { readonly: false });
  const before = replayDatabase(open.db);
  const result = compactEvents(open);
  const after = replayDatabase(open.db);
  return { result, before, after, db: open.db };
}

describe('an entity written while its aggregate is being compacted', () => {
  // What the other writer does between two of our transactions: OpenCode writes the event, its
  // sequence and the row in one transaction; the other two each break one half of that (the
  // sequence check and the row check must each catch theirs).
  const writers = {
    'OpenCode (event, sequence and row)': { event: true, row: true },
    'an event alone': { event: true, row: false },
    'a row alone (another tool)': { event: false, row: true },
  } as const;

  it.each(Object.keys(writers))('keeps its snapshots for the next run and deletes the rest: %s', (name) => {
    const writer = writers[name as keyof typeof writers];
    // Part A has enough snapshots to need two write transactions; part B's come after them.
    const events: LogEventInput[] = [messageEvent('m')];
    for (let i = 0; i < 1105; i++) events.push(partEvent('prt_a', `a${i}`, 100 + i));
    for (let i = 0; i < 12; i++) events.push(partEvent('prt_b', `b${i}`, 5000 + i));
    const path = handBuilt(events);
    const open = openDatabase(path, { readonly: false });
    const other = new Database(path);
    other.pragma('busy_timeout = 5000');
    let wrote = false;
    const result = compactEvents(open, {
      onProgress: (p) => {
        if (wrote || p.eventsDeleted === 0) return;
        wrote = true;
        other.transaction(() => {
          const json = partEvent('prt_b', 'b-late', 9000).json;
          if (writer.event) {
            const seq = (other.prepare('SELECT seq FROM event_sequence WHERE aggregate_id = ?').pluck().get(SES) as number) + 1;
            other.prepare('INSERT INTO event (id, aggregate_id, seq, type, data) VALUES (?, ?, ?, ?, ?)').run('evt_late', SES, seq, 'message.part.updated.1', json);
            other.prepare('UPDATE event_sequence SET seq = ? WHERE aggregate_id = ?').run(seq, SES);
          }
          if (writer.row) {
            other.prepare("UPDATE part SET data = json_remove(json_extract(?, '$.part'), '$.id', '$.sessionID', '$.messageID'), time_updated = 2 WHERE id = 'prt_b'").run(json);
          }
        }).immediate();
      },
    });
    expect(wrote).toBe(true);
    expect(result.transactions).toBeGreaterThanOrEqual(2);
    // A lost all but its first and newest; B kept everything, a late snapshot included.
    expect(entityEventIds(open.db, SES, 'part', 'prt_a')).toHaveLength(2);
    expect(entityEventIds(open.db, SES, 'part', 'prt_b')).toHaveLength(writer.event ? 13 : 12);
    expect(result.kept.changed.count).toBe(10);
    if (name.startsWith('OpenCode')) {
      // The next run compacts B against its new newest snapshot.
      const again = compactEvents(open);
      expect(again.deleted.count).toBe(11);
      expect(entityEventIds(open.db, SES, 'part', 'prt_b')).toEqual([entityEventIds(open.db, SES, 'part', 'prt_b')[0], 'evt_late']);
      expect(JSON.parse(replayDatabase(open.db).parts.get('prt_b')?.data ?? '{}')).toMatchObject({ text: 'b-late' });
    }
    other.close();
    open.db.close();
  });
});

describe('unreadable and oddly written snapshots', () => {
  it('leaves a whole aggregate alone when one of its snapshot events is not JSON', () => {
    const path = handBuilt([messageEvent('1'), messageEvent('2'), messageEvent('3'), { type: 'message.part.updated.1', json: '{"sessionID":"x","part":' }]);
    const { result, db } = compactFile(path);
    expect(result.deleted.count).toBe(0);
    expect(result.kept.malformed.count).toBe(2);
    expect(entityEventIds(db, SES, 'message', MSG)).toHaveLength(3);
    db.close();
  });

  it('compares JSON, not whitespace or key order: a pretty-printed newest snapshot still equals its row', () => {
    const newest = JSON.stringify(JSON.parse(messageEvent('3').json), null, 2);
    const path = handBuilt([messageEvent('1'), messageEvent('2'), { type: 'message.updated.1', json: newest }], {
      afterRows: (db) => {
        // The row with its keys in another order than the event's.
        const data = JSON.parse(db.prepare('SELECT data FROM message WHERE id = ?').pluck().get(MSG) as string) as Json;
        db.prepare('UPDATE message SET data = ? WHERE id = ?').run(JSON.stringify(Object.fromEntries(Object.entries(data).reverse())), MSG);
      },
    });
    const { result, before, after, db } = compactFile(path);
    expect(result.deleted.count).toBe(1);
    expect(diffProjections(before, after)).toEqual([]);
    db.close();
  });

  it('keeps every snapshot when the newest differs from the row by one value', () => {
    const path = handBuilt([messageEvent('1'), messageEvent('2'), messageEvent('3')], {
      afterRows: (db) => db.prepare(`UPDATE message SET data = json_set(data, '$.note', '4') WHERE id = ?`).run(MSG),
    });
    const { result, db } = compactFile(path);
    expect(result.deleted.count).toBe(0);
    expect(result.kept.differs.count).toBe(2);
    db.close();
  });

  it('keeps a part whose row belongs to another message than its newest snapshot says', () => {
    const path = handBuilt([messageEvent('1'), partEvent('prt_x', 'a', 10), partEvent('prt_x', 'b', 11), partEvent('prt_x', 'c', 12)], {
      afterRows: (db) => {
        db.prepare("INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES ('msg_other', ?, 1, 1, '{}')").run(SES);
        db.prepare("UPDATE part SET message_id = 'msg_other' WHERE id = 'prt_x'").run();
      },
    });
    const { result, db } = compactFile(path);
    expect(result.deleted.count).toBe(0);
    expect(result.kept.differs.count).toBe(2);
    db.close();
  });

  it('leaves two snapshots that share the newest seq alone (possible without 1.18 unique index)', () => {
    const path = handBuilt([messageEvent('1'), messageEvent('2'), messageEvent('3')], {
      legacy: true,
      afterRows: (db) => {
        db.prepare('INSERT INTO event (id, aggregate_id, seq, type, data) VALUES (?, ?, 3, ?, ?)').run('evt_twin', SES, 'message.updated.1', messageEvent('3').json);
      },
    });
    const { result, db } = compactFile(path);
    expect(result.deleted.count).toBe(0);
    expect(result.kept.ambiguous.count).toBeGreaterThan(0);
    db.close();
  });
});

describe('a size limit on comparisons', () => {
  it('leaves entities whose newest snapshot or row is over maxCompareBytes alone, and compares the rest', () => {
    const big = 'x'.repeat(5000);
    const path = handBuilt([messageEvent('1'), messageEvent('2'), messageEvent('3'), partEvent('prt_big', big, 10), partEvent('prt_big', `${big}y`, 11), partEvent('prt_big', `${big}z`, 12)]);
    const open = openDatabase(path, { readonly: false });
    const plan = compactionPlan(open, { maxCompareBytes: 4096 });
    expect(plan.kept.large.count).toBe(2);
    const result = compactEvents(open, { maxCompareBytes: 4096 });
    expect(result.deleted.count).toBe(1);
    expect(entityEventIds(open.db, SES, 'part', 'prt_big')).toHaveLength(3);
    expect(compactEvents(open).deleted.count).toBe(1);
    expect(() => compactEvents(open, { maxCompareBytes: -1 })).toThrow(/maxCompareBytes/);
    open.db.close();
  });
});

describe('session updates', () => {
  it('drops an older update only when the newest sets every column it sets', () => {
    const path = handBuilt([
      sessionEvent(sessionInfo(2)),
      sessionEvent(sessionInfo(3, { time: { created: 1, updated: 3, compacting: 3 } })),
      sessionEvent(sessionInfo(4, { share: { url: 'https://opncd.ai/s/1' } })),
      sessionEvent(sessionInfo(5, { share: { url: 'https://opncd.ai/s/1' } })),
    ]);
    const { result, before, after, db } = compactFile(path);
    // seq 1 and 3 go (the newest sets all they set); seq 2 set time_compacting, which the newest does not.
    expect(result.deleted.count).toBe(2);
    expect(result.kept.fields.count).toBe(1);
    expect(db.prepare("SELECT seq FROM event WHERE type = 'session.updated.1' ORDER BY seq").pluck().all()).toEqual([2, 4]);
    expect(diffProjections(before, after)).toEqual([]);
    expect(after.sessions.get(SES)?.['time_compacting']).toBe(3);
    db.close();
  });

  it('keeps an older update carrying a key the session mapping does not know, unless the newest carries it too', () => {
    const withKey = (updated: number, flag?: string): Json => sessionInfo(updated, flag === undefined ? {} : { futureField: flag });
    const kept = handBuilt([sessionEvent(withKey(2, 'x')), sessionEvent(withKey(3))]);
    const first = compactFile(kept);
    expect(first.result.deleted.count).toBe(0);
    expect(first.result.kept.fields.count).toBe(1);
    first.db.close();
    const dropped = handBuilt([sessionEvent(withKey(2, 'x')), sessionEvent(withKey(3, 'y'))]);
    const second = compactFile(dropped);
    expect(second.result.deleted.count).toBe(1);
    second.db.close();
  });

  it('keeps every update when the newest disagrees with the row (renamed without an event)', () => {
    const path = handBuilt([sessionEvent(sessionInfo(2)), sessionEvent(sessionInfo(3)), sessionEvent(sessionInfo(4))], {
      afterRows: (db) => db.prepare("UPDATE session SET title = 'Renamed' WHERE id = ?").run(SES),
    });
    const { result, db } = compactFile(path);
    expect(result.deleted.count).toBe(0);
    expect(result.kept.differs.count).toBe(2);
    db.close();
  });

  it('compares JSON columns semantically: summary diffs stored with keys in another order still match', () => {
    const diffs = [{ file: 'a.ts', before: 'x', after: 'y', additions: 1, deletions: 0 }];
    const summary = { summary: { additions: 1, deletions: 0, files: 1, diffs } };
    const path = handBuilt([sessionEvent(sessionInfo(2, summary)), sessionEvent(sessionInfo(3, summary))], {
      afterRows: (db) => db.prepare('UPDATE session SET summary_diffs = ? WHERE id = ?').run(JSON.stringify(diffs.map((d) => Object.fromEntries(Object.entries(d).reverse()))), SES),
    });
    const plan = (() => {
      const open = openDatabase(path);
      const p = compactionPlan(open);
      open.db.close();
      return p;
    })();
    expect(plan.compactable.count).toBe(1);
  });
});
