// The writing commands on a 1 GB database holding one 300 MB PDF (issue 12), each beside its peer:
//   archive (everything, verified) against `sqlite3 -json` writing the same rows to a file;
//   archive .gz against `sqlite3 -json | gzip -1`; restore of that archive into an empty database
//   against `sqlite3 .dump | sqlite3`; retention --apply and compact --apply on a copy (no peer:
//   BENCH_BEFORE=<checkout> adds the same runs of another build, e.g. /work/main before this work);
//   migrate --to postgres when BENCH_PG is set (PostgreSQL on loopback), against pgloader.
// Ours: fresh `node dist/bin/session-keeper.js` processes under /usr/bin/time (peak RSS of the whole process
// tree, user + system cpu), V8 heap from --trace-gc. Median of BENCH_N runs (default 1: each run
// moves a gigabyte). Run with `nice -n 10 node bench/writes.mjs`; prints a markdown section.
// BENCH_DB=<file> runs it on an existing database instead (the 1 GB fixture's event log has no
// index on aggregate_id, so every session's rows scan the whole log: minutes, before and after this work).
import { copyFileSync, existsSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { CLI, GB, MB, fixture, fmtBytes, fmtMs, fmtRatio, log, machine, median, run, scratchDir, table, measure as measureRuns } from './lib.mjs';

const N = Number(process.env.BENCH_N ?? 1);
const measure = (name, once, options = {}) => measureRuns(name, once, { n: N, ...options });
const HUGE = Number(process.env.BENCH_HUGE_MB ?? 300) * MB;
const SQLITE = '/usr/bin/sqlite3';
const PG = process.env.BENCH_PG;

const { OPENCODE_SCHEMA_DDL } = await import('../dist/store/sqlite/schema.js');

/** An empty database in OpenCode's schema (the target of a restore). */
function emptyDb(path) {
  for (const suffix of ['', '-wal', '-shm']) rmSync(path + suffix, { force: true });
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec(OPENCODE_SCHEMA_DDL);
  db.close();
}

function copyDb(from, to) {
  for (const suffix of ['', '-wal', '-shm']) rmSync(to + suffix, { force: true });
  copyFileSync(from, to);
}

/** BENCH_DB=<file>: an existing database instead of the generated one (e.g. test/fixtures/huge-part.ts's). */
function givenDb(path) {
  const db = new Database(path, { readonly: true });
  const count = (table) => db.prepare(`SELECT count(*) FROM ${table}`).pluck().get();
  const summary = { fileBytes: statSync(path).size, sessions: count('session'), parts: count('part') };
  db.close();
  return { db: path, key: path, summary };
}

export async function writes() {
  const fx = process.env.BENCH_DB ? givenDb(process.env.BENCH_DB) : await fixture({ label: '1GB', targetBytes: 1 * GB, hugeAttachmentBytes: HUGE });
  const dir = scratchDir('writes');
  const env = { XDG_CACHE_HOME: join(dir, 'xdg-cache'), XDG_DATA_HOME: join(dir, 'xdg-data'), XDG_CONFIG_HOME: join(dir, 'xdg-config'), TMPDIR: dir };
  const before = process.env.BENCH_BEFORE;
  // A build from before the CLI bundle has only dist/cli/main.js.
  const cliOf = (root) => (root ? [join(root, 'dist', 'bin', 'session-keeper.js'), join(root, 'dist', 'cli', 'main.js')].find((path) => existsSync(path)) : CLI);
  const command = (root) => (db, args) => () => run(process.execPath, ['--trace-gc', cliOf(root), '--db', db, '--cache-dir', join(dir, 'attachments'), '--json', ...args], { env });
  const ours = command(null);
  const old = command(before);
  const was = (name, once, options) => (before ? measure(`before: ${name}`, once, options) : null);

  // The rows an archive holds: every table a session owns, as the peer's sqlite3 -json writes them.
  const probe = new Database(fx.db, { readonly: true });
  const tables = ['session', 'message', 'part', 'todo', 'session_share', 'event', 'event_sequence', 'session_message', 'session_input'].filter(
    (t) => probe.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(t) !== undefined,
  );
  probe.close();
  const selects = tables.map((t) => `SELECT * FROM ${t};`).join(' ');
  const rows = [];
  const pair = (what, oursRun, peerRun, note = '', beforeRun = null, bytes = null) => rows.push({ what, ours: oursRun, peer: peerRun, note, before: beforeRun, bytes });

  // Warm the page cache once for everyone.
  run(`cat '${fx.db}' > /dev/null`, [], { shell: true });

  const archive = join(dir, 'all.json');
  const peerJson = join(dir, 'peer.json');
  const archiveRun = measure('ours: archive', ours(fx.db, ['archive', '--output', archive]), { before: () => rmSync(archive, { force: true }) });
  const archiveBytes = statSync(archive).size;
  const jsonPeer = measure('peer: sqlite3 -json', () => run(`${SQLITE} -json '${fx.db}' "${selects}" > '${peerJson}'`, [], { shell: true }), {
    before: () => rmSync(peerJson, { force: true }),
  });
  const archiveBefore = was('archive', old(fx.db, ['archive', '--output', join(dir, 'before.json')]), { before: () => rmSync(join(dir, 'before.json'), { force: true }) });
  pair('archive (everything, verified)', archiveRun, jsonPeer, `${fmtBytes(archiveBytes)} written and read back; peer ${fmtBytes(statSync(peerJson).size)}, no verify, no fsync`, archiveBefore, archiveBytes);
  rmSync(peerJson, { force: true });
  rmSync(join(dir, 'before.json'), { force: true });

  const gz = join(dir, 'all.json.gz');
  const gzPeer = join(dir, 'peer.json.gz');
  const gzRun = measure('ours: archive .gz', ours(fx.db, ['archive', '--output', gz]), { before: () => rmSync(gz, { force: true }) });
  const gzipPeer = measure('peer: sqlite3 -json | gzip -1', () => run(`set -o pipefail; ${SQLITE} -json '${fx.db}' "${selects}" | gzip -1 > '${gzPeer}'`, [], { shell: true }), {
    before: () => rmSync(gzPeer, { force: true }),
  });
  const gzBefore = was('archive .gz', old(fx.db, ['archive', '--output', join(dir, 'before.json.gz')]), { before: () => rmSync(join(dir, 'before.json.gz'), { force: true }) });
  pair('archive .gz (everything, verified)', gzRun, gzipPeer, `${fmtBytes(statSync(gz).size)}; peer ${fmtBytes(statSync(gzPeer).size)}`, gzBefore, archiveBytes);
  rmSync(gzPeer, { force: true });
  rmSync(join(dir, 'before.json.gz'), { force: true });

  const target = join(dir, 'restored.db');
  const peerTarget = join(dir, 'peer-restored.db');
  const restoreRun = measure('ours: restore', ours(target, ['restore', archive]), { before: () => emptyDb(target) });
  const restorePeer = measure('peer: sqlite3 .dump | sqlite3', () => run(`set -o pipefail; ${SQLITE} '${fx.db}' .dump | ${SQLITE} '${peerTarget}'`, [], { shell: true }), {
    before: () => rmSync(peerTarget, { force: true }),
  });
  const restoreBefore = was('restore', old(target, ['restore', archive]), { before: () => emptyDb(target) });
  pair('restore (that archive, into an empty file)', restoreRun, restorePeer, 'peer copies the whole file, schema included', restoreBefore, archiveBytes);
  for (const path of [target, peerTarget]) for (const suffix of ['', '-wal', '-shm']) rmSync(path + suffix, { force: true });

  const copy = join(dir, 'copy.db');
  const retentionArgs = ['retention', '--max-size-mb', String(Math.round(statSync(fx.db).size / MB / 2)), '--apply', '--yes'];
  const dropArchives = () => rmSync(join(dir, 'xdg-data'), { recursive: true, force: true });
  const retentionRun = measure('ours: retention --apply', ours(copy, retentionArgs), { before: () => (copyDb(fx.db, copy), dropArchives()) });
  const retentionBefore = was('retention --apply', old(copy, retentionArgs), { before: () => (copyDb(fx.db, copy), dropArchives()) });
  pair('retention --apply (to half the file)', retentionRun, null, 'archive .gz, delete, vacuum', retentionBefore);

  const compactRun = measure('ours: compact --apply', ours(copy, ['compact', '--apply', '--yes']), { before: () => copyDb(fx.db, copy) });
  const compactBefore = was('compact --apply', old(copy, ['compact', '--apply', '--yes']), { before: () => copyDb(fx.db, copy) });
  pair('compact --apply', compactRun, null, 'superseded event snapshots dropped, then reclaimed', compactBefore);
  for (const suffix of ['', '-wal', '-shm']) rmSync(copy + suffix, { force: true });

  if (PG) {
    const reset = () => run('psql', [PG, '-qc', 'DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;']);
    const migrateRun = measure('ours: migrate --to postgres', ours(fx.db, ['migrate', '--to', PG, '--no-progress']), { before: reset });
    const migrateBefore = was('migrate --to postgres', old(fx.db, ['migrate', '--to', PG, '--no-progress']), { before: reset });
    const pgloaderRun = existsSync('/usr/bin/pgloader') ? measure('peer: pgloader', () => run('pgloader', [fx.db, PG]), { before: reset }) : null;
    pair('migrate --to postgres', migrateRun, pgloaderRun, 'verified copy; peer copies every table unverified', migrateBefore);
    reset();
  }
  rmSync(archive, { force: true });
  rmSync(gz, { force: true });
  return { fx, rows };
}

export function writesMarkdown({ fx, rows }) {
  const { cpu, nproc, node } = machine();
  const withBefore = rows.some((r) => r.before);
  const body = rows.map((r) => [
    r.what,
    `${fmtMs(r.ours.ms)} (${fmtMs(r.ours.cpu)})`,
    r.bytes ? `${Math.round(r.bytes / MB / (r.ours.ms / 1000))} MB/s` : '-',
    fmtBytes(r.ours.rss),
    r.ours.heap === null ? '-' : fmtBytes(r.ours.heap),
    ...(withBefore ? [r.before ? `${fmtMs(r.before.ms)} (${fmtMs(r.before.cpu)}), ${fmtBytes(r.before.rss)}` : '-'] : []),
    r.peer ? `${fmtMs(r.peer.ms)} (${fmtMs(r.peer.cpu)})` : '-',
    r.peer ? fmtBytes(r.peer.rss) : '-',
    r.peer ? fmtRatio(r.peer.ms / r.ours.ms) : '-',
    r.note,
  ]);
  return (
    `Database ${fx.key}: ${fmtBytes(fx.summary.fileBytes)}, ${fx.summary.sessions} sessions, ${fx.summary.parts} parts, one ${fmtBytes(HUGE)} PDF ` +
    `(a ${fmtBytes((HUGE * 4) / 3)} value). Each run a fresh process; median of ${N}, peak RSS the largest of the runs. ${cpu}, ${nproc} cores ` +
    `(shared with other work, so wall times move with its load; cpu is user + system of the whole process tree), Node ${node}. ` +
    `MB/s is archive bytes over wall time.\n\n` +
    table(['command', 'ours wall (cpu)', 'ours MB/s', 'ours peak RSS', 'ours peak heap', ...(withBefore ? ['before: wall (cpu), peak RSS'] : []), 'peer wall (cpu)', 'peer peak RSS', 'wall vs peer', 'note'], body)
  );
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${writesMarkdown(await writes())}\n`);
}
