// Event log compaction, beside the sqlite3 CLI on identical copies of a generated event-heavy
// database (OpenCode 1.18 layout):
//  - ours: compactEvents + the writer's reclaim (VACUUM), in a child process (test/helpers/compact-child.mjs);
//  - sqlite3 with the same rule for messages and parts (newest equals the row, compared the same
//    way; first snapshots and step-finish parts kept) as one window-function DELETE + VACUUM
//    (sessions' updates are left alone there: their rule does not fit one statement);
//  - sqlite3 with the naive DELETE people post (every snapshot but the newest, no check; not
//    replay-safe), for scale.
// Prints a markdown table; BENCH_COMPACT_SIZE=200MB for a smaller run (default 1GB),
// BENCH_COMPACT_LAYOUT=legacy for a file without OpenCode 1.18's event indexes.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DATA, MB, ROOT, cpuOf, fmtBytes, fmtMs, fmtRatio, log, machine, parseSize, run, scratchDir, table } from './lib.mjs';

const NODE = process.execPath;
const CHILD = join(ROOT, 'test', 'helpers', 'compact-child.mjs');
const SNAPSHOT_TYPES = `'message.updated.1', 'message.part.updated.1', 'session.updated.1'`;

/** The generator lives with the tests; `npm run build` compiles it into build/dev. */
async function generator() {
  return import(join(ROOT, 'build', 'dev', 'test', 'fixtures', 'event-log.js'));
}

function copyDb(from, to) {
  for (const suffix of ['', '-wal', '-shm']) rmSync(to + suffix, { force: true });
  copyFileSync(from, to);
}

const fileBytes = (path) => statSync(path).size + (existsSync(`${path}-wal`) ? statSync(`${path}-wal`).size : 0);

/** The walk our module uses (one tree walked, nodes looked up by path), written for sqlite3 3.40. */
function walkEqual(doc, root, other, exclude) {
  const excluded = exclude.map((k) => `'${root}.${k}'`).join(', ');
  const path = `'$' || substr(a.fullkey, ${root.length + 1})`;
  return `(json_valid(${other})
    AND (SELECT count(*) FROM json_tree(${other})) = (SELECT count(*) FROM json_tree(${doc}, '${root}') WHERE fullkey NOT IN (${excluded}))
    AND NOT EXISTS (SELECT 1 FROM json_tree(${doc}, '${root}') a WHERE a.fullkey NOT IN (${excluded})
      AND NOT (json_type(${other}, ${path}) IS a.type AND (a.type IN ('object', 'array') OR json_extract(${other}, ${path}) IS a.atom))))`;
}

const SAME_RULE = `
PRAGMA foreign_keys = ON;
PRAGMA busy_timeout = 5000;
CREATE TEMP TABLE ranked AS
  SELECT rid, agg, type, entity, seq,
    row_number() OVER w AS rn, count(*) OVER w AS n, first_value(rid) OVER w AS newest, max(ptype IS 'step-finish') OVER w AS usage
  FROM (SELECT e.rowid AS rid, e.aggregate_id AS agg, e.type AS type, e.seq AS seq,
          CASE e.type WHEN 'message.updated.1' THEN e.data ->> '$.info.id' ELSE e.data ->> '$.part.id' END AS entity,
          CASE WHEN e.type = 'message.part.updated.1' THEN e.data ->> '$.part.type' END AS ptype
        FROM event e WHERE e.type IN ('message.updated.1', 'message.part.updated.1')
          AND e.aggregate_id IN (SELECT id FROM session WHERE workspace_id IS NULL)
          AND e.aggregate_id NOT IN (SELECT aggregate_id FROM event_sequence WHERE %OWNER%))
  WINDOW w AS (PARTITION BY agg, type, entity ORDER BY seq DESC ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING);
CREATE TEMP TABLE equal AS
  SELECT r.newest FROM ranked r JOIN event n ON n.rowid = r.newest JOIN message m ON m.id = r.entity AND m.session_id = r.agg
  WHERE r.rn = 1 AND r.n > 2 AND r.type = 'message.updated.1' AND ${walkEqual('n.data', '$.info', 'm.data', ['id', 'sessionID'])}
  UNION ALL
  SELECT r.newest FROM ranked r JOIN event n ON n.rowid = r.newest JOIN part p ON p.id = r.entity AND p.session_id = r.agg
  WHERE r.rn = 1 AND r.n > 2 AND r.usage = 0 AND r.type = 'message.part.updated.1' AND p.message_id IS (n.data ->> '$.part.messageID')
    AND ${walkEqual('n.data', '$.part', 'p.data', ['id', 'sessionID', 'messageID'])};
DELETE FROM event WHERE rowid IN (SELECT rid FROM ranked WHERE rn > 1 AND rn < n AND newest IN (SELECT newest FROM equal));
VACUUM;
PRAGMA wal_checkpoint(TRUNCATE);
`;

