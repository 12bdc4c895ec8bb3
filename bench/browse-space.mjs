// The session browser sorted by a kind of bytes (the size check's chart slices): the file reader's
// `sessionSpace` (attachments per session from the part index, the event log in one pass grouped
// by aggregate_id, text the rest) beside what every browser page reads anyway (`retentionFacts`)
// and what the chart itself reads (`stats`). Cold (a fresh part index), after a commit (the part
// index kept, the per-state memo stale) and warm (memo hit).
//   nice -n 10 node bench/browse-space.mjs     (after `npm run build`)
// Env: BENCH_BROWSE_MB (fixture size, default 64), BENCH_N (samples, default 5).
// Prints a table; wall and this process's cpu, with ratios to retentionFacts in the same state.
import Database from 'better-sqlite3';
import { copyFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fixture, fmtBytes, fmtMs, fmtRatio, log, machine, MB, median, ROOT, scratchDir, table } from './lib.mjs';

const SIZE_MB = Number(process.env.BENCH_BROWSE_MB ?? 64);
const N = Number(process.env.BENCH_N ?? 5);
const { SqliteReader } = await import(join(ROOT, 'dist', 'store', 'sqlite', 'sqlite-reader.js'));

const { db: source, summary } = await fixture({ label: `browse-space-${SIZE_MB}MB`, targetBytes: SIZE_MB * MB });
const scratch = scratchDir('browse-space');
const db = join(scratch, 'opencode.db');
copyFileSync(source, db);
const indexDir = join(scratch, 'index');
log(`fixture ${fmtBytes(summary.fileBytes)}: ${summary.sessions} sessions, ${summary.parts} parts`);

/** One call on a fresh reader: wall and this process's cpu. */
async function timed(call) {
  const reader = SqliteReader.open(db, { indexDir });
  try {
    const cpu = process.cpuUsage();
    const start = performance.now();
    await call(reader);
    const ms = performance.now() - start;
    const used = process.cpuUsage(cpu);
    return { ms, cpu: (used.user + used.system) / 1000 };
  } finally {
    await reader.close();
  }
}

/** A commit that changes the file's state (the memo goes stale) but no part: the index stays valid. */
function touch() {
  const conn = new Database(db);
  conn.prepare("UPDATE session SET title = title || '' WHERE id = (SELECT id FROM session LIMIT 1)").run();
  conn.close();
}

const calls = {
  retentionFacts: (r) => r.retentionFacts(true),
  sessionSpace: (r) => r.sessionSpace(),
  stats: (r) => r.stats({ largest: 5 }),
};
const states = {
  cold: () => rmSync(indexDir, { recursive: true, force: true }),
  'after a commit': touch,
  warm: () => undefined,
};
const rows = [];
for (const [state, before] of Object.entries(states)) {
  const figures = {};
  for (const [name, call] of Object.entries(calls)) {
    const wall = [];
    const cpu = [];
    for (let i = 0; i < N; i++) {
      if (state === 'warm') await timed(call); // the memo of this state written first
      before();
      const t = await timed(call);
      wall.push(t.ms);
      cpu.push(t.cpu);
    }
    figures[name] = { ms: median(wall), cpu: median(cpu) };
  }
  for (const [name, f] of Object.entries(figures)) {
    rows.push([state, name, fmtMs(f.ms), fmtMs(f.cpu), fmtRatio(f.ms / figures.retentionFacts.ms)]);
  }
}
const m = machine();
console.log(`\n${m.nproc} cores (${m.cpu}), Node ${m.node}; fixture ${fmtBytes(summary.fileBytes)}, ${summary.sessions} sessions; median of ${N}\n`);
console.log(table(['state', 'read', 'wall', 'cpu', 'wall / retentionFacts'], rows));
