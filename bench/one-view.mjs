// One view: a page of a session the file no longer holds, read from the server through
// `showThrough` (the file asked first, then the server), with a server reader opened for each page
// (the CLI) and with one kept open between pages (the utility's handler), beside the same page read
// from the file. Also the session browser's facts (every root with its size and project) from the
// file and from the server, a reader opened each time and one kept.
//   nice -n 10 node bench/one-view.mjs     (after `npm run build`; PostgreSQL on 127.0.0.1:5432)
// Env: BENCH_PG (admin URL), BENCH_ONE_VIEW_MB (fixture size, default 20), BENCH_N (samples, default 20).
// Prints a table; wall and this process's cpu (the PostgreSQL server's own cpu is not counted).
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, fixture, fmtBytes, fmtMs, fmtRatio, freshPgDb, log, machine, MB, median, pgAdmin, ROOT, scratchDir, table } from './lib.mjs';

const SIZE_MB = Number(process.env.BENCH_ONE_VIEW_MB ?? 20);
const N = Number(process.env.BENCH_N ?? 20);

const url = new URL(await freshPgDb('sk_bench_one_view'));

const { db: source, summary } = await fixture({ label: `one-view-${SIZE_MB}MB`, targetBytes: SIZE_MB * MB });
const scratch = scratchDir('one-view');
const db = join(scratch, 'opencode.db');
copyFileSync(source, db);
const config = join(scratch, 'config');
mkdirSync(join(config, 'opencode'), { recursive: true });
writeFileSync(join(config, 'opencode', 'opencode.json'), JSON.stringify({ session: { storage: 'postgres', connectionString: url.toString() } }));
const env = { ...process.env, XDG_CONFIG_HOME: config, XDG_DATA_HOME: join(scratch, 'data'), XDG_CACHE_HOME: join(scratch, 'cache'), OPENCODE_DB: '' };
log(`fixture ${fmtBytes(summary.fileBytes)}: ${summary.sessions} sessions, ${summary.messages} messages; mirroring it into ${url.pathname.slice(1)} ...`);
const sync = spawnSync(process.execPath, [CLI, '--db', db, 'sync', '--once'], { env, encoding: 'utf8' });
if (sync.status !== 0) throw new Error(`sync failed: ${sync.stderr}`);

// The childless root with the most messages: its first page of 20, from the file (copy kept) and from the server.
const file = new Database(db);
file.pragma('foreign_keys = ON');
const victim = file
  .prepare(
    `SELECT s.id, (SELECT count(*) FROM message m WHERE m.session_id = s.id) AS messages FROM session s
     WHERE s.parent_id IS NULL AND s.id NOT IN (SELECT parent_id FROM session WHERE parent_id IS NOT NULL) ORDER BY messages DESC, s.id LIMIT 1`,
  )
  .get();
const withVictim = join(scratch, 'with-session.db');
file.exec(`VACUUM INTO '${withVictim}'`);
file.prepare('DELETE FROM session WHERE id = ?').run(victim.id);
file.close();

const { SessionService } = await import(join(ROOT, 'dist', 'main', 'service.js'));
const { showThrough, openForEach, KeptServer } = await import(join(ROOT, 'dist', 'main', 'one-view.js'));
const cacheDir = join(scratch, 'attachments');
// Pages are not cached (1 byte of page cache), so every sample reads.
const local = await SessionService.open({ db: withVictim, cacheDir, inline: true, cacheBytes: 1 });
const evicted = await SessionService.open({ db, cacheDir, inline: true, cacheBytes: 1 });
const kept = new KeptServer(url.toString());
const each = openForEach(url.toString());

async function measure(label, fn) {
  await fn();
  const walls = [];
  const cpus = [];
  for (let i = 0; i < N; i++) {
    const cpu = process.cpuUsage();
    const start = performance.now();
    await fn();
    walls.push(performance.now() - start);
    const used = process.cpuUsage(cpu);
    cpus.push((used.user + used.system) / 1000);
  }
  return { label, wall: median(walls), cpu: median(cpus) };
}

const page = { limit: 20, cursor: null };
const facts = (reader) => Promise.all([reader.retentionFacts(true), reader.sessionProjects?.()]);
const rows = [
  await measure('page of 20 from the file (peer)', () => local.showSession(victim.id, page)),
  await measure('page of 20 from the server, a reader per page (CLI)', () => showThrough(evicted, each, victim.id, page)),
  await measure('page of 20 from the server, reader kept (utility)', () => showThrough(evicted, kept, victim.id, page)),
  await measure('browser facts from the file (peer)', () => openForEach(db).use(facts)),
  await measure('browser facts from the server, a reader each time', () => each.use(facts)),
  await measure('browser facts from the server, reader kept (utility)', () => kept.use(facts)),
];
await local.close();
await evicted.close();
await kept.close();
await pgAdmin('DROP DATABASE IF EXISTS sk_bench_one_view WITH (FORCE)');

const peers = [rows[0], rows[0], rows[0], rows[3], rows[3], rows[3]];
const m = machine();
process.stdout.write(`\n### One view (${SIZE_MB} MB fixture, session of ${victim.messages} messages; median of ${N}; ${m.nproc} cores, Node ${m.node})\n\n`);
process.stdout.write(
  `${table(
    ['read', 'wall', 'cpu', 'wall vs peer', 'cpu vs peer'],
    rows.map((r, i) => [r.label, fmtMs(r.wall), fmtMs(r.cpu), fmtRatio(r.wall / peers[i].wall), fmtRatio(r.cpu / peers[i].cpu)]),
  )}\n`,
);