const NAIVE_SQL = `
PRAGMA foreign_keys = ON;
DELETE FROM event WHERE rowid IN (
  SELECT rid FROM (
    SELECT rowid AS rid, row_number() OVER (PARTITION BY aggregate_id, type,
      CASE type WHEN 'message.updated.1' THEN data ->> '$.info.id' WHEN 'message.part.updated.1' THEN data ->> '$.part.id' ELSE aggregate_id END
      ORDER BY seq DESC) AS rn
    FROM event WHERE type IN (${SNAPSHOT_TYPES}))
  WHERE rn > 1);
VACUUM;
PRAGMA wal_checkpoint(TRUNCATE);
`;

function sqliteRun(db, sql) {
  const r = run('/usr/bin/sqlite3', [db], { input: sql });
  if (r.status !== 0) throw new Error(`sqlite3 failed (${r.status}): ${r.stderr}`);
  return r;
}

/** Event rows and their bytes, by the sqlite3 CLI (3.40 has no octet_length). */
function eventFigures(db) {
  const out = spawnSync('/usr/bin/sqlite3', [db, 'SELECT count(*), total(length(CAST(data AS BLOB))) FROM event'], { encoding: 'utf8' }).stdout.trim();
  const [count, bytes] = out.split('|').map(Number);
  return { count, bytes };
}

