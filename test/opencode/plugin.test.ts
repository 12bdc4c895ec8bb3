/**
 * The OpenCode plugin inside the real OpenCode 1.18.33: installed with `session-keeper
 * install-plugin`, it runs the startup check in the background at each `opencode run`. Over a
 * size threshold with a `maxSessions` policy, the oldest sessions go (archived first, the archive
 * holding every one of them), the warning is shown once (a TUI toast OpenCode publishes, and a
 * line in OpenCode's log) and again only when another threshold is crossed, and the session just
 * run stays whole. Without Node on PATH, with a broken `session` block, and with the database
 * locked by another session-keeper, OpenCode answers as usual and its log has one line from us.
 */
import Database from 'better-sqlite3';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/env.js';
import { exportSession, OPENCODE_DATA_TIMEOUT_MS, realOpenCodeData, runOpenCode, type OpenCodeData } from '../helpers/opencode.ts';

const DAY_MS = 24 * 60 * 60 * 1000;
const MB = 1024 * 1024;

/** A second plugin of the test's own: every toast OpenCode publishes on its bus, one JSON line each. */
const TOAST_OBSERVER = (file: string): string => `import { appendFileSync } from 'node:fs';
export default async () => ({
  event: async ({ event }) => {
    if (event.type === 'tui.toast.show') appendFileSync(${JSON.stringify(file)}, JSON.stringify(event.properties) + '\\n');
  },
});
`;

/**
 * In front of the harness's scripted model: a prompt with `[[call NAME]]` gets one call of the
 * offered tool NAME (no arguments) before the scripted model answers; everything else is passed on.
 */
