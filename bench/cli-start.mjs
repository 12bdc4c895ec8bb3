// Whole-process start of `session-keeper list --limit 50 --json` on the 100 MB fixture, beside
// `node -e 0` (Node starting and doing nothing) and `sqlite3` running the page's query, in
// alternating runs. Wall clock from spawn to exit; cpu (user + system) from this process's
// children's rusage (/proc/self/stat cutime + cstime), so nothing is added to the runs measured.
// NODE_EXTRA_CA_CERTS is removed from the children's environment: when set (as on some CI and
// cloud machines), every Node process parses that bundle of certificates at start (about 28 ms on a
// 2-core EPYC VM), which inflates `node -e 0` and flatters every ratio; BENCH_KEEP_ENV=1 keeps it.
// Usage: node bench/cli-start.mjs [--json]   (BENCH_N runs each, default 20; BENCH_BASE_CLI=<another
// build's dist/bin/session-keeper.js or dist/cli/main.js> adds that build's list as one more row, e.g. the commit before a change)
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, ROOT, fixture, fmtMs, fmtRatio, log, machine, MB, median, scratchDir, table } from './lib.mjs';

const N = Number(process.env.BENCH_N ?? 20);
const KEEP_ENV = process.env.BENCH_KEEP_ENV === '1';
const baseEnv = { ...process.env };
if (!KEEP_ENV) delete baseEnv.NODE_EXTRA_CA_CERTS;
const UNBUNDLED = join(ROOT, 'dist', 'cli', 'main.js');
const TICK_MS = 1000 / Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100);

/** Children's user + system time so far, in ms (fields 16 and 17 of /proc/self/stat, in clock ticks). */
function childCpuMs() {
  const fields = readFileSync('/proc/self/stat', 'utf8').replace(/^.*\) /, '').split(' ');
  // After the command name, field 3 is index 0: cutime is field 16, cstime field 17.
  return (Number(fields[13]) + Number(fields[14])) * TICK_MS;
}