export async function compactBench({ size = process.env.BENCH_COMPACT_SIZE ?? '1GB', layout = process.env.BENCH_COMPACT_LAYOUT ?? '1.18' } = {}) {
  const { cachedEventLog } = await generator();
  const targetBytes = parseSize(size);
  log(`event log ${size} (${layout}): generating or reusing the cached database ...`);
  const started = performance.now();
  const manifest = cachedEventLog({ targetBytes, seed: 1, layout, cacheDir: join(DATA, 'event-log') });
  log(`event log ready in ${((performance.now() - started) / 1000).toFixed(1)} s: ${fmtBytes(manifest.fileBytes)}, ${manifest.sessions} sessions, ${manifest.events} events`);
  const work = scratchDir('compact');
  const before = eventFigures(manifest.path);

  // The plan: superseded and compactable bytes (what the % below is of), and how long it takes.
  const { openConnection: openDatabase } = await import('../dist/store/sqlite/connection.js');
  const { compactionPlan } = await import('../dist/store/sqlite/event-compaction.js');
  const planDb = join(work, 'plan.db');
  copyDb(manifest.path, planDb);
  const open = openDatabase(planDb);
  const planStart = performance.now();
  const plan = compactionPlan(open);
  const planMs = performance.now() - planStart;
  open.db.close();
  rmSync(planDb, { force: true });

  // ours, in its own process, as the CLI runs in its own
  const oursDb = join(work, 'ours.db');
  copyDb(manifest.path, oursDb);
  const oursBytesBefore = fileBytes(oursDb);
  const ours = run(NODE, [CHILD, oursDb, '--reclaim']);
  if (ours.status !== 0) throw new Error(`compaction failed: ${ours.stderr}`);
  const oursDone = JSON.parse(ours.stdout.trim().split('\n').pop());
  const oursAfter = eventFigures(oursDb);
  const oursBytesAfter = fileBytes(oursDb);
  rmSync(oursDb, { force: true });

  const cliDb = join(work, 'cli.db');
  copyDb(manifest.path, cliDb);
  // Files without event_sequence.owner_id (older OpenCode) have no synced aggregates to skip.
  const hasOwner = spawnSync('/usr/bin/sqlite3', [cliDb, "SELECT count(*) FROM pragma_table_info('event_sequence') WHERE name = 'owner_id'"], { encoding: 'utf8' }).stdout.trim() === '1';
  const cli = sqliteRun(cliDb, SAME_RULE.replace('%OWNER%', hasOwner ? 'owner_id IS NOT NULL' : '0'));
  const cliAfter = eventFigures(cliDb);
  const cliBytesAfter = fileBytes(cliDb);
  rmSync(cliDb, { force: true });

  const naiveDb = join(work, 'naive.db');
  copyDb(manifest.path, naiveDb);
  const naive = sqliteRun(naiveDb, NAIVE_SQL);
  const naiveAfter = eventFigures(naiveDb);
  const naiveBytesAfter = fileBytes(naiveDb);
  rmSync(naiveDb, { force: true });

  const superseded = plan.superseded.bytes;
  // User + system time beside wall: on a shared machine the three rows run at different loads.
  const cpu = (r) => cpuOf(r.report) ?? NaN;
  const row = (name, r, after, bytesAfter, heap) => [
    name,
    fmtMs(r.ms),
    fmtRatio(r.ms / cli.ms),
    fmtMs(cpu(r)),
    fmtRatio(cpu(r) / cpu(cli)),
    fmtBytes(before.bytes - after.bytes),
    `${(((before.bytes - after.bytes) / superseded) * 100).toFixed(1)}%`,
    fmtBytes(oursBytesBefore - bytesAfter),
    heap,
    fmtBytes((r.maxRssKB ?? 0) * 1024),
  ];
  const rows = [
    row('ours: compactEvents + reclaim', ours, oursAfter, oursBytesAfter, fmtBytes(oursDone.heapPeak)),
    row('sqlite3: same rule, one DELETE + VACUUM', cli, cliAfter, cliBytesAfter, '-'),
    row('sqlite3: naive DELETE (not replay-safe) + VACUUM', naive, naiveAfter, naiveBytesAfter, '-'),
  ];
  const markdown = [
    `Event log compaction, ${size} target (${fmtBytes(manifest.fileBytes)} file, ${layout} layout, ${manifest.sessions} sessions, ${before.count} events, ${fmtBytes(before.bytes)} of event data; superseded snapshots of kept sessions ${fmtBytes(superseded)}, compactable by the rule ${fmtBytes(plan.compactable.bytes)}; plan ${fmtMs(planMs)}).`,
    '',
    table(['what', 'time', 'vs sqlite3 same rule', 'cpu', 'cpu vs sqlite3', 'event bytes freed', '% of superseded', 'file bytes freed', 'peak heap', 'peak RSS'], rows),
    '',
    `Ours: ${oursDone.result.transactions} write transactions, the longest ${oursDone.result.longestTransactionMs} ms; kept (superseded but staying): ${Object.entries(oursDone.result.kept)
      .filter(([, v]) => v.count > 0)
      .map(([k, v]) => `${k} ${v.count} (${fmtBytes(v.bytes)})`)
      .join(', ')}.`,
  ].join('\n');
  return { markdown, planMs, plan, ours, oursDone, cli, naive, machine: machine() };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await compactBench();
  const m = result.machine;
  process.stdout.write(`${result.markdown}\n\nMachine: ${m.nproc} cores (${m.cpu}), ${m.memory}, Node ${m.node}, sqlite3 ${m.sqlite3}.\n`);
  if (result.oursDone.heapPeak > 32 * MB) log(`heap goal missed: ${fmtBytes(result.oursDone.heapPeak)}`);
}