async function toolCallingModel(upstream: string): Promise<{ baseURL: string; close(): Promise<void> }> {
  const target = new URL(upstream);
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      type Body = { messages?: { role: string; content?: unknown }[]; tools?: { function: { name: string } }[] };
      let body: Body = {};
      try {
        body = JSON.parse(raw.toString('utf8')) as Body;
      } catch {
        // not JSON (a GET): passed on
      }
      const messages = body.messages ?? [];
      const lastUser = messages.map((m) => m.role).lastIndexOf('user');
      const text = JSON.stringify(messages[lastUser]?.content ?? '');
      const wanted = /\[\[call (\w+)\]\]/.exec(text)?.[1];
      const answered = messages.slice(lastUser + 1).some((m) => m.role === 'tool');
      if (req.method === 'POST' && wanted !== undefined && !answered && (body.tools ?? []).some((t) => t.function.name === wanted)) {
        const chunk = (delta: object, finish: string | null): string =>
          `data: ${JSON.stringify({ id: 'chatcmpl-tool', object: 'chat.completion.chunk', created: 0, model: 'scripted-1', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(chunk({ role: 'assistant', content: '' }, null));
        res.write(chunk({ tool_calls: [{ index: 0, id: 'call_storage', type: 'function', function: { name: wanted, arguments: '{}' } }] }, null));
        res.write(chunk({}, 'tool_calls'));
        res.end('data: [DONE]\n\n');
        return;
      }
      const forward = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } }, (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
      forward.on('error', () => res.destroy());
      forward.end(raw);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { baseURL: `http://127.0.0.1:${port}${target.pathname}`, close: () => new Promise((r) => server.close(() => r())) };
}

interface Plugged {
  data: OpenCodeData;
  model: { close(): Promise<void> };
  env: Record<string, string>;
  toastsFile: string;
  logFile: string;
  /** Log lines from OpenCode before the test's first run (the cached build's). */
  logStart: number;
  reports: string;
  delivered: string;
}

async function plugged(): Promise<Plugged> {
  const data = await realOpenCodeData();
  const env = data.env as Record<string, string>;
  const install = runCli(['install-plugin'], { env });
  expect(install.status, install.stderr).toBe(0);
  const toastsFile = join(data.root, 'toasts.jsonl');
  writeFileSync(join(data.layout.configHome, 'opencode', 'plugins', 'zz-toast-observer.js'), TOAST_OBSERVER(toastsFile));
  const scripted = await data.startModel();
  const proxy = await toolCallingModel(scripted.baseURL);
  const config = JSON.parse(readFileSync(data.layout.configFile, 'utf8')) as { provider: Record<string, { options: { baseURL: string } }> };
  for (const provider of Object.values(config.provider)) provider.options.baseURL = proxy.baseURL;
  writeFileSync(data.layout.configFile, `${JSON.stringify(config, null, 2)}\n`);
  const model = { close: async () => { await proxy.close(); await scripted.close(); } };
  const logFile = join(data.dataDir, 'log', 'opencode.log');
  const pluginRoot = join(data.layout.dataHome, 'session-keeper', 'plugin');
  return {
    data, model, env, toastsFile, logFile,
    logStart: existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').length - 1 : 0,
    reports: join(pluginRoot, 'reports'),
    delivered: join(pluginRoot, 'delivered'),
  };
}

/** Sets the `session` block of the copy's global opencode.json (the rest as the harness wrote it). */
function setSessionConfig(p: Plugged, session: unknown): void {
  const file = p.data.layout.configFile;
  const config = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  config['session'] = session;
  writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`);
}

/** session-keeper's lines in OpenCode's log since the test began. */
function ourLogLines(p: Plugged): string[] {
  if (!existsSync(p.logFile)) return [];
  return readFileSync(p.logFile, 'utf8').split('\n').slice(p.logStart).filter((line) => line.includes('message="session-keeper:'));
}

function toasts(p: Plugged): { message: string; variant: string }[] {
  if (!existsSync(p.toastsFile)) return [];
  return readFileSync(p.toastsFile, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { message: string; variant: string });
}

const reportFiles = (dir: string): string[] => (existsSync(dir) ? readdirSync(dir).filter((n) => /^\d{13}-\d+-\d+\.json$/.test(n)) : []);

/** Waits until `n` background checks have left their report (shown already, or waiting for the next start). */
async function checksFinished(p: Plugged, n: number): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (reportFiles(p.reports).length + reportFiles(p.delivered).length < n) {
    if (Date.now() > deadline) throw new Error(`only ${reportFiles(p.reports).length + reportFiles(p.delivered).length} of ${n} startup checks reported`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function run(p: Plugged, prompt: string, env: Record<string, string> = p.env): Promise<{ stdout: string }> {
  const result = await runOpenCode(env, ['run', prompt], { cwd: p.data.projectDir });
  expect(result.status, result.stderr.slice(-2000)).toBe(0);
  return result;
}

/** Root sessions in the order retention evicts them: archived in OpenCode first, then oldest created. */
function rootsByAge(db: string): { id: string; created: number }[] {
  const conn = new Database(db, { readonly: true });
  try {
    return conn
      .prepare('SELECT id, time_created AS created FROM session WHERE parent_id IS NULL ORDER BY time_archived IS NULL, time_created, id')
      .all() as { id: string; created: number }[];
  } finally {
    conn.close();
  }
}

function countRows(db: string, sql: string, ...args: unknown[]): number {
  const conn = new Database(db, { readonly: true });
  try {
    return conn.prepare(sql).pluck().get(...args) as number;
  } finally {
    conn.close();
  }
}

/** The copy's sessions as if they were made three days ago: sessions active in the last hour are never evicted. */
function ageSessions(db: string): void {
  const conn = new Database(db);
  try {
    conn.prepare('UPDATE session SET time_created = time_created - ?, time_updated = time_updated - ?').run(3 * DAY_MS, 3 * DAY_MS);
  } finally {
    conn.close();
  }
}

describe('the OpenCode plugin in the real OpenCode', () => {
  let p: Plugged;
  beforeAll(async () => {
    p = await plugged();
  }, OPENCODE_DATA_TIMEOUT_MS);
  afterAll(async () => {
    await p?.model.close();
    p?.data.remove();
  });

  it('at each start: the oldest sessions archived and gone, the warning once per crossing, the session just run whole', async () => {
    const db = p.data.dbPath;
    ageSessions(db);
    const before = rootsByAge(db);
    const messagesBefore = new Map(before.map((s) => [s.id, countRows(db, 'SELECT count(*) FROM message WHERE session_id = ?', s.id) + countRows(db, 'SELECT count(*) FROM session_message WHERE session_id = ?', s.id)]));
    const maxSessions = before.length - 3;
    const threshold = Math.floor(countRows(db, 'SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()') / MB) - 2;
    expect(threshold).toBeGreaterThan(1);
    setSessionConfig(p, { maxSessions, warnAtMB: [threshold] });

    for (let n = 1; n <= 3; n++) {
      // The third asks the agent's tool why the database is big.
      await run(p, n === 3 ? 'Plugin run 3: [[call session_storage]]' : `Plugin run ${n}: say hi.`);
      await checksFinished(p, n);
    }

    // The oldest went (archived ones first), and at the end exactly the policy's number remain (the last
    // run's session may have been made after its check counted).
    const after = rootsByAge(db);
    expect(after.length === maxSessions || after.length === maxSessions + 1, `${after.length} roots left, policy ${maxSessions}`).toBe(true);
    const kept = new Set(after.map((s) => s.id));
    const evicted = before.filter((s) => !kept.has(s.id)).map((s) => s.id);
    expect(evicted.length).toBeGreaterThanOrEqual(3);
    expect(evicted).toEqual(before.slice(0, evicted.length).map((s) => s.id));

    // Each eviction had a verified archive before it: together they hold every evicted session whole.
    const archiveDir = join(p.data.dataDir, 'archive');
    const archives = readdirSync(archiveDir).filter((n) => n.endsWith('.json.gz'));
    expect(archives.length).toBeGreaterThanOrEqual(1);
    const archived = new Set<string>();
    for (const name of archives) {
      const items = JSON.parse(gunzipSync(readFileSync(join(archiveDir, name))).toString('utf8')) as { info: { id: string } }[];
      for (const item of items) archived.add(item.info.id);
    }
    for (const id of evicted) expect(archived.has(id), `${id} archived`).toBe(true);

    // The warning: one toast and one log line over three starts, with the command that fixes it.
    const warned = toasts(p).filter((t) => t.message.includes('OpenCode database is'));
    expect(warned, JSON.stringify(toasts(p))).toHaveLength(1);
    expect(warned[0]?.variant).toBe('warning');
    expect(warned[0]?.message).toContain('Fix: run: session-keeper retention --max-size-mb');
    const lines = ourLogLines(p);
    expect(lines.filter((l) => l.includes('OpenCode database is') && l.includes('level=WARN'))).toHaveLength(1);
    expect(lines.some((l) => l.includes('evicted') && l.includes('archived to'))).toBe(true);

    // The sessions the runs made are whole: OpenCode exports the last with its answer.
    const newest = after.filter((s) => !before.some((b) => b.id === s.id));
    expect(newest.length).toBe(3);
    for (const s of newest) expect(countRows(db, 'SELECT count(*) FROM part WHERE session_id = ?', s.id)).toBeGreaterThan(0);
    const last = newest.at(-1)?.id as string;
    const { exported } = await exportSession(p.data.env, last, { cwd: p.data.projectDir });
    expect(JSON.stringify(exported.messages)).toContain('Plugin run 3');
    const toolParts = exported.messages.flatMap((m) => m.parts).filter((part) => (part as { tool?: string }).tool === 'session_storage') as { state: { status: string; output: string } }[];
    expect(toolParts).toHaveLength(1);
    expect(toolParts[0]?.state.status).toBe('completed');
    expect(toolParts[0]?.state.output).toContain('Payload by table');
    expect(toolParts[0]?.state.output).toContain(db);

    // Crossing another threshold warns again, once.
    setSessionConfig(p, { maxSessions, warnAtMB: [threshold, threshold - 1] });
    await run(p, 'Plugin run 4: say hi.');
    await checksFinished(p, 4);
    await run(p, 'Plugin run 5: say hi.');
    await checksFinished(p, 5);
    expect(toasts(p).filter((t) => t.message.includes('OpenCode database is'))).toHaveLength(2);
    expect(ourLogLines(p).filter((l) => l.includes('OpenCode database is') && l.includes('level=WARN'))).toHaveLength(2);

    // What the archives hold puts every evicted session back with all its messages.
    for (const name of readdirSync(archiveDir).filter((n) => n.endsWith('.json.gz'))) {
      expect(runCli(['--db', db, 'restore', join(archiveDir, name)], { env: p.env }).status).toBe(0);
    }
    for (const s of before) {
      const messages = countRows(db, 'SELECT count(*) FROM message WHERE session_id = ?', s.id) + countRows(db, 'SELECT count(*) FROM session_message WHERE session_id = ?', s.id);
      expect(messages, s.id).toBe(messagesBefore.get(s.id));
    }
  }, 600_000);
});

/** A PATH with every command of the machine's PATH except `node`. */
function pathWithoutNode(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sk-no-node-'));
  for (const source of (process.env['PATH'] ?? '').split(':')) {
    if (!source || !existsSync(source)) continue;
    for (const name of readdirSync(source)) {
      if (name === 'node' || name === 'nodejs' || existsSync(join(dir, name))) continue;
      symlinkSync(join(source, name), join(dir, name));
    }
  }
  return dir;
}

describe('the plugin when something is wrong: OpenCode answers as usual, and its log says so in one line', () => {
  let p: Plugged;
  let noNode: string;
  beforeAll(async () => {
    p = await plugged();
    noNode = pathWithoutNode();
  }, OPENCODE_DATA_TIMEOUT_MS);
  afterAll(async () => {
    await p?.model.close();
    p?.data.remove();
    if (noNode) rmSync(noNode, { recursive: true, force: true });
  });

  /** New lines of ours since `seen`, and failures still waiting for the next start (a check that outlived its OpenCode). */
  const surfaced = (seen: number): { lines: string[]; pending: string[] } => ({
    lines: ourLogLines(p).slice(seen),
    pending: reportFiles(p.reports).map((n) => readFileSync(join(p.reports, n), 'utf8')),
  });

  it('Node missing from PATH, a broken session block, a database locked by another session-keeper', async () => {
    const db = p.data.dbPath;
    ageSessions(db);
    const roots = rootsByAge(db).length;

    // No node on PATH: nothing is started, one line says why.
    setSessionConfig(p, { maxSessions: 1, warnAtMB: [1] });
    const bare = await run(p, 'No node here: say hi.', { ...p.env, PATH: noNode });
    expect(bare.stdout).toContain('scripted');
    let seen = 0;
    const missing = surfaced(seen);
    expect(missing.lines).toHaveLength(1);
    expect(missing.lines[0]).toContain('Node.js was not found on PATH');
    expect(reportFiles(p.reports).length + reportFiles(p.delivered).length).toBe(0);
    expect(rootsByAge(db).length).toBe(roots + 1);
    seen += 1;

    // A session block OpenCode keeps but we cannot use: the check refuses, naming the key.
    setSessionConfig(p, { maxSessions: 'many' });
    const broken = await run(p, 'Broken config: say hi.');
    expect(broken.stdout).toContain('scripted');
    await checksFinished(p, 1);
    const config = surfaced(seen);
    expect(config.lines.length + config.pending.length, JSON.stringify(config)).toBe(1);
    expect([...config.lines, ...config.pending].join('')).toMatch(/did not run: config .*opencode\.json: session\.maxSessions|"ok":false.*session\.maxSessions/);
    expect(rootsByAge(db).length).toBe(roots + 2);
    seen += config.lines.length;

    // Another session-keeper holds the database's run lock: nothing is deleted, one line names the holder.
    setSessionConfig(p, { maxSessions: 1, warnAtMB: [100_000] });
    writeFileSync(`${db}.session-keeper.lock`, JSON.stringify({ pid: process.pid, host: hostname(), since: Date.now() }));
    try {
      const locked = await run(p, 'Locked: say hi.');
      expect(locked.stdout).toContain('scripted');
      await checksFinished(p, 2);
      const lock = surfaced(seen);
      const said = [...lock.lines, ...lock.pending].filter((l) => l.includes('another session-keeper'));
      expect(said, JSON.stringify(lock)).toHaveLength(1);
      expect(said[0]).toContain(`pid ${process.pid}`);
      expect(rootsByAge(db).length).toBe(roots + 3);
    } finally {
      rmSync(`${db}.session-keeper.lock`, { force: true });
    }
  }, 600_000);
});
