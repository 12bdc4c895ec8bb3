// Trim benchmark (issue 13): `trim --reasoning` on a ~1 GB generated database against the sqlite3
// CLI deleting the same reasoning parts and running VACUUM, on identical copies, in the same run.
// Ours is timed three ways: without the archive (the peer's work: delete, then VACUUM), as a user
// runs it by default (verified .json.gz archive of the sessions first), and the trim alone when
// the VACUUM is deferred (a small share of a large file freed, as `delete` does).
// BENCH_TRIM_SIZE=100MB for a smaller database.
import { copyFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, cpuOf, fixture, fmtBytes, fmtMs, fmtRatio, log, machine, parseSize, run, scratchDir, table } from './lib.mjs';

const NODE = process.execPath;
const SQLITE = '/usr/bin/sqlite3';

function copyDb(from, to) {
  for (const suffix of ['', '-wal', '-shm']) rmSync(`${to}${suffix}`, { force: true });
  copyFileSync(from, to);
}

const bytesOf = (db) => statSync(db).size;
/** User + system ms of a run (the machine is shared: wall time is noisy). */
const cpuMs = (r) => cpuOf(r.report ?? '') ?? 0;
const count = (db, sql) => Number(run(SQLITE, [db, sql]).stdout.trim());

export async function trimBench({ label = process.env.BENCH_TRIM_SIZE ?? '1GB' } = {}) {
  const bytes = parseSize(label);
  const fx = await fixture({ label: label.toUpperCase(), targetBytes: bytes });
  const work = scratchDir('trim');
  const db = join(work, 'opencode.db');
  const env = { XDG_DATA_HOME: join(work, 'data'), XDG_CACHE_HOME: join(work, 'cache'), XDG_CONFIG_HOME: join(work, 'config') };
  const reasoning = count(fx.db, "SELECT count(*) FROM part WHERE json_extract(data, '$.type') = 'reasoning'");
  const reasoningBytes = count(fx.db, "SELECT sum(length(CAST(data AS BLOB))) FROM part WHERE json_extract(data, '$.type') = 'reasoning'");
  const original = bytesOf(fx.db);
  log(`trim: ${fmtBytes(original)} database, ${reasoning} reasoning parts (${fmtBytes(reasoningBytes)})`);

  const cli = (args) => {
    const r = run(NODE, [CLI, '--db', db, '--json', ...args], { env });
    if (r.status !== 0) throw new Error(`${args.join(' ')} failed: ${r.stderr}`);
    return { ...r, result: JSON.parse(r.stdout) };
  };

  // ours, the peer's work: no archive, then a VACUUM (run by `vacuum` when trim deferred it)
  copyDb(fx.db, db);
  const bare = cli(['trim', '--reasoning', '--apply', '--no-archive', '--yes']);
  const deferred = bare.result.reclaim === 'deferred';
  const vacuum = deferred ? cli(['vacuum', '--yes']) : { ms: 0, maxRssKB: 0, report: '' };
  const bareAfter = bytesOf(db);
  const left = count(db, "SELECT count(*) FROM part WHERE json_extract(data, '$.type') = 'reasoning'");
  if (left !== 0) throw new Error(`ours left ${left} reasoning parts`);

  // ours, as a user runs it: the verified archive first
  copyDb(fx.db, db);
  rmSync(join(work, 'data'), { recursive: true, force: true });
  const archived = cli(['trim', '--reasoning', '--apply', '--yes']);
  const archivedVacuum = archived.result.reclaim === 'deferred' ? cli(['vacuum', '--yes']) : { ms: 0, report: '' };
  const archiveBytes = archived.result.archive ? statSync(archived.result.archive).size : 0;
  const archivedAfter = bytesOf(db);

  // peer: the sqlite3 CLI deleting the same rows, then VACUUM
  copyDb(fx.db, db);
  const script = join(work, 'peer.sql');
  writeFileSync(script, "PRAGMA foreign_keys=ON;\nDELETE FROM part WHERE json_extract(data, '$.type') = 'reasoning';\nVACUUM;\nPRAGMA wal_checkpoint(TRUNCATE);\n");
  const peer = run(`${SQLITE} ${JSON.stringify(db)} < ${JSON.stringify(script)}`, [], { shell: true });
  if (peer.status !== 0) throw new Error(`sqlite3 failed: ${peer.stderr}`);
  const peerAfter = bytesOf(db);
  const peerLeft = count(db, "SELECT count(*) FROM part WHERE json_extract(data, '$.type') = 'reasoning'");
  if (peerLeft !== 0) throw new Error(`peer left ${peerLeft} reasoning parts`);
  rmSync(work, { recursive: true, force: true });

  const bareMs = bare.ms + vacuum.ms;
  const bareCpu = cpuMs(bare) + cpuMs(vacuum);
  const archivedMs = archived.ms + archivedVacuum.ms;
  const archivedCpu = cpuMs(archived) + cpuMs(archivedVacuum);
  const peerCpu = cpuMs(peer);
  const rss = (r) => `${((r.maxRssKB ?? 0) / 1024).toFixed(0)} MB`;
  const cells = (ms, cpu) => [fmtMs(ms), fmtMs(cpu), fmtRatio(ms / peer.ms), peerCpu ? fmtRatio(cpu / peerCpu) : '-'];
  const rows = [
    [`ours: trim --reasoning --no-archive${deferred ? ' (VACUUM deferred) + vacuum' : ''}`, ...cells(bareMs, bareCpu), fmtBytes(original - bareAfter), rss(bare)],
    ...(deferred ? [['ours: the trim alone (deletes, space left inside the file)', ...cells(bare.ms, cpuMs(bare)), `0 (${fmtBytes(bare.result.freesBytes)} reusable inside)`, rss(bare)]] : []),
    [`ours: verified .json.gz archive first, trim${archivedVacuum.ms ? ' + vacuum' : ''}`, ...cells(archivedMs, archivedCpu), `${fmtBytes(original - archivedAfter)} (+ ${fmtBytes(archiveBytes)} archive)`, rss(archived)],
    ['sqlite3 CLI: DELETE reasoning parts; VACUUM', ...cells(peer.ms, peerCpu), fmtBytes(original - peerAfter), rss(peer)],
  ];
  const markdown = [
    `Trim reasoning: ${fmtBytes(original)} generated database, ${reasoning.toLocaleString('en-US')} reasoning parts holding ${fmtBytes(reasoningBytes)}; each side on its own identical copy, warm page cache. Ratios: ours / the peer's (lower is faster); cpu is user + system time, steadier than wall time on a shared machine.`,
    '',
    table(['what', 'wall', 'cpu', 'wall ratio', 'cpu ratio', 'bytes freed', 'peak RSS'], rows),
  ].join('\n');
  return { markdown, machine: machine() };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await trimBench();
  const m = result.machine;
  process.stdout.write(`${result.markdown}\n\nMachine: ${m.nproc} cores (${m.cpu}), ${m.memory}, Node ${m.node}, sqlite3 ${m.sqlite3}.\n`);
}
