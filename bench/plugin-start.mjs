// OpenCode's start with and without the session-keeper plugin: whole-process time of
// `opencode run` with a trivial prompt, in paired runs (the order inside each pair alternates),
// on a copy of the data folder the real OpenCode 1.18.33 wrote for the tests, against a local
// scripted model. The plugin's background check is waited for after each run (its time is printed
// apart), so it never runs beside the next measured process.
//
// Needs the real OpenCode and its cached data folder under .cache/opencode/1.18.33/ (any
// test/opencode test installs and builds them). BENCH_PLUGIN_PAIRS=N (default 10).
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { CLI, fmtMs, fmtRatio, log, machine, median, ROOT, scratchDir, stats, table } from './lib.mjs';

const VERSION = '1.18.33';
const CACHE = join(ROOT, '.cache', 'opencode', VERSION);
const BIN = join(CACHE, 'install', 'node_modules', `opencode-${process.platform}-${process.arch}`, 'bin', 'opencode');
const PAIRS = Number(process.env.BENCH_PLUGIN_PAIRS ?? 10);

function cachedData() {
  const name = existsSync(CACHE) ? readdirSync(CACHE).find((n) => n.startsWith('data-') && !n.endsWith('.lock')) : undefined;
  if (!existsSync(BIN) || name === undefined) {
    throw new Error(`no OpenCode ${VERSION} or no cached data folder in ${CACHE}: run one test/opencode test first (npx vitest run test/opencode/harness.test.ts)`);
  }
  return join(CACHE, name);
}

/** The smallest OpenAI-compatible chat endpoint OpenCode needs: models, and a streamed one-line answer. */
async function trivialModel() {
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ object: 'list', data: [{ id: 'scripted-1', object: 'model', created: 0, owned_by: 'scripted' }] }));
        return;
      }
      const chunk = (delta, finish) => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'scripted-1', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(chunk({ role: 'assistant', content: '' }, null));
      res.write(chunk({ content: 'Hi.' }, null));
      res.write(chunk({}, 'stop'));
      res.end('data: [DONE]\n\n');
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { baseURL: `http://127.0.0.1:${server.address().port}/v1`, close: () => new Promise((r) => server.close(r)) };
}

function writeConfig(configHome, baseURL) {
  const model = { name: 'Scripted', attachment: true, tool_call: true, limit: { context: 200_000, output: 8_000 } };
  const config = {
    $schema: 'https://opencode.ai/config.json',
    model: 'scripted/scripted-1',
    small_model: 'scripted/scripted-1',
    autoupdate: false,
    share: 'disabled',
    permission: { '*': 'allow' },
    provider: { scripted: { npm: '@ai-sdk/openai-compatible', name: 'Scripted', options: { baseURL, apiKey: 'k' }, models: { 'scripted-1': model } } },
  };
  mkdirSync(join(configHome, 'opencode'), { recursive: true });
  writeFileSync(join(configHome, 'opencode', 'opencode.json'), `${JSON.stringify(config, null, 2)}\n`);
}

function timedRun(env, cwd) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(BIN, ['run', 'Say hi.'], { cwd, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c) => (err += c));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(performance.now() - started) : reject(new Error(`opencode run exited ${code}: ${err.slice(-400)}`))));
  });
}

