// Shared helpers for the benchmarks: cached fixture databases, timing, statistics, tables.
// Everything generated lives under bench/.data/ (git-ignored).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const DATA = join(ROOT, 'bench', '.data');
export const CLI = join(ROOT, 'dist', 'bin', 'session-keeper.js');
export const MB = 1024 * 1024;
export const GB = 1024 * MB;
export const SEED = 1;

/** `100MB`, `1GB`, `3GB`, `1.5GB` -> bytes (binary multiples). */
export function parseSize(text) {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMG])B?\s*$/i.exec(text);
  if (!m) throw new Error(`bad size "${text}" (use e.g. 100MB, 1GB)`);
  return Math.round(Number(m[1]) * { K: 1024, M: MB, G: GB }[m[2].toUpperCase()]);
}

/** Sizes from BENCH_SIZES (default 100MB,1GB,3GB), as [{label, bytes}]. */
export function benchSizes() {
  const text = process.env.BENCH_SIZES ?? '100MB,1GB,3GB';
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((label) => ({ label: label.toUpperCase(), bytes: parseSize(label) }));
}

/**
 * A fixture database made by the project's own generator, cached under bench/.data/<key>/ keyed
 * by size, seed and huge attachment. Generated into a temp directory and renamed on success, so
 * an interrupted run never leaves a half-made database behind. Returns {db, dir, summary, cached, seconds}.
 */
