// Writes to an OpenCode database the way OpenCode 1.18 does while the test compacts it: each
// update is one IMMEDIATE transaction holding the event (seq = event_sequence.seq + 1), the
// event_sequence row and the projection row, with busy_timeout = 5000.
// node opencode-writer.mjs <db> <durationMs> -> prints {committed: [...], errors: [...]} at the end.
import Database from 'better-sqlite3';

const [db, durationText] = process.argv.slice(2);
const duration = Number(durationText ?? 2000);
const conn = new Database(db);
conn.pragma('journal_mode = WAL');
conn.pragma('busy_timeout = 5000');
conn.pragma('foreign_keys = ON');

// Text parts of live sessions, and their messages: the entities OpenCode keeps writing to.
const parts = conn
  .prepare(
    `SELECT p.id, p.message_id AS messageId, p.session_id AS sessionId FROM part p
     WHERE json_extract(p.data, '$.type') = 'text' ORDER BY p.id LIMIT 300`,
  )
  .all();
const messages = conn.prepare('SELECT m.id, m.session_id AS sessionId, m.data FROM message m ORDER BY m.id LIMIT 300').all();
const nextSeq = conn.prepare('SELECT seq + 1 FROM event_sequence WHERE aggregate_id = ?').pluck();
const insertEvent = conn.prepare('INSERT INTO event (id, aggregate_id, seq, type, data) VALUES (?, ?, ?, ?, ?)');
const setSeq = conn.prepare('UPDATE event_sequence SET seq = ? WHERE aggregate_id = ?');
const upsertPart = conn.prepare(
  `INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?, ?, ?, ?, ?, ?)
   ON CONFLICT (id) DO UPDATE SET data = excluded.data, time_updated = excluded.time_updated`,
);
const upsertMessage = conn.prepare(
  `INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?, ?, ?, ?, ?)
   ON CONFLICT (id) DO UPDATE SET data = excluded.data, time_updated = excluded.time_updated`,
);
const sleep = new Int32Array(new SharedArrayBuffer(4));

let state = 99;
const random = () => {
  state = (state * 1103515245 + 12345) % 2 ** 31;
  return state / 2 ** 31;
};
const committed = [];
const errors = [];
const started = Date.now();
let n = 0;
process.stdout.write(`${JSON.stringify({ ready: true, parts: parts.length, messages: messages.length })}\n`);
while (Date.now() - started < duration) {
  n++;
  const now = Date.now();
  const id = `evt_writer${String(n).padStart(18, '0')}`;
  try {
    if (random() < 0.7 && parts.length > 0) {
      const target = parts[Math.floor(random() * parts.length)];
      const part = { id: target.id, sessionID: target.sessionId, messageID: target.messageId, type: 'text', text: `late text ${n} `.repeat(1 + (n % 40)) };
      const { id: _id, sessionID: _s, messageID: _m, ...rest } = part;
      conn.transaction(() => {
        const seq = nextSeq.get(target.sessionId);
        insertEvent.run(id, target.sessionId, seq, 'message.part.updated.1', JSON.stringify({ sessionID: target.sessionId, part, time: now }));
        setSeq.run(seq, target.sessionId);
        upsertPart.run(part.id, part.messageID, part.sessionID, now, now, JSON.stringify(rest));
        committed.push({ id, aggregate: target.sessionId, type: 'message.part.updated.1', entity: part.id, seq });
      }).immediate();
    } else if (messages.length > 0) {
      const target = messages[Math.floor(random() * messages.length)];
      const data = { ...JSON.parse(target.data), writerRevision: n };
      const info = { id: target.id, sessionID: target.sessionId, ...data };
      conn.transaction(() => {
        const seq = nextSeq.get(target.sessionId);
        insertEvent.run(id, target.sessionId, seq, 'message.updated.1', JSON.stringify({ sessionID: target.sessionId, info }));
        setSeq.run(seq, target.sessionId);
        upsertMessage.run(target.id, target.sessionId, data.time?.created ?? now, now, JSON.stringify(data));
        committed.push({ id, aggregate: target.sessionId, type: 'message.updated.1', entity: target.id, seq });
      }).immediate();
    }
  } catch (error) {
    errors.push(String(error?.message ?? error));
  }
  Atomics.wait(sleep, 0, 0, 1 + Math.floor(random() * 4));
}
conn.close();
process.stdout.write(`${JSON.stringify({ committed, errors })}\n`);
