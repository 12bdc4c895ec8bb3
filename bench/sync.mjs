// The mirror (`sync --to`) into PostgreSQL: first full sync against pgloader on the same file, the
// mirror's lag under a writer adding a message every 100 ms, and the mirror's peak heap and RSS.
//   nice -n 10 node bench/sync.mjs     (after `npm run build`; PostgreSQL on 127.0.0.1:5432, pgloader installed)
// Env: BENCH_PG (admin URL), BENCH_SYNC_MB (fixture size, default 100), BENCH_LAG_SECONDS (default 30), RUNS (default 3).
// Figures are appended to bench/RESULTS.md. The fixture is cached under bench/.data/ (git-ignored).
import Database from 'better-sqlite3';
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, copyFileSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { CLI, fixture, fmtBytes, freshPgDb as freshDb, log, machine, MB, median, pgAdmin as admin, ROOT, scratchDir, table } from './lib.mjs';

const RUNS = Number(process.env.RUNS ?? 3);
const SIZE_MB = Number(process.env.BENCH_SYNC_MB ?? 100);
const LAG_SECONDS = Number(process.env.BENCH_LAG_SECONDS ?? 30);

if (process.argv[2] === '--child') {
  // One in-process first sync, the V8 heap sampled every 20 ms; peak RSS from the kernel.
  const { runSync } = await import(join(ROOT, 'dist', 'main', 'sync.js'));
  let peak = 0;
  const sample = () => (peak = Math.max(peak, process.memoryUsage().heapUsed));
  const timer = setInterval(sample, 20);
  const started = performance.now();
  const result = await runSync({ db: process.argv[3], to: process.argv[4], once: true, stateDir: process.argv[5], onStatus: sample });
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage();
  const cpu = (used.user + used.system) / 1e6;
  clearInterval(timer);
  sample();
  const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) * 1024;
  process.stdout.write(`${JSON.stringify({ seconds, cpu, heapPeak: peak, rssPeak: hwm, written: result.written, pending: result.status.pending })}\n`);
  process.exit(0);
}

const fmt = (n, d = 2) => n.toFixed(d);
const TICK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100);
/** CPU seconds of this process's finished children (pgloader), from the kernel. */
const childCpu = () => {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) / TICK;
};
/** CPU seconds of the local PostgreSQL server's processes so far (the server's side of either copy). */
const serverCpu = () => {
  let ticks = 0;
  for (const pid of spawnSync('pgrep', ['-x', 'postgres'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean)) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    } catch {
      // ended meanwhile
    }
  }
  return ticks / TICK;
};
const percentile = (xs, p) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length - 1) * p))];
};

const { db: source, summary } = await fixture({ label: `sync-${SIZE_MB}MB`, targetBytes: SIZE_MB * MB, hugeAttachmentBytes: 24 * MB });
const scratch = scratchDir('sync');
log(`fixture ${fmtBytes(summary.fileBytes)}: ${summary.sessions} sessions, ${summary.messages} messages, ${summary.parts} parts, ${summary.events} events`);

