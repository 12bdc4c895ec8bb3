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
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseJson, runCli } from '../helpers/env.js';
import { exportSession, OPENCODE_DATA_TIMEOUT_MS, realOpenCodeData, runOpenCode, type ModelServer, type OpenCodeData } from '../helpers/opencode.ts';

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

interface Plugged {
  data: OpenCodeData;
  model: ModelServer;
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
  const model = await data.startModel();
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

    const outputs: string[] = [];
    for (let n = 1; n <= 3; n++) {
      outputs.push((await run(p, `Plugin run ${n}: say hi.`)).stdout);
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
