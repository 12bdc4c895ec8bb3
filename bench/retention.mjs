// Retention benchmarks (issue 3), each beside a peer in the same run:
//  1. retention --apply evicting 80% of a 1 GB database, with reclaim, against the sqlite3 CLI
//     deleting the same sessions and running VACUUM;
//  2. archive throughput against `sqlite3 -json` dumping the same rows (sessions, messages, parts and
//     the event log's rows), with our peak heap, wall and cpu;
//  3. enforceAtStartup() with nothing to do on 10,000 sessions.
import { copyFileSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { CLI, MB, GB, cpuOf, fixture, fmtBytes, fmtMs, fmtRatio, log, median, run, sample, scratchDir, table } from './lib.mjs';

const NODE = process.execPath;

function copyDb(from, to) {
  rmSync(to, { force: true });
  rmSync(`${to}-wal`, { force: true });
  rmSync(`${to}-shm`, { force: true });
  copyFileSync(from, to);
}

export async function retentionBench({ label = '1GB', bytes = GB } = {}) {
  const fx = await fixture({ label, targetBytes: bytes });
  const work = scratchDir('retention');
  const db = join(work, 'opencode.db');
  const env = { XDG_DATA_HOME: join(work, 'data'), XDG_CACHE_HOME: join(work, 'cache'), XDG_CONFIG_HOME: join(work, 'config') };

  // The plan: keep the newest 20% of root sessions.
  copyDb(fx.db, db);
  const roots = Number(run('/usr/bin/sqlite3', [db, 'SELECT count(*) FROM session WHERE parent_id IS NULL']).stdout.trim());
  const keep = Math.max(1, Math.round(roots * 0.2));
  const plan = JSON.parse(run(NODE, [CLI, '--db', db, '--json', 'retention', '--max-sessions', String(keep), '--dry-run'], { env }).stdout);
  const doomed = plan.evict.flatMap((e) => [e.id, ...e.children]);
  log(`retention: ${roots} roots, evicting ${plan.evict.length} roots (${doomed.length} sessions)`);

  const rows = [];
  // ours, without archiving: the same work as the peer
  copyDb(fx.db, db);
  const oursBare = run(NODE, [CLI, '--db', db, '--json', 'retention', '--max-sessions', String(keep), '--apply', '--no-archive', '--yes'], { env });
  if (oursBare.status !== 0) throw new Error(`retention failed: ${oursBare.stderr}`);
  const bareResult = JSON.parse(oursBare.stdout);
  // ours, as configured by default: verified archive first
  copyDb(fx.db, db);
  rmSync(join(work, 'data'), { recursive: true, force: true });
  const oursArchived = run(NODE, [CLI, '--db', db, '--json', 'retention', '--max-sessions', String(keep), '--apply', '--yes'], { env });
  if (oursArchived.status !== 0) throw new Error(`retention failed: ${oursArchived.stderr}`);
  const archivedResult = JSON.parse(oursArchived.stdout);
  const archiveBytes = archivedResult.archive ? statSync(archivedResult.archive).size : 0;

  // peer: the sqlite3 CLI deleting the same sessions, then VACUUM
  copyDb(fx.db, db);
  const script = join(work, 'peer.sql');
  writeFileSync(
    script,
    [
      'PRAGMA foreign_keys=ON;',
      'CREATE TEMP TABLE doomed(id TEXT PRIMARY KEY);',
      ...doomed.map((id) => `INSERT INTO doomed VALUES ('${id}');`),
      'DELETE FROM part WHERE session_id IN (SELECT id FROM doomed);',
      'DELETE FROM message WHERE session_id IN (SELECT id FROM doomed);',
      'DELETE FROM session WHERE id IN (SELECT id FROM doomed);',
      'DELETE FROM event WHERE aggregate_id IN (SELECT id FROM doomed);',
      // the cascade check on the unindexed event table would scan it once per row: off, as we do
      'PRAGMA foreign_keys=OFF;',
      'DELETE FROM event_sequence WHERE aggregate_id IN (SELECT id FROM doomed);',
      'VACUUM;',
      'PRAGMA wal_checkpoint(TRUNCATE);',
      '',
    ].join('\n'),
  );
  const peer = run(`/usr/bin/sqlite3 ${JSON.stringify(db)} < ${JSON.stringify(script)}`, [], { shell: true });
  if (peer.status !== 0) throw new Error(`sqlite3 failed: ${peer.stderr}`);
  const peerAfter = statSync(db).size;

  rows.push(['ours, --no-archive', fmtMs(oursBare.ms), `${fmtBytes(bareResult.bytesBefore)} -> ${fmtBytes(bareResult.bytesAfter)}`, fmtRatio(oursBare.ms / peer.ms), `${(oursBare.maxRssKB / 1024).toFixed(0)} MB`]);
  rows.push(['ours, verified .json.gz archive first', fmtMs(oursArchived.ms), `${fmtBytes(archivedResult.bytesBefore)} -> ${fmtBytes(archivedResult.bytesAfter)} (+ ${fmtBytes(archiveBytes)} archive)`, fmtRatio(oursArchived.ms / peer.ms), `${(oursArchived.maxRssKB / 1024).toFixed(0)} MB`]);
  rows.push(['sqlite3 CLI: DELETE … ; VACUUM', fmtMs(peer.ms), `${fmtBytes(statSync(fx.db).size)} -> ${fmtBytes(peerAfter)}`, '1.00x', `${(peer.maxRssKB / 1024).toFixed(0)} MB`]);

  // 2. archive throughput: the evicted 80%, uncompressed and gzipped, against sqlite3 -json
  copyDb(fx.db, db);
  const list = join(work, 'doomed.txt');
  writeFileSync(list, doomed.join('\n'));
  const archiveRows = [];
  const payload = (() => {
    const conn = new Database(db, { readonly: true });
    const sum = (table, key = 'session_id') => conn.prepare(`SELECT coalesce(sum(length(CAST(data AS BLOB))), 0) FROM ${table} WHERE ${key} IN (SELECT value FROM json_each(?))`).pluck().get(JSON.stringify(doomed));
    const total = sum('message') + sum('part') + sum('event', 'aggregate_id');
    conn.close();
    return total;
  })();
  // Modes of archive-probe.mjs: `verify` is what the commands do (a large .json read by two exporters,
  // verified behind the writer); `verify-after … one-exporter` is the same work on one thread.
  const probes = [
    ['archive.json', 'write-only', 'two-exporters', 'write only'],
    ['archive.json', 'verify', 'two-exporters', 'write + verify'],
    ['archive.json', 'verify-after', 'one-exporter', 'write + verify, one thread'],
    ['archive.json.gz', 'verify', 'one-exporter', 'write + verify'],
  ];
  for (const [name, mode, exporters, what] of probes) {
    const out = join(work, name);
    rmSync(out, { force: true });
    const probe = run(NODE, [join(import.meta.dirname, 'archive-probe.mjs'), db, out, list, mode, exporters], {});
    if (probe.status !== 0) throw new Error(`archive probe failed: ${probe.stderr}`);
    const result = JSON.parse(probe.stdout.trim().split('\n').pop());
    const cpu = cpuOf(probe.report);
    // The other threads' heaps are their own, beside the main thread's.
    const threads = [result.verifierHeapPeak ? `${(result.verifierHeapPeak / MB).toFixed(1)} MB verifying` : '', result.secondHalfHeapPeak ? `${(result.secondHalfHeapPeak / MB).toFixed(1)} MB second exporter` : ''].filter(Boolean);
    const heap = `${(result.heapPeak / MB).toFixed(1)} MB${threads.length ? ` (+ ${threads.join(', ')})` : ''}`;
    const rss = probe.maxRssKB ? `${(probe.maxRssKB / 1024).toFixed(0)} MB` : '-';
    archiveRows.push({ ms: result.ms, cpu, cells: [`ours: archive → ${name} (${what})`, fmtMs(result.ms), fmtMs(cpu), `${(payload / MB / (result.ms / 1000)).toFixed(0)} MB/s`, fmtBytes(statSync(out).size), heap, rss] });
    rmSync(out, { force: true });
  }
  const peerSql = join(work, 'dump.sql');
  const inList = doomed.map((id) => `'${id}'`).join(',');
  writeFileSync(
    peerSql,
    [
      `SELECT * FROM session WHERE id IN (${inList});`,
      `SELECT * FROM message WHERE session_id IN (${inList});`,
      `SELECT * FROM part WHERE session_id IN (${inList});`,
      `SELECT * FROM event_sequence WHERE aggregate_id IN (${inList});`,
      `SELECT * FROM event WHERE aggregate_id IN (${inList}) ORDER BY aggregate_id, rowid;`,
      '',
    ].join('\n'),
  );
  const dump = join(work, 'dump.json');
  const peerDump = run(`/usr/bin/sqlite3 -json ${JSON.stringify(db)} < ${JSON.stringify(peerSql)} > ${JSON.stringify(dump)}`, [], { shell: true });
  if (peerDump.status !== 0) throw new Error(`sqlite3 -json failed: ${peerDump.stderr}`);
  const peerCpu = cpuOf(peerDump.report);
  archiveRows.push({
    ms: peerDump.ms,
    cpu: peerCpu,
    cells: ['sqlite3 -json (same sessions, messages, parts, events)', fmtMs(peerDump.ms), fmtMs(peerCpu), `${(payload / MB / (peerDump.ms / 1000)).toFixed(0)} MB/s`, fmtBytes(statSync(dump).size), '-', peerDump.maxRssKB ? `${(peerDump.maxRssKB / 1024).toFixed(0)} MB` : '-'],
  });
  rmSync(dump, { force: true });

  // 3. enforceAtStartup with nothing to do, 10,000 root sessions
  const many = await fixture({ label: '10K-SESSIONS', targetBytes: 200 * MB, seed: 3, rootSessions: 10_000 });
  const { enforceAtStartup } = await import('../dist/main/retention.js');
  const { parseSessionConfig } = await import('../dist/core/config.js');
  const statePath = join(work, 'state.json');
  const config = parseSessionConfig({ maxSizeMB: 100_000, maxAgeDays: 100_000, maxSessions: 100_000 }, 'bench');
  const quiet = () => undefined;
  const first = performance.now();
  await enforceAtStartup({ db: many.db, config, cacheDir: join(work, 'cache'), statePath, log: quiet });
  const firstMs = performance.now() - first;
  const samples = await sample(30, () => enforceAtStartup({ db: many.db, config, cacheDir: join(work, 'cache'), statePath, log: quiet }));
  const noPolicy = await sample(30, () => enforceAtStartup({ db: many.db, config: parseSessionConfig({}, 'bench'), cacheDir: join(work, 'cache'), statePath, log: quiet }));
  const sessions = Number(run('/usr/bin/sqlite3', [many.db, 'SELECT count(*) FROM session']).stdout.trim());
  rmSync(work, { recursive: true, force: true });
  return {
    label: fx.key,
    fileBytes: statSync(fx.db).size,
    roots,
    evictRoots: plan.evict.length,
    evictSessions: doomed.length,
    applyRows: rows,
    archiveRows: archiveRows.map((row) => [...row.cells, fmtRatio(peerDump.ms / row.ms), row.cpu && peerCpu ? fmtRatio(peerCpu / row.cpu) : '-']),
    startup: { sessions, firstMs, medianMs: median(samples), noPolicyMs: median(noPolicy), fileBytes: statSync(many.db).size },
  };
}

export function retentionMarkdown(r) {
  return [
    `## Retention apply, archive and startup (issue 3)`,
    '',
    `Database: ${r.label}, ${fmtBytes(r.fileBytes)}, ${r.roots} root sessions; the plan keeps the newest 20%: ${r.evictRoots} roots (${r.evictSessions} sessions with their children) evicted.`,
    '',
    'Goal: at most 1.0x the sqlite3 CLI deleting the same sessions and running VACUUM.',
    '',
    table(['run', 'wall', 'file', 'ours / sqlite3', 'peak RSS'], r.applyRows),
    '',
    'Archive throughput (payload bytes of the evicted sessions, their events included, per second). Goal: at least 1.0x `sqlite3 -json`, heap under 32 MB, peak RSS under 300 MB.',
    '',
    table(['run', 'wall', 'cpu', 'throughput', 'output', 'peak V8 heap', 'peak RSS', 'speed vs sqlite3 -json (wall)', '(cpu)'], r.archiveRows),
    '',
    `\`enforceAtStartup()\` with a policy and nothing to do, ${r.startup.sessions} sessions (${fmtBytes(r.startup.fileBytes)}): first call ${fmtMs(r.startup.firstMs)}, then median ${fmtMs(r.startup.medianMs)} (30 calls); with no policy set, median ${fmtMs(r.startup.noPolicyMs)}. Goal: under 10 ms.`,
    '',
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await retentionBench();
  process.stdout.write(`${retentionMarkdown(r)}\n`);
}