// ---- 1. first full sync vs pgloader -------------------------------------------------------------
const ours = [];
const loader = [];
let loaderFailures = 0;
const hasPgloader = spawnSync('pgloader', ['--version'], { encoding: 'utf8' }).status === 0;
for (let run = 0; run < RUNS; run++) {
  const url = await freshDb('sk_bench_sync');
  const stateDir = join(scratch, `state-${run}`);
  const serverBefore = serverCpu();
  const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', source, url, stateDir], { encoding: 'utf8', maxBuffer: 16 * MB });
  if (child.status !== 0) throw new Error(`sync failed: ${child.stderr}`);
  ours.push({ ...JSON.parse(child.stdout.trim().split('\n').pop()), serverCpu: serverCpu() - serverBefore });
  let seconds = Number.NaN;
  let cpu = Number.NaN;
  let plServer = Number.NaN;
  if (hasPgloader) {
    for (let attempt = 0; ; attempt++) {
      const target = await freshDb('sk_bench_pgloader');
      const started = performance.now();
      const [cpuBefore, plServerBefore] = [childCpu(), serverCpu()];
      const pl = spawnSync('pgloader', ['--quiet', `sqlite://${source}`, target], { encoding: 'utf8', maxBuffer: 64 * MB });
      seconds = (performance.now() - started) / 1000;
      [cpu, plServer] = [childCpu() - cpuBefore, serverCpu() - plServerBefore];
      if (pl.status === 0) break;
      loaderFailures++;
      log(`pgloader failed (${/Heap exhausted/.test(pl.stderr) ? 'heap exhausted' : `status ${pl.status}`}) after ${fmt(seconds, 1)} s`);
      if (attempt >= 3) throw new Error(`pgloader failed: ${pl.stderr.slice(-2000)}`);
    }
  }
  loader.push({ seconds, cpu, serverCpu: plServer });
  const o = ours.at(-1);
  log(`run ${run + 1}: first sync ${fmt(o.seconds)} s (cpu ${fmt(o.cpu)} s, server ${fmt(o.serverCpu)} s; ${o.written} sessions), pgloader ${fmt(seconds)} s (cpu ${fmt(cpu)} s, server ${fmt(plServer)} s)`);
}
await admin('DROP DATABASE IF EXISTS sk_bench_pgloader WITH (FORCE)');
const oursS = median(ours.map((r) => r.seconds));
const loaderS = median(loader.map((r) => r.seconds));
const oursCpu = median(ours.map((r) => r.cpu));
const oursServer = median(ours.map((r) => r.serverCpu));
const loaderCpu = median(loader.map((r) => r.cpu));
const loaderServer = median(loader.map((r) => r.serverCpu));

// ---- 2. lag under a writer adding a message every 100 ms ------------------------------------------
// A copy already mirrored (the last run's server and state): the mirror then follows the writer.
const lagDb = join(scratch, 'lag.db');
copyFileSync(source, lagDb);
const lagUrl = await freshDb('sk_bench_sync_lag');
const lagState = join(scratch, 'lag-cache', 'session-keeper', 'sync');
const first = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', lagDb, lagUrl, lagState], { encoding: 'utf8', maxBuffer: 16 * MB });
if (first.status !== 0) throw new Error(`sync failed: ${first.stderr}`);
// The same state folder as the first pass (its source id), where the CLI looks for it.
const mirror = spawn(process.execPath, [CLI, '--db', lagDb, 'sync', '--to', lagUrl, '--poll-ms', '100'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, XDG_CACHE_HOME: join(scratch, 'lag-cache') } });
let mirrorErr = '';
mirror.stderr.on('data', (d) => (mirrorErr += d.toString()));
const writer = new Database(lagDb);
writer.pragma('journal_mode = WAL');
writer.pragma('busy_timeout = 5000');
const session = writer.prepare('SELECT id FROM session WHERE parent_id IS NULL ORDER BY time_updated DESC LIMIT 1').pluck().get();
const insertMessage = writer.prepare('INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?, ?, ?, ?, ?)');
const insertPart = writer.prepare('INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?, ?, ?, ?, ?, ?)');
const touch = writer.prepare('UPDATE session SET time_updated = ? WHERE id = ?');
const committed = new Map();
const seen = new Map();
const client = new pg.Client({ connectionString: lagUrl });
await client.connect();
// Wait until the mirror is following (its first pass over a mirrored file writes nothing).
await new Promise((r) => setTimeout(r, 3000));
const end = Date.now() + LAG_SECONDS * 1000;
let n = 0;
const write = setInterval(() => {
  const now = Date.now();
  const id = `msg_bench${String(n++).padStart(8, '0')}`;
  writer.transaction(() => {
    insertMessage.run(id, session, now, now, JSON.stringify({ role: 'user', time: { created: now } }));
    insertPart.run(`prt_bench${id.slice(9)}`, id, session, now, now, JSON.stringify({ type: 'text', text: `message ${n}` }));
    touch.run(now, session);
  })();
  committed.set(id, Date.now());
}, 100);
while (Date.now() < end + 10_000) {
  const waiting = [...committed.keys()].filter((id) => !seen.has(id));
  if (waiting.length) {
    const { rows } = await client.query('SELECT id FROM sk_message WHERE id = ANY($1)', [waiting]);
    const t = Date.now();
    for (const r of rows) seen.set(r.id, t);
  }
  if (Date.now() >= end) clearInterval(write);
  if (Date.now() >= end && committed.size === seen.size) break;
  await new Promise((r) => setTimeout(r, 25));
}
clearInterval(write);
const status = readFileSync(`/proc/${mirror.pid}/status`, 'utf8');
const mirrorRss = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
mirror.kill('SIGTERM');
await client.end();
writer.close();
const lags = [...committed].filter(([id]) => seen.has(id)).map(([id, t]) => (seen.get(id) ?? t) - t);
const missing = committed.size - lags.length;
await admin('DROP DATABASE IF EXISTS sk_bench_sync WITH (FORCE)');
await admin('DROP DATABASE IF EXISTS sk_bench_sync_lag WITH (FORCE)');
rmSync(lagDb, { force: true });