function once(cmd, args, env, cwd = scratch) {
  const cpuBefore = childCpuMs();
  const start = performance.now();
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd, env: { ...baseEnv, ...env }, maxBuffer: 64 * MB });
  const ms = performance.now() - start;
  const cpu = childCpuMs() - cpuBefore;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr.slice(-400)}`);
  return { ms, cpu, stdout: r.stdout };
}

const { db, summary } = await fixture({ label: '100MB', targetBytes: 100 * MB });
const scratch = scratchDir('cli-start');
const noConfig = join(scratch, 'no-config');
const withConfig = join(scratch, 'with-config');
const otherConfig = join(scratch, 'other-config');
mkdirSync(noConfig, { recursive: true });
mkdirSync(join(otherConfig, 'opencode'), { recursive: true });
// OpenCode's own settings and no `session` block: parsed, nothing for the schema to check.
writeFileSync(join(otherConfig, 'opencode', 'opencode.json'), `${JSON.stringify({ $schema: 'https://opencode.ai/config.json', model: 'anthropic/claude-sonnet-4', theme: 'opencode' })}\n`);
mkdirSync(join(withConfig, 'opencode'), { recursive: true });
writeFileSync(join(withConfig, 'opencode', 'opencode.json'), `${JSON.stringify({ session: { maxSizeMB: 500 } })}\n`);
// No config file anywhere OpenCode looks: a private XDG_CONFIG_HOME, and the scratch folder as cwd.
const env = (configHome) => ({ XDG_CONFIG_HOME: configHome, XDG_CACHE_HOME: join(scratch, 'cache'), OPENCODE_CONFIG: '', OPENCODE_CONFIG_CONTENT: '' });
const query = 'SELECT id, parent_id, title, time_created, time_updated FROM session ORDER BY time_updated DESC, id DESC LIMIT 50';
const listArgs = [CLI, '--db', db, 'list', '--limit', '50', '--json'];
// The least a Node CLI on these libraries can do: load commander and better-sqlite3, run the query, print it.
const floorScript = `import 'commander'; import Database from 'better-sqlite3'; process.stdout.write(JSON.stringify(new Database(${JSON.stringify(db)}, { readonly: true }).prepare(${JSON.stringify(query)}).all()));`;

const runs = [
  { name: 'node -e 0', cmd: process.execPath, args: ['-e', '0'], env: env(noConfig) },
  { name: 'sqlite3 (the page query)', cmd: '/usr/bin/sqlite3', args: ['-json', db, query], env: env(noConfig) },
  { name: 'floor: commander + better-sqlite3 + the query', cmd: process.execPath, args: ['--input-type=module', '-e', floorScript], env: env(noConfig), cwd: ROOT },
  { name: 'ours: list --limit 50 --json', cmd: process.execPath, args: listArgs, env: env(noConfig) },
  { name: 'ours: same, a config without session settings', cmd: process.execPath, args: listArgs, env: env(otherConfig) },
  { name: 'ours: same, a config with session settings', cmd: process.execPath, args: listArgs, env: env(withConfig) },
  // The same program from tsc's output, file by file: what the bundle saves.
  { name: 'unbundled (dist/cli/main.js): list', cmd: process.execPath, args: [UNBUNDLED, ...listArgs.slice(1)], env: env(noConfig) },
  { name: 'unbundled: a config with session settings', cmd: process.execPath, args: [UNBUNDLED, ...listArgs.slice(1)], env: env(withConfig) },
  ...(process.env.BENCH_BASE_CLI ? [{ name: `base: list (${process.env.BENCH_BASE_CLI})`, cmd: process.execPath, args: [process.env.BENCH_BASE_CLI, ...listArgs.slice(1)], env: env(noConfig) }] : []),
];
const samples = new Map(runs.map((r) => [r.name, { ms: [], cpu: [] }]));

// One warm-up each (page cache, the native addon's file), then N rounds, each command once per round.
for (const r of runs) once(r.cmd, r.args, r.env, r.cwd);
const page = JSON.parse(once(process.execPath, listArgs, env(noConfig)).stdout);
if (page.sessions.length !== 50) throw new Error(`short page: ${page.sessions.length}`);
for (let i = 0; i < N; i++) {
  for (const r of runs) {
    const { ms, cpu } = once(r.cmd, r.args, r.env, r.cwd);
    samples.get(r.name).ms.push(ms);
    samples.get(r.name).cpu.push(cpu);
  }
}

const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;
const results = runs.map((r) => {
  const s = samples.get(r.name);
  return { name: r.name, wallMs: median(s.ms), cpuMs: mean(s.cpu), cpuMedianMs: median(s.cpu) };
});
const nodeRun = results[0];
const ours = results.find((r) => r.name.startsWith('ours: list'));
const rows = results.map((r) => [r.name, fmtMs(r.wallMs), fmtMs(r.cpuMs), fmtRatio(r.wallMs / nodeRun.wallMs), fmtRatio(r.cpuMs / nodeRun.cpuMs)]);
const loadavg = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

if (process.argv.includes('--json')) {
  process.stdout.write(`${JSON.stringify({ n: N, db, fileBytes: summary.fileBytes, sessions: summary.sessions, loadavg, keptEnv: KEEP_ENV, machine: machine(), results })}\n`);
} else {
  log(`${N} alternating runs each on ${db} (${(summary.fileBytes / MB).toFixed(1)} MB, ${summary.sessions} sessions); load average ${loadavg}; ${KEEP_ENV ? `environment as is (NODE_EXTRA_CA_CERTS ${process.env.NODE_EXTRA_CA_CERTS ? 'set' : 'unset'})` : 'NODE_EXTRA_CA_CERTS unset'}`);
  process.stdout.write(`${table(['run', 'median wall', 'cpu (mean)', 'wall / node -e 0', 'cpu / node -e 0'], rows)}\n\n`);
  process.stdout.write(`goal: list under 1.5x node -e 0 (whole process): ${ours.wallMs / nodeRun.wallMs < 1.5 ? 'met' : 'not met'} by wall (${fmtRatio(ours.wallMs / nodeRun.wallMs)}), ${ours.cpuMs / nodeRun.cpuMs < 1.5 ? 'met' : 'not met'} by cpu (${fmtRatio(ours.cpuMs / nodeRun.cpuMs)}); list / sqlite3: ${fmtRatio(ours.wallMs / results[1].wallMs)} by wall\n`);
}
