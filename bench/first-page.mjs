// Benchmark 1: time to the first page of 50 sessions against database size.
//   ours, in-process : openFileReader(db) + listSessions({limit: 50}), fresh store each run
//   ours, service    : SessionService.open + listSessions (pool start included, if the service starts one)
//   ours, CLI cold   : a fresh `node dist/bin/session-keeper.js --db X --json list --limit 50` (whole process)
//   naive loader     : bench/naive-first-page.mjs in a child with the default heap (whole tables)
//   sqlite3 CLI      : the bare ORDER BY time_updated DESC LIMIT 50 query, a floor
// Page cache: warm (the files were just generated or read; dropping caches needs root).
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CLI, ROOT, benchSizes, fixture, fmtBytes, fmtMs, fmtRatio, log, run, sample, scratchDir, sqlite, stats, table } from './lib.mjs';

const LIMIT = 50;
const GOAL_MS = 20;
const N_INPROC = Number(process.env.BENCH_N_INPROC ?? 30);
const N_SERVICE = Number(process.env.BENCH_N_SERVICE ?? 5);
const N_CLI = Number(process.env.BENCH_N_CLI ?? 5);
const N_SQLITE = Number(process.env.BENCH_N_SQLITE ?? 10);
const NAIVE_TIMEOUT_MS = Number(process.env.BENCH_NAIVE_TIMEOUT_MS ?? 240_000);
const FLOOR_SQL = `SELECT id, parent_id, title, time_created, time_updated FROM session ORDER BY time_updated DESC, id DESC LIMIT ${LIMIT}`;