const m = machine();
const pgVersion = (await admin('SHOW server_version')).rows[0].server_version;
const plVersion = hasPgloader ? spawnSync('pgloader', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0] : 'pgloader not installed';
const heapPeak = Math.max(...ours.map((r) => r.heapPeak));
const rssPeak = Math.max(...ours.map((r) => r.rssPeak));
const lines = [
  '',
  `## The mirror (\`sync --to\`) into PostgreSQL — ${new Date().toISOString().slice(0, 10)}`,
  '',
  `Machine: ${m.nproc} × ${m.cpu}, ${m.memory}; Node ${m.node}; PostgreSQL ${pgVersion} on 127.0.0.1; ${plVersion}. \`nice -n 10 node bench/sync.mjs\`. cpu: the copying process's user+system time; server: the PostgreSQL processes' during the run.`,
  `Source: generated ${SIZE_MB} MB fixture (${fmtBytes(summary.fileBytes)} file, ${summary.sessions} sessions, ${summary.messages} messages, ${summary.parts} parts, ${summary.events} events, one 24 MB PDF). First sync: median of ${RUNS} runs, each into a fresh database.`,
  '',
  table(
    ['what', 'ours', 'peer', 'ratio (peer / ours)', 'goal'],
    [
      ['first full sync of the file', `${fmt(oursS)} s wall, cpu ${fmt(oursCpu)} s + server ${fmt(oursServer)} s (sessions new to the server pipelined, verified in groups)`, `pgloader ${fmt(loaderS)} s wall, cpu ${fmt(loaderCpu)} s + server ${fmt(loaderServer)} s`, hasPgloader ? `${fmt(loaderS / oursS)}x` : 'n/a', `>= 1.5x: ${loaderS / oursS >= 1.5 ? 'met' : 'not met'}`],
      ['mirror lag, a message every 100 ms', `p50 ${lags.length ? percentile(lags, 0.5) : 'n/a'} ms, p99 ${lags.length ? percentile(lags, 0.99) : 'n/a'} ms, max ${lags.length ? Math.max(...lags) : 'n/a'} ms (${lags.length} messages${missing ? `, ${missing} never seen` : ''})`, '-', '-', `p99 < 5 s: ${lags.length && percentile(lags, 0.99) < 5000 && !missing ? 'met' : 'not met'}`],
      ['peak memory of the mirror', `first sync: heap ${fmtBytes(heapPeak)}, RSS ${fmtBytes(rssPeak)}; following the writer: RSS ${fmtBytes(mirrorRss)}`, '-', '-', `RSS < 300 MB: ${Math.max(rssPeak, mirrorRss) < 300 * MB ? 'met' : 'not met'}`],
    ],
  ),
  '',
  `Lag is from the writer's commit to the row being visible on the server (the mirror verifies each session's digest inside its transaction, before the commit), sampled every 25 ms. pgloader copies the tables as they are; the mirror also cuts every data: URL into content-addressed chunks, keeps a jsonb copy of each row, digests each session on both sides and records its state per source.${loaderFailures ? ` pgloader died ${loaderFailures} time(s) and was retried.` : ''}`,
];
appendFileSync(join(ROOT, 'bench', 'RESULTS.md'), `${lines.join('\n')}\n`);
process.stdout.write(`${lines.join('\n')}\n`);
if (mirrorErr && /error/i.test(mirrorErr)) log(`mirror said: ${mirrorErr.slice(-500)}`);