export async function fixture({ label, targetBytes, seed = SEED, hugeAttachmentBytes, rootSessions }) {
  const key = `${label}-s${seed}${hugeAttachmentBytes ? `-huge${Math.round(hugeAttachmentBytes / MB)}MB` : ''}${rootSessions ? `-r${rootSessions}` : ''}`;
  const dir = join(DATA, key);
  const db = join(dir, 'opencode.db');
  const summaryFile = join(dir, 'summary.json');
  if (existsSync(summaryFile) && existsSync(db)) {
    return { db, dir, key, summary: JSON.parse(readFileSync(summaryFile, 'utf8')), cached: true, seconds: 0 };
  }
  const { generateFixture } = await import('../build/dev/test/fixtures/generate.js');
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  log(`generating ${key} (${fmtBytes(targetBytes)}) ...`);
  const start = performance.now();
  const summary = await generateFixture({
    path: join(tmp, 'opencode.db'),
    targetBytes,
    seed,
    ...(hugeAttachmentBytes ? { hugeAttachmentBytes } : {}),
    ...(rootSessions ? { rootSessions } : {}),
  });
  const seconds = (performance.now() - start) / 1000;
  // Fold the WAL in so the file is self-contained and its size is the real size.
  sqlite(join(tmp, 'opencode.db'), 'PRAGMA wal_checkpoint(TRUNCATE);');
  summary.fileBytes = statSync(join(tmp, 'opencode.db')).size;
  summary.path = db;
  summary.generateSeconds = seconds;
  writeFileSync(join(tmp, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  log(`generated ${key}: ${fmtBytes(summary.fileBytes)}, ${summary.sessions} sessions, ${summary.parts} parts in ${seconds.toFixed(1)} s`);
  return { db, dir, key, summary, cached: false, seconds };
}

/** Runs the sqlite3 CLI on `db` with `sql`; returns stdout (throws on failure). */
export function sqlite(db, sql, { json = false } = {}) {
  const args = json ? ['-json', db, sql] : [db, sql];
  const r = spawnSync('/usr/bin/sqlite3', args, { encoding: 'utf8', maxBuffer: 64 * MB });
  if (r.status !== 0) throw new Error(`sqlite3 failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/**
 * Runs a command under /usr/bin/time -v; returns {ms, status, signal, maxRssKB, stdout, stderr}.
 * `ms` is measured here (wall clock from spawn to exit), the RSS comes from time's report.
 */
export function run(cmd, args, { env, shell = false, input, timeoutMs = 600_000 } = {}) {
  const timeFile = join(DATA, `.time-${process.pid}.txt`);
  mkdirSync(DATA, { recursive: true });
  const argv = shell ? ['-v', '-o', timeFile, 'bash', '-c', cmd] : ['-v', '-o', timeFile, cmd, ...args];
  const start = performance.now();
  const r = spawnSync('/usr/bin/time', argv, {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    input,
    maxBuffer: 256 * MB,
    timeout: timeoutMs,
  });
  const ms = performance.now() - start;
  let report = '';
  try {
    report = readFileSync(timeFile, 'utf8');
    rmSync(timeFile, { force: true });
  } catch {
    // time did not write a report (killed by the timeout)
  }
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(report);
  const exit = /Exit status: (\d+)/.exec(report);
  const sig = /Command terminated by signal (\d+)/.exec(report);
  return {
    ms,
    // time reports "Exit status: 0" for a child killed by a signal: a signal is a failure
    status: sig ? 128 + Number(sig[1]) : exit ? Number(exit[1]) : r.status ?? 1,
    signal: sig ? Number(sig[1]) : r.signal ? r.signal : null,
    maxRssKB: rss ? Number(rss[1]) : null,
    timedOut: r.error?.code === 'ETIMEDOUT',
    stdout: r.stdout ?? '',
    stderr: r.stderr ?? '',
    report,
  };
}

/** Times an async or sync function `n` times (after `warmup` runs); returns the samples in ms. */
export async function sample(n, fn, { warmup = 0 } = {}) {
  for (let i = 0; i < warmup; i++) await fn(i);
  const times = [];
  for (let i = 0; i < n; i++) {
    const start = performance.now();
    await fn(i);
    times.push(performance.now() - start);
  }
  return times;
}

export function median(values) {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export function stats(values) {
  const s = [...values].sort((a, b) => a - b);
  const p90 = s[Math.min(s.length - 1, Math.ceil(s.length * 0.9) - 1)];
  return { median: median(s), p90, min: s[0], max: s[s.length - 1], n: s.length };
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return 'n/a';
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(1)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

export function fmtBytes(bytes) {
  if (bytes === null || bytes === undefined || Number.isNaN(bytes)) return 'n/a';
  if (bytes >= GB) return `${(bytes / GB).toFixed(2)} GB`;
  if (bytes >= MB) return `${(bytes / MB).toFixed(1)} MB`;
  return `${(bytes / 1024).toFixed(0)} KB`;
}

export function fmtRatio(x) {
  if (x === null || x === undefined || !Number.isFinite(x)) return 'n/a';
  return x >= 10 ? `${x.toFixed(0)}x` : `${x.toFixed(2)}x`;
}

/** A markdown table from a header row and rows of cells. */
export function table(header, rows) {
  const cells = [header, ...rows].map((r) => r.map((c) => String(c ?? '').replaceAll('|', '\\|')));
  const widths = header.map((_, i) => Math.max(3, ...cells.map((r) => r[i].length)));
  const line = (r) => `| ${r.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [line(cells[0]), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...cells.slice(1).map(line)].join('\n');
}

/** The machine, for the results file. */
export function machine() {
  const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  const model = /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1] ?? cpus()[0]?.model ?? 'unknown';
  const nproc = spawnSync('nproc', { encoding: 'utf8' }).stdout.trim() || String(cpus().length);
  const sqliteVersion = spawnSync('/usr/bin/sqlite3', ['--version'], { encoding: 'utf8' }).stdout.split(' ')[0];
  return { nproc, cpu: model.trim(), memory: fmtBytes(totalmem()), node: process.version, sqlite3: sqliteVersion };
}

export function log(message) {
  process.stderr.write(`[bench] ${message}\n`);
}

/** Writes `text` to a fresh file path under bench/.data/tmp and returns the directory. */
export function scratchDir(name) {
  const dir = join(DATA, 'tmp', name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** The largest heap (MB) --trace-gc reports a collection starting from, or null when none ran. */
export function heapFromTrace(stdout) {
  let peak = null;
  for (const match of stdout.matchAll(/(?:Scavenge|Mark-Compact|Mark-sweep|Minor Mark-Compact)[^\n]*?([\d.]+) \(([\d.]+)\) ->/g)) {
    peak = Math.max(peak ?? 0, Number(match[1]) * MB);
  }
  return peak;
}

/** User + system CPU of the whole run (children included), from /usr/bin/time's report, in ms. */
export function cpuOf(report) {
  const user = /User time \(seconds\): ([\d.]+)/.exec(report);
  const system = /System time \(seconds\): ([\d.]+)/.exec(report);
  return user && system ? (Number(user[1]) + Number(system[1])) * 1000 : null;
}

/** A command run `n` times (BENCH_N): median wall and cpu, the largest RSS and heap of the runs. */
export function measure(name, once, { before, n = 1 } = {}) {
  const times = [];
  const cpus = [];
  const rss = [];
  const heaps = [];
  for (let i = 0; i < n; i++) {
    before?.();
    const r = once();
    if (r.status !== 0) throw new Error(`${name} failed (${r.status}): ${r.stderr.slice(-400)}`);
    times.push(r.ms);
    const cpu = cpuOf(r.report);
    if (cpu !== null) cpus.push(cpu);
    rss.push((r.maxRssKB ?? 0) * 1024);
    const heap = r.heap ?? heapFromTrace(r.stdout);
    if (heap !== null) heaps.push(heap);
  }
  const result = { name, ms: median(times), cpu: cpus.length ? median(cpus) : null, rss: Math.max(...rss), heap: heaps.length ? Math.max(...heaps) : null };
  log(`${name}: ${fmtMs(result.ms)} (cpu ${fmtMs(result.cpu)}), ${fmtBytes(result.rss)} RSS, heap ${result.heap === null ? '-' : fmtBytes(result.heap)}`);
  return result;
}

/** PostgreSQL for the server benches: BENCH_PG is the admin URL (default the local `test` database). */
export const PG_ADMIN = process.env.BENCH_PG ?? 'postgres://postgres@127.0.0.1:5432/test';

/** One statement as the admin (or on `url`), on its own connection. */
export async function pgAdmin(sql, url = PG_ADMIN) {
  const pg = (await import('pg')).default;
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await c.query(sql);
  } finally {
    await c.end();
  }
}

/** The admin URL with another database name. */
export function pgUrl(name) {
  const u = new URL(PG_ADMIN);
  u.pathname = `/${name}`;
  return u.toString();
}

/** Drops and creates database `name` (its connections ended first); returns its URL. */
export async function freshPgDb(name) {
  await pgAdmin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await pgAdmin(`CREATE DATABASE ${name}`);
  return pgUrl(name);
}