export async function firstPage({ sizes = benchSizes() } = {}) {
  const { openFileReader } = await import('../dist/store/open-store.js');
  const { SessionService } = await import('../dist/main/service.js');
  const Database = (await import('better-sqlite3')).default;
  const results = [];
  for (const size of sizes) {
    const fx = await fixture({ label: size.label, targetBytes: size.bytes });
    const { db } = fx;
    log(`first page: ${fx.key} (${fmtBytes(fx.summary.fileBytes)})`);
    const cacheDir = scratchDir(`first-page-${size.label}`);

    // sqlite3 CLI floor (process start included: that is what a shell user pays)
    sqlite(db, FLOOR_SQL);
    const floor = stats(await sample(N_SQLITE, () => sqlite(db, FLOOR_SQL)));

    // in-process: open + first page, a fresh store each time; first sample kept apart
    let firstCall;
    const inproc = await sample(N_INPROC, async (i) => {
      const start = performance.now();
      const store = openFileReader(db);
      const page = await store.listSessions({ limit: LIMIT });
      if (page.sessions.length !== LIMIT) throw new Error(`expected ${LIMIT} sessions, got ${page.sessions.length}`);
      await store.close();
      if (i === 0) firstCall = performance.now() - start;
    });
    // where the in-process time goes: open alone, and the page query alone on an open store
    const openOnly = stats(
      await sample(N_INPROC, async () => {
        const store = openFileReader(db);
        await store.close();
      }),
    );
    const store = openFileReader(db);
    const queryOnly = stats(await sample(N_INPROC, () => store.listSessions({ limit: LIMIT }), { warmup: 1 }));
    await store.close();

    // the first page in a fresh process (cold JIT, addon load, new connection), import excluded
    const firstCalls = [];
    for (let i = 0; i < N_CLI; i++) {
      const r = run('node', [join(ROOT, 'bench', 'first-call.mjs'), db, String(LIMIT)]);
      if (r.status !== 0) throw new Error(`first-call failed: ${r.stderr}`);
      firstCalls.push(JSON.parse(r.stdout.trim()));
    }
    const firstInProcess = stats(firstCalls.map((c) => c.firstMs));
    const preloaded = [];
    for (let i = 0; i < N_CLI; i++) {
      const r = run('node', [join(ROOT, 'bench', 'first-call.mjs'), db, String(LIMIT), '--preload-addon']);
      if (r.status !== 0) throw new Error(`first-call failed: ${r.stderr}`);
      preloaded.push(JSON.parse(r.stdout.trim()));
    }
    const firstAfterAddon = stats(preloaded.map((c) => c.firstMs));
    const addonLoad = stats(preloaded.map((c) => c.addonMs));

    // where a fresh store's time goes: the two SQL statements of listSessions on a new connection
    // (same SQL as src/store/sqlite/sqlite-reader.ts; the session table has no time_updated index)
    const profile = profileListSql(Database, db);

    // service: pool start + first page
    const service = stats(
      await sample(N_SERVICE, async () => {
        const s = await SessionService.open({ db, cacheDir });
        const page = await s.listSessions({ limit: LIMIT });
        if (page.sessions.length !== LIMIT) throw new Error('short page from the service');
        await s.close();
      }),
    );

    // CLI cold: a whole fresh process
    const cliRuns = [];
    let cliRss = 0;
    for (let i = 0; i < N_CLI + 1; i++) {
      const r = run('node', [CLI, '--db', db, '--cache-dir', cacheDir, '--json', 'list', '--limit', String(LIMIT)]);
      if (r.status !== 0) throw new Error(`CLI list failed: ${r.stderr}`);
      if (JSON.parse(r.stdout).sessions.length !== LIMIT) throw new Error('CLI printed a short page');
      if (i > 0) cliRuns.push(r.ms); // the first run warms the file cache for node_modules
      cliRss = Math.max(cliRss, r.maxRssKB ?? 0);
    }
    // Node's own start, for scale
    const nodeStart = stats(await sample(3, () => run('node', ['-e', '0'])));

    // naive loader: once (it is slow); default heap
    log(`first page: naive loader on ${fx.key} ...`);
    const naiveRun = run('node', [join(ROOT, 'bench', 'naive-first-page.mjs'), db, String(LIMIT)], { timeoutMs: NAIVE_TIMEOUT_MS });
    let naive;
    if (naiveRun.status === 0) {
      const out = JSON.parse(naiveRun.stdout.trim().split('\n').pop());
      naive = { ok: true, ms: naiveRun.ms, rssKB: naiveRun.maxRssKB, heapUsed: out.heapUsed, heapLimit: out.heapLimit };
    } else {
      const reason = /heap out of memory|Reached heap limit|Invalid string length|ERR_STRING_TOO_LONG|Cannot create a string/i.exec(naiveRun.stderr)?.[0] ??
        (naiveRun.timedOut ? `no page within the ${fmtMs(NAIVE_TIMEOUT_MS)} timeout` : naiveRun.signal ? `signal ${naiveRun.signal}` : `exit ${naiveRun.status}`);
      naive = { ok: false, timedOut: naiveRun.timedOut, ms: naiveRun.ms, rssKB: naiveRun.maxRssKB, reason: naiveRun.signal && !reason.startsWith("signal") ? `${reason}, signal ${naiveRun.signal}` : reason };
    }

    const result = {
      size: size.label,
      fileBytes: fx.summary.fileBytes,
      sessions: fx.summary.sessions,
      parts: fx.summary.parts,
      inproc: stats(inproc),
      inprocFirst: firstCall,
      firstInProcess,
      firstAfterAddon,
      addonLoad,
      profile,
      openOnly,
      queryOnly,
      service,
      cli: stats(cliRuns),
      cliRssKB: cliRss,
      nodeStart,
      naive,
      floor,
    };
    results.push(result);
    log(
      `first page ${size.label}: in-process ${fmtMs(result.inproc.median)} (open ${fmtMs(openOnly.median)}, query ${fmtMs(queryOnly.median)}), ` +
        `service ${fmtMs(service.median)}, CLI ${fmtMs(result.cli.median)}, naive ${naive.ok ? fmtMs(naive.ms) : `died (${naive.reason}) after ${fmtMs(naive.ms)}`}, sqlite3 ${fmtMs(floor.median)}`,
    );
  }
  return results;
}

const PAGE_SQL = `SELECT id, parent_id AS parentId, title, time_created AS timeCreated, time_updated AS timeUpdated, time_archived AS timeArchived
  FROM session ORDER BY time_updated DESC, id DESC LIMIT ${LIMIT + 1}`;
const BYTES_SQL = `SELECT ids.value AS id,
  coalesce((SELECT sum(octet_length(data)) FROM message WHERE session_id = ids.value), 0) +
  coalesce((SELECT sum(octet_length(data)) FROM part WHERE session_id = ids.value), 0) AS bytes
  FROM json_each(?) AS ids`;