async function main() {
  const source = cachedData();
  const root = scratchDir('plugin-start');
  log(`copying ${source}`);
  cpSync(source, root, { recursive: true, filter: (p) => !p.includes(`${join('state', 'opencode', 'locks')}`) });
  const home = join(root, 'home');
  const env = {
    PATH: process.env.PATH,
    HOME: home,
    XDG_CONFIG_HOME: join(home, '.config'),
    XDG_DATA_HOME: join(home, '.local', 'share'),
    XDG_CACHE_HOME: join(home, '.cache'),
    XDG_STATE_HOME: join(home, '.local', 'state'),
    OPENCODE_DISABLE_AUTOUPDATE: '1',
    OPENCODE_DISABLE_MODELS_FETCH: '1',
    OPENCODE_DISABLE_SHARE: '1',
  };
  const model = await trivialModel();
  writeConfig(env.XDG_CONFIG_HOME, model.baseURL);
  const cwd = join(root, 'project');
  const installed = join(env.XDG_CONFIG_HOME, 'opencode', 'plugins', 'session-keeper.js');
  const aside = join(root, 'session-keeper.js.off');
  const install = spawn(process.execPath, [CLI, 'install-plugin'], { env: { ...process.env, ...env }, stdio: 'ignore' });
  await new Promise((r) => install.once('close', r));
  if (!existsSync(installed)) throw new Error('install-plugin wrote no loader');
  renameSync(installed, aside);
  const reports = join(env.XDG_DATA_HOME, 'session-keeper', 'plugin', 'delivered');
  const pending = join(env.XDG_DATA_HOME, 'session-keeper', 'plugin', 'reports');
  const reportCount = () => [reports, pending].reduce((n, d) => n + (existsSync(d) ? readdirSync(d).filter((f) => /^\d{13}-\d+-\d+\.json$/.test(f)).length : 0), 0);
  const checkTimes = [];

  const once = async (withPlugin) => {
    if (withPlugin) renameSync(aside, installed);
    const before = reportCount();
    try {
      return await timedRun(env, cwd);
    } finally {
      if (withPlugin) {
        renameSync(installed, aside);
        // The background check: waited for here, so it never overlaps the next measured run.
        const deadline = Date.now() + 60_000;
        while (reportCount() === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        const newest = [reports, pending].flatMap((d) => (existsSync(d) ? readdirSync(d).map((f) => join(d, f)) : [])).filter((f) => f.endsWith('.json')).sort((a, b) => a.split('/').at(-1).localeCompare(b.split('/').at(-1))).at(-1);
        if (newest) checkTimes.push(JSON.parse(readFileSync(newest, 'utf8')).elapsedMs ?? NaN);
      }
    }
  };

  log('warm-up: one run each (OpenCode installs the provider package and its plugin dependencies on first use)');
  await once(false);
  await once(true);
  checkTimes.length = 0;
  const without = [];
  const withPlugin = [];
  const ratios = [];
  for (let i = 0; i < PAIRS; i++) {
    const order = i % 2 === 0 ? [false, true] : [true, false];
    const pair = {};
    for (const w of order) pair[w] = await once(w);
    without.push(pair[false]);
    withPlugin.push(pair[true]);
    ratios.push(pair[true] / pair[false]);
    log(`pair ${i + 1}/${PAIRS}: without ${fmtMs(pair[false])}, with ${fmtMs(pair[true])}`);
  }
  await model.close();
  rmSync(root, { recursive: true, force: true });

  const a = stats(without);
  const b = stats(withPlugin);
  const m = machine();
  console.log(`\n## OpenCode start with the plugin (${new Date().toISOString().slice(0, 10)}, ${m.cpu}, ${m.nproc} cores, Node ${m.node}, OpenCode ${VERSION})\n`);
  console.log(
    table(
      ['opencode run "Say hi."', 'median', 'p90', 'min', 'max', 'runs'],
      [
        ['without the plugin', fmtMs(a.median), fmtMs(a.p90), fmtMs(a.min), fmtMs(a.max), a.n],
        ['with the plugin', fmtMs(b.median), fmtMs(b.p90), fmtMs(b.min), fmtMs(b.max), b.n],
      ],
    ),
  );
  const sorted = [...ratios].sort((x, y) => x - y);
  console.log(`\nwith / without, median of the ${PAIRS} paired ratios: ${fmtRatio(median(ratios))} (lowest ${fmtRatio(sorted[0])}, highest ${fmtRatio(sorted.at(-1))}); ratio of medians ${fmtRatio(b.median / a.median)}`);
  console.log(`the background startup check (in its own Node process, after OpenCode's start): median ${fmtMs(median(checkTimes))} inside enforceAtStartup`);
  const inits = [];
  for (let i = 0; i < 10; i++) inits.push(pluginInitMs());
  console.log(`the plugin's own share of the start (importing the module and calling it, in a fresh Node process; OpenCode runs it in Bun): median ${fmtMs(median(inits))}`);
}

/** Import + the plugin call until it returns its hooks, timed in a fresh process (the background work is scheduled after). */
function pluginInitMs() {
  const entry = join(ROOT, 'dist', 'plugin', 'opencode-plugin.js');
  const script = `const t = performance.now();
const { default: plugin } = await import(${JSON.stringify(`file://${entry}`)});
const client = { app: { log: async () => true }, tui: { showToast: async () => true } };
await plugin({ client, directory: process.cwd(), worktree: process.cwd() }, { startup: false, recheckMinutes: 0 });
process.stdout.write(String(performance.now() - t));
process.exit(0);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  return Number(r.stdout);
}

main().catch((error) => {
  console.error(`bench/plugin-start: ${error.message}`);
  process.exit(1);
});
