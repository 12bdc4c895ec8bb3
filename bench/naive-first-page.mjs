// The naive loader, as OpenCode's export does it in essence: the whole session, message and part
// tables into memory (data parsed from JSON), grouped, sorted by time_updated DESC, then the
// first page of 50 printed. Run in a child process with Node's default heap; prints one JSON line.
// Usage: node bench/naive-first-page.mjs <db> [limit]
import Database from 'better-sqlite3';
import { getHeapStatistics } from 'node:v8';

const [path, limitText = '50'] = process.argv.slice(2);
const limit = Number(limitText);
const db = new Database(path, { readonly: true });
const sessions = db.prepare('SELECT * FROM session').all();
const messages = db.prepare('SELECT * FROM message').all().map((m) => ({ ...m, data: JSON.parse(m.data) }));
const parts = db.prepare('SELECT * FROM part').all().map((p) => ({ ...p, data: JSON.parse(p.data) }));
const bySession = new Map(sessions.map((s) => [s.id, { info: s, messages: new Map(), bytes: 0 }]));
for (const m of messages) {
  const s = bySession.get(m.session_id);
  if (s) s.messages.set(m.id, { info: m, parts: [] });
}
for (const p of parts) {
  const m = bySession.get(p.session_id)?.messages.get(p.message_id);
  if (m) m.parts.push(p);
}
sessions.sort((a, b) => b.time_updated - a.time_updated || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
const page = sessions.slice(0, limit).map((s) => ({ id: s.id, title: s.title, timeUpdated: s.time_updated }));
const heap = getHeapStatistics();
process.stdout.write(
  `${JSON.stringify({
    firstPage: page.length,
    sessions: sessions.length,
    messages: messages.length,
    parts: parts.length,
    msSinceStart: performance.now(),
    heapUsed: heap.used_heap_size,
    heapTotal: heap.total_heap_size,
    heapLimit: heap.heap_size_limit,
    externalMalloced: heap.malloced_memory,
  })}\n`,
);