/** Median ms of each listSessions statement on a fresh connection, and on a warm one. */
function profileListSql(Database, path) {
  const ids = (() => {
    const db = new Database(path, { readonly: true });
    const rows = db.prepare(PAGE_SQL).all().slice(0, LIMIT).map((r) => r.id);
    db.close();
    return JSON.stringify(rows);
  })();
  const time = (fn) => {
    const xs = [];
    for (let i = 0; i < 15; i++) {
      const start = performance.now();
      fn();
      xs.push(performance.now() - start);
    }
    return stats(xs).median;
  };
  const fresh = (sql, ...args) =>
    time(() => {
      const db = new Database(path, { readonly: true });
      db.prepare(sql).all(...args);
      db.close();
    });
  const warmDb = new Database(path, { readonly: true });
  const warm = (sql, ...args) => time(() => warmDb.prepare(sql).all(...args));
  const result = {
    freshPage: fresh(PAGE_SQL),
    freshBytes: fresh(BYTES_SQL, ids),
    warmPage: warm(PAGE_SQL),
    warmBytes: warm(BYTES_SQL, ids),
    sessionPages: warmDb.prepare("SELECT count(*) FROM dbstat WHERE name = 'session'").pluck().get(),
  };
  warmDb.close();
  return result;
}

export function firstPageMarkdown(results) {
  const main = table(
    [
      'db (target)',
      'file',
      'sessions / parts',
      'ours in-process: median (p90)',
      'ours service',
      'ours CLI cold',
      'naive loader (peak RSS)',
      'sqlite3 CLI floor',
      'naive / ours CLI',
      'ours CLI / sqlite3',
    ],
    results.map((r) => [
      r.size,
      fmtBytes(r.fileBytes),
      `${r.sessions} / ${r.parts}`,
      `**${fmtMs(r.inproc.median)}** (${fmtMs(r.inproc.p90)})`,
      fmtMs(r.service.median),
      fmtMs(r.cli.median),
      r.naive.ok
        ? `${fmtMs(r.naive.ms)} (${fmtBytes(r.naive.rssKB * 1024)})`
        : `**${r.naive.timedOut ? 'gave up' : 'died'}** after ${fmtMs(r.naive.ms)}: ${r.naive.reason} (${fmtBytes((r.naive.rssKB ?? 0) * 1024)})`,
      fmtMs(r.floor.median),
      r.naive.ok ? fmtRatio(r.naive.ms / r.cli.median) : `>${fmtRatio(r.naive.ms / r.cli.median)} (no page)`,
      fmtRatio(r.cli.median / r.floor.median),
    ]),
  );
  const detail = table(
    [
      'db',
      'first page in a fresh process',
      'same, addon preloaded (addon load)',
      'open only',
      'listSessions only (open store)',
      'fresh conn: session ORDER BY',
      'fresh conn: bytes of 50 sessions',
      'warm conn: ORDER BY / bytes',
      'session table pages',
      'node -e 0',
      'ours CLI peak RSS',
      `goal < ${GOAL_MS} ms in-process (median)`,
    ],
    results.map((r) => [
      r.size,
      `${fmtMs(r.firstInProcess.median)} (max ${fmtMs(r.firstInProcess.max)})`,
      `${fmtMs(r.firstAfterAddon.median)} (${fmtMs(r.addonLoad.median)})`,
      fmtMs(r.openOnly.median),
      fmtMs(r.queryOnly.median),
      fmtMs(r.profile.freshPage),
      fmtMs(r.profile.freshBytes),
      `${fmtMs(r.profile.warmPage)} / ${fmtMs(r.profile.warmBytes)}`,
      r.profile.sessionPages,
      fmtMs(r.nodeStart.median),
      fmtBytes(r.cliRssKB * 1024),
      r.inproc.median < GOAL_MS ? `met (${fmtMs(GOAL_MS - r.inproc.median)} to spare)` : `**missed** by ${fmtMs(r.inproc.median - GOAL_MS)}`,
    ]),
  );
  return `${main}\n\nBreakdown:\n\n${detail}`;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const results = await firstPage();
  process.stdout.write(`${firstPageMarkdown(results)}\n`);
}
