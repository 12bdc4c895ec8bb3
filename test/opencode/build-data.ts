/**
 * Drives the real OpenCode binary through a set of scenarios to produce a realistic data folder
 * (opencode.db, storage/, snapshot/, log/, tool-output/) and a manifest.json saying what each
 * session is. The result is cached under `.cache/opencode/<version>/data-<key>/`, keyed by the
 * OpenCode version and a hash of the builder's sources, and built once even when test files ask
 * at the same time.
 */
import Database from 'better-sqlite3';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  classicMessages, createSessionClassic, createSessionV2, promptClassic, promptV2, requestJson, v2Messages, waitIdleV2,
  type ClassicMessage,
} from './api.ts';
import { withCacheLock } from './cache-lock.ts';
import { makePdf, makePng } from './input-files.ts';
import { installOpenCode, OPENCODE_VERSION } from './install.ts';
import { MODEL_ID, PROVIDER_ID, startModelServer, type ModelServer } from './model-server.ts';
import {
  createLayout, describeRun, openCodeEnv, runOpenCodeWith, startServe, writeOpenCodeConfig, type OpenCodeLayout,
} from './process.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
/** Every source the built folder depends on: a change to any of them means a new cache entry. */
const BUILDER_SOURCES = ['build-data.ts', 'model-server.ts', 'input-files.ts', 'process.ts', 'api.ts'];

export type StorageLayout = 'message/part' | 'session_message';

export interface ManifestSession {
  id: string;
  /** What the builder did to make it (see runScenarios() in build-data.ts). */
  scenario: string;
  layout: StorageLayout;
  parentId: string | null;
  title: string;
  /** The session's directory relative to the data root (`project`, `project/sub`, `scratch`). */
  directory: string;
  /** What the database really holds for it, observed after the build (e.g. `file-part:application/pdf`). */
  features: string[];
  /** Message counts OpenCode's own APIs report: classic `GET /session/:id/message`, newer `GET /api/session/:id/message`. */
  api: { classicMessages: number; v2Messages: number };
  /** Rows per table for this session. */
  rows: Record<'message' | 'part' | 'session_message' | 'session_input' | 'session_context_epoch' | 'event' | 'todo', number>;
}

export interface Manifest {
  opencodeVersion: string;
  builderKey: string;
  builtAt: number;
  buildMs: number;
  /**
   * Absolute path of the data root while it was built (a temp folder, gone since): the paths
   * OpenCode wrote into rows start with it.
   */
  buildRoot: string;
  sessions: ManifestSession[];
  /** Sessions removed with `opencode session delete` (their diff files may stay behind). */
  deleted: Array<{ id: string; scenario: string; diffFileLeft: boolean }>;
  /** Export files kept beside the data (relative to the root), e.g. the one `opencode import` read. */
  exports: Record<string, string>;
}

export function builderKey(version = OPENCODE_VERSION): string {
  const hash = createHash('sha256').update(version);
  for (const file of BUILDER_SOURCES) hash.update('\0').update(file).update('\0').update(readFileSync(join(HERE, file)));
  return hash.digest('hex').slice(0, 16);
}

/** A `run --format json` line carries the session id. */
function sessionIdFromJsonEvents(stdout: string): string | undefined {
  for (const line of stdout.split('\n')) {
    const match = /"sessionID":"(ses_[A-Za-z0-9]+)"/.exec(line);
    if (match?.[1] !== undefined) return match[1];
  }
  return undefined;
}

interface Paths {
  project: string;
  sub: string;
  scratch: string;
  assets: string;
}

/** One build: the layout, the model, and what each scenario produced. */
class DataBuilder {
  readonly env: NodeJS.ProcessEnv;
  readonly scenarioOf = new Map<string, string>();
  readonly expected = new Map<string, string[]>();
  readonly deleted: Manifest['deleted'] = [];
  readonly exports: Record<string, string> = {};

  constructor(readonly bin: string, readonly layout: OpenCodeLayout, readonly paths: Paths, readonly model: ModelServer) {
    this.env = openCodeEnv(layout);
  }

  /** Names the scenario that made a session and the traces it must leave in the database. */
  record(id: string, scenario: string, expect: string[] = []): string {
    this.scenarioOf.set(id, scenario);
    this.expected.set(id, [...(this.expected.get(id) ?? []), ...expect]);
    return id;
  }

  /** `opencode run` in `cwd`; returns the session id its JSON events name. */
  async run(args: string[], cwd = this.paths.project): Promise<string> {
    const full = ['run', '--format', 'json', ...args];
    const result = await runOpenCodeWith(this.bin, this.env, full, { cwd, timeoutMs: 90_000 });
    const id = sessionIdFromJsonEvents(result.stdout);
    if (result.status !== 0 || id === undefined) throw new Error(describeRun(full, result));
    return id;
  }

  async opencode(args: string[], cwd = this.paths.project): Promise<string> {
    const result = await runOpenCodeWith(this.bin, this.env, args, { cwd, timeoutMs: 90_000 });
    if (result.status !== 0) throw new Error(describeRun(args, result));
    return result.stdout;
  }
}

function git(cwd: string, env: NodeJS.ProcessEnv, ...args: string[]): void {
  execFileSync('git', args, { cwd, env, stdio: 'pipe' });
}

function makeProject(paths: Paths, env: NodeJS.ProcessEnv): void {
  mkdirSync(paths.sub, { recursive: true });
  mkdirSync(paths.assets, { recursive: true });
  mkdirSync(paths.scratch, { recursive: true });
  writeFileSync(join(paths.project, 'README.md'), '# Sample project\n\nA small repository the test sessions work in.\n');
  writeFileSync(join(paths.project, 'src.ts'), 'export function add(a: number, b: number): number {\n  return a + b;\n}\n');
  writeFileSync(join(paths.sub, 'module.ts'), 'export const answer = 42;\n');
  writeFileSync(join(paths.assets, 'diagram.png'), makePng(64, 48, 1));
  writeFileSync(join(paths.assets, 'photo.png'), makePng(320, 240, 2));
  writeFileSync(join(paths.assets, 'spec.pdf'), makePdf('Specification: one page', 16 * 1024, 3));
  // A few MB, so base64 payloads in rows and events are big enough to matter.
  writeFileSync(join(paths.assets, 'report.pdf'), makePdf('Quarterly report', 3 * 1024 * 1024, 4));
  writeFileSync(join(paths.assets, 'notes.md'), '# Notes\n\n- first point\n- second point\n');
  writeFileSync(join(paths.scratch, 'scratch.txt'), 'loose notes outside any repository\n');
  git(paths.project, env, 'init', '-q');
  git(paths.project, env, 'add', '.');
  git(paths.project, env, 'commit', '-q', '-m', 'Initial commit');
  // The scratch folder stands for "no repository": inside one, OpenCode would adopt that one.
  const enclosing = spawnSync('git', ['rev-parse', '--show-toplevel'], { cwd: paths.scratch, env, encoding: 'utf8' });
  if (enclosing.status === 0) throw new Error(`the build folder ${paths.scratch} lies inside the git repository ${enclosing.stdout.trim()}`);
}

const BIG_LINES = `yes ${'0123456789'.repeat(10)} | head -n 440`;

/** The classic API's assistant message holding a tool call of `tool`. */
function messageWithTool(messages: ClassicMessage[], tool: string): string {
  const found = messages.find((m) => m.parts.some((p) => p.type === 'tool' && p['tool'] === tool));
  if (found === undefined) throw new Error(`no ${tool} tool call among ${messages.length} messages`);
  return found.info.id;
}

/** The scenarios, in the order they run (some rely on being the last session touched). */
async function runScenarios(b: DataBuilder): Promise<void> {
  const { project, sub, scratch, assets } = b.paths;
  const asset = (name: string): string => join(assets, name);

  b.record(await b.run(['Hello, what can you do?']), 'plain', ['text']);
  b.record(await b.run(['[[reason]] Think about the build before answering.']), 'reasoning', ['reasoning']);

  // Multi-turn with --continue: the last session of this directory gets the next prompts.
  const continued = b.record(await b.run(['Start a conversation about the project.']), 'continue', ['multi-turn']);
  for (const prompt of ['Second turn, please go on.', 'Third turn: [[bash git status --short]]']) {
    const again = await b.run(['--continue', prompt]);
    if (again !== continued) throw new Error(`--continue went to ${again}, not to ${continued}`);
  }

  const followed = b.record(await b.run([`First look at the code [[read ${join(project, 'src.ts')}]]`]), 'session-followup', ['multi-turn', 'tool:read']);
  await b.run(['--session', followed, 'A follow-up question about add().']);
  const forked = await b.run(['--session', followed, '--fork', 'A forked line of questions.']);
  if (forked === followed) throw new Error('--fork continued the same session instead of forking it');
  b.record(forked, 'fork', ['multi-turn']);

  b.record(await b.run(['Please look at these files.', '-f', asset('diagram.png'), '-f', asset('spec.pdf')]), 'run-attachments', ['file-part:image/png', 'file-part:application/pdf']);
  b.record(await b.run(['Summarise this report.', '-f', asset('report.pdf')]), 'run-big-pdf', ['file-part:application/pdf', 'big-attachment']);
  b.record(await b.run(['Review these notes.', '-f', asset('notes.md')]), 'run-text-file', ['file-part:file-url']);
  b.record(await b.run([`What is in this picture? [[read ${asset('photo.png')}]]`]), 'read-image', ['tool-attachment:image/png']);
  b.record(await b.run([`Read the spec [[read ${asset('spec.pdf')}]]`]), 'read-pdf', ['tool-attachment:application/pdf']);
  b.record(await b.run(['Show me the repository [[bash ls -la]] [[bash git log --oneline -n 3]]']), 'bash', ['tool:bash']);
  b.record(await b.run(['Plan the work [[todo]]']), 'todo', ['todo', 'tool:todowrite']);

  const parent = b.record(await b.run(['Delegate this [[task Look around the project {{bash ls}}]] [[task Say hello from a second subtask]]']), 'subtask', ['tool:task', 'has-children']);

  // Big tool outputs, then two more turns: pruning marks the oldest outputs compacted; one output
  // is over the truncation limit, so its full text goes to tool-output/.
  const big = Array.from({ length: 7 }, () => `[[bash ${BIG_LINES}]]`).join(' ');
  const pruned = b.record(await b.run([`Produce big outputs ${big} [[bash yes abcdefghij | head -n 9000]]`]), 'pruned-tool-output', ['compacted-tool', 'multi-turn']);
  await b.run(['--session', pruned, 'Turn two after the big outputs.']);
  await b.run(['--session', pruned, 'Turn three after the big outputs.']);

  const reverted = b.record(await b.run([`Write and edit a file [[write ${join(project, 'notes.txt')}]] [[edit ${join(project, 'notes.txt')}]]`]), 'write-revert', ['tool:write', 'tool:edit', 'diff-file', 'revert']);
  const summarized = b.record(await b.run(['Begin a session to summarise later [[bash ls]]']), 'summarized', ['compaction', 'summary-message']);
  await b.run(['--session', summarized, 'One more turn before the summary.']);
  const archived = b.record(await b.run(['A session that gets archived.']), 'archived', ['archived']);
  const doomed = await b.run([`A session that gets deleted [[write ${join(project, 'doomed.txt')}]]`]);

  b.record(await b.run(['A question from a subdirectory.'], sub), 'subdirectory', ['text']);
  b.record(await b.run(['A question outside any repository.'], scratch), 'global-project', ['project:global']);

  // Exported on another "machine" (a donor layout) and imported here with `opencode import`.
  const donorRoot = join(b.layout.root, 'donor');
  const donor = createLayout(donorRoot);
  writeOpenCodeConfig(donor, b.model.baseURL);
  const donorProject = join(donorRoot, 'work');
  mkdirSync(donorProject, { recursive: true });
  const donorEnv = openCodeEnv(donor);
  const donorRun = await runOpenCodeWith(b.bin, donorEnv, ['run', '--format', 'json', `Work elsewhere [[read ${asset('diagram.png')}]]`], { cwd: donorProject, timeoutMs: 90_000 });
  const donorId = sessionIdFromJsonEvents(donorRun.stdout);
  if (donorRun.status !== 0 || donorId === undefined) throw new Error(describeRun(['run', '(donor)'], donorRun));
  mkdirSync(join(b.layout.root, 'exports'), { recursive: true });
  const exportFile = join(b.layout.root, 'exports', 'imported-source.json');
  const exported = await runOpenCodeWith(b.bin, donorEnv, ['export', donorId], { cwd: donorProject, stdoutFile: exportFile });
  if (exported.status !== 0) throw new Error(describeRun(['export', donorId], exported));
  rmSync(donorRoot, { recursive: true, force: true });
  await b.opencode(['import', exportFile]);
  b.record(donorId, 'imported', ['tool-attachment:image/png']);
  b.exports['imported-source'] = relative(b.layout.root, exportFile);

  const serve = await startServe(b.bin, b.env, project);
  try {
    const url = serve.baseUrl;
    // Classic API: revert to before the edit (writes storage/session_diff/<id>.json).
    await requestJson(url, 'POST', `/session/${reverted}/revert`, { messageID: messageWithTool(await classicMessages(url, reverted), 'edit') });
    await requestJson(url, 'POST', `/session/${summarized}/summarize`, { providerID: PROVIDER_ID, modelID: MODEL_ID });
    await requestJson(url, 'PATCH', `/session/${archived}`, { time: { archived: Date.now() } });
    await requestJson(url, 'POST', `/session/${doomed}/revert`, { messageID: messageWithTool(await classicMessages(url, doomed), 'write') });

    const classic = await createSessionClassic(url, { title: 'Made through the classic API' });
    b.record(classic.id, 'classic-api', ['file-part:image/png']);
    const png = readFileSync(asset('diagram.png')).toString('base64');
    await promptClassic(url, classic.id, [
      { type: 'text', text: 'Describe this attachment.' },
      { type: 'file', mime: 'image/png', filename: 'diagram.png', url: `data:image/png;base64,${png}` },
    ]);

    // The part types a user message can carry besides text and files: an @agent mention and a subtask.
    const withParts = await createSessionClassic(url, { title: 'Agent and subtask parts' });
    b.record(withParts.id, 'classic-api-parts', ['agent', 'subtask', 'has-children']);
    await promptClassic(url, withParts.id, [{ type: 'text', text: 'Ask the general agent.' }, { type: 'agent', name: 'general' }]);
    await promptClassic(url, withParts.id, [{ type: 'subtask', prompt: 'Check the project layout.', description: 'Layout check', agent: 'general' }]);

    await newerApiScenarios(b, url);
  } finally {
    await serve.stop();
  }

  await b.opencode(['session', 'delete', doomed]);
  b.deleted.push({ id: doomed, scenario: 'deleted-after-revert', diffFileLeft: existsSync(join(b.layout.dataDir, 'storage', 'session_diff', `${doomed}.json`)) });
}

/** Sessions made through `POST /api/session` + `POST /api/session/:id/prompt` (stored in session_message). */
async function newerApiScenarios(b: DataBuilder, url: string): Promise<void> {
  const asset = (name: string): string => join(b.paths.assets, name);
  const dataUri = (file: string, mime: string): string => `data:${mime};base64,${readFileSync(asset(file)).toString('base64')}`;
  const scenarios: Array<{ scenario: string; expect: string[]; prompts: Array<Parameters<typeof promptV2>[2]> }> = [
    { scenario: 'v2-text', expect: ['v2:text'], prompts: [{ text: 'Hello through the newer API.' }] },
    { scenario: 'v2-reasoning', expect: ['v2:reasoning'], prompts: [{ text: '[[reason]] Think first.' }] },
    { scenario: 'v2-image', expect: ['v2-user-file:image/png', 'v2-input-base64'], prompts: [{ text: 'What is in this image?', files: [{ uri: dataUri('photo.png', 'image/png'), name: 'photo.png' }] }] },
    // The newer runtime's OpenAI-compatible path refuses PDFs: the answer is an error, the base64 stays.
    { scenario: 'v2-pdf', expect: ['v2-user-file:application/pdf', 'v2:error'], prompts: [{ text: 'Read this PDF.', files: [{ uri: dataUri('report.pdf', 'application/pdf'), name: 'report.pdf' }] }] },
    { scenario: 'v2-file-url', expect: ['v2-user-file:file-url'], prompts: [{ text: 'Look at the notes.', files: [{ uri: `file://${asset('notes.md')}`, name: 'notes.md' }] }] },
    {
      scenario: 'v2-tools',
      expect: ['v2-tool:read', 'v2-tool:write', 'v2-tool:edit', 'v2-tool:bash', 'v2-tool-file:image/png'],
      prompts: [{ text: `Use tools [[read ${asset('diagram.png')}]] [[write ${join(b.paths.project, 'v2-notes.txt')}]] [[edit ${join(b.paths.project, 'v2-notes.txt')}]] [[bash cat v2-notes.txt]]` }],
    },
    { scenario: 'v2-multi-turn', expect: ['multi-turn'], prompts: [{ text: 'First prompt.' }, { text: 'Second prompt [[bash echo second]]' }, { text: 'Third prompt.' }] },
    { scenario: 'v2-revert', expect: ['v2-revert-committed'], prompts: [{ text: 'Keep this turn.' }, { text: `Then write [[write ${join(b.paths.project, 'v2-revert.txt')}]]` }] },
  ];
  // All sessions run at once: the newer API admits a prompt and answers in the background.
  const created = await Promise.all(scenarios.map(async (s) => ({ ...s, id: (await createSessionV2(url, {})).id })));
  await Promise.all(created.map(async (s) => {
    b.record(s.id, s.scenario, s.expect);
    for (const prompt of s.prompts) {
      await promptV2(url, s.id, prompt);
      await waitIdleV2(url, s.id);
    }
  }));
  const revert = created.find((s) => s.scenario === 'v2-revert');
  if (revert !== undefined) {
    const messages = await v2Messages(url, revert.id);
    const lastUser = [...messages].reverse().find((m) => m.type === 'user');
    if (lastUser === undefined) throw new Error('v2-revert: no user message to revert to');
    await requestJson(url, 'POST', `/api/session/${revert.id}/revert/stage`, { messageID: lastUser.id, files: true });
    await requestJson(url, 'POST', `/api/session/${revert.id}/revert/commit`);
  }
}

type Row = Record<string, unknown>;

/** What the database really holds for each session, as feature names the manifest lists. */
function observeFeatures(db: Database.Database, dataDir: string, sessionId: string): Set<string> {
  const features = new Set<string>();
  const session = db.prepare('SELECT parent_id, revert, time_archived, project_id FROM session WHERE id = ?').get(sessionId) as Row | undefined;
  if (session === undefined) return features;
  if (session['project_id'] === 'global') features.add('project:global');
  if (session['parent_id'] !== null) features.add('child');
  if (session['revert'] !== null) features.add('revert');
  if (session['time_archived'] !== null) features.add('archived');
  if ((db.prepare('SELECT count(*) AS n FROM session WHERE parent_id = ?').get(sessionId) as { n: number }).n > 0) features.add('has-children');
  if ((db.prepare('SELECT count(*) AS n FROM todo WHERE session_id = ?').get(sessionId) as { n: number }).n > 0) features.add('todo');
  if (existsSync(join(dataDir, 'storage', 'session_diff', `${sessionId}.json`))) features.add('diff-file');
  let users = 0;
  for (const m of db.prepare('SELECT data FROM message WHERE session_id = ?').iterate(sessionId) as Iterable<{ data: string }>) {
    const info = JSON.parse(m.data) as Row;
    if (info['role'] === 'user') users++;
    if (info['summary'] === true) features.add('summary-message');
  }
  for (const p of db.prepare('SELECT data FROM part WHERE session_id = ?').iterate(sessionId) as Iterable<{ data: string }>) {
    const part = JSON.parse(p.data) as Row;
    const type = String(part['type']);
    if (['text', 'reasoning', 'compaction', 'agent', 'subtask', 'retry'].includes(type)) features.add(type);
    if (type === 'file') {
      const url = String(part['url']);
      features.add(url.startsWith('data:') ? `file-part:${String(part['mime'])}` : 'file-part:file-url');
      if (p.data.length > 1024 * 1024) features.add('big-attachment');
    }
    if (type === 'tool') {
      features.add(`tool:${String(part['tool'])}`);
      const state = part['state'] as Row;
      const time = state['time'] as Row | undefined;
      if (time?.['compacted'] !== undefined) features.add('compacted-tool');
      for (const a of (state['attachments'] as Row[] | undefined) ?? []) features.add(`tool-attachment:${String(a['mime'])}`);
    }
  }
  let v2Users = 0;
  for (const m of db.prepare('SELECT type, data FROM session_message WHERE session_id = ?').iterate(sessionId) as Iterable<{ type: string; data: string }>) {
    const data = JSON.parse(m.data) as Row;
    if (m.type === 'user') {
      v2Users++;
      for (const f of (data['files'] as Row[] | undefined) ?? []) {
        const uri = String(f['uri']);
        features.add(uri.startsWith('data:') ? `v2-user-file:${String(f['mime'])}` : 'v2-user-file:file-url');
      }
    }
    if (m.type === 'assistant') {
      if (data['error'] !== undefined) features.add('v2:error');
      for (const c of (data['content'] as Row[] | undefined) ?? []) {
        if (c['type'] === 'text' || c['type'] === 'reasoning') features.add(`v2:${String(c['type'])}`);
        if (c['type'] === 'tool') {
          features.add(`v2-tool:${String(c['name'])}`);
          for (const item of (((c['state'] as Row)['content'] as Row[] | undefined) ?? [])) {
            if (item['type'] === 'file' && String(item['uri']).startsWith('data:')) features.add(`v2-tool-file:${String(item['mime'])}`);
          }
        }
      }
    }
  }
  for (const i of db.prepare('SELECT prompt FROM session_input WHERE session_id = ?').iterate(sessionId) as Iterable<{ prompt: string }>) {
    if (i.prompt.includes(';base64,')) features.add('v2-input-base64');
  }
  if ((db.prepare("SELECT count(*) AS n FROM event WHERE aggregate_id = ? AND type LIKE 'session.next.revert.committed%'").get(sessionId) as { n: number }).n > 0) {
    features.add('v2-revert-committed');
  }
  if (users > 1 || v2Users > 1) features.add('multi-turn');
  return features;
}

function rowCounts(db: Database.Database, sessionId: string): ManifestSession['rows'] {
  const count = (sql: string): number => (db.prepare(sql).get(sessionId) as { n: number }).n;
  return {
    message: count('SELECT count(*) AS n FROM message WHERE session_id = ?'),
    part: count('SELECT count(*) AS n FROM part WHERE session_id = ?'),
    session_message: count('SELECT count(*) AS n FROM session_message WHERE session_id = ?'),
    session_input: count('SELECT count(*) AS n FROM session_input WHERE session_id = ?'),
    session_context_epoch: count('SELECT count(*) AS n FROM session_context_epoch WHERE session_id = ?'),
    event: count('SELECT count(*) AS n FROM event WHERE aggregate_id = ?'),
    todo: count('SELECT count(*) AS n FROM todo WHERE session_id = ?'),
  };
}

/** Builds a data folder at `root` (which must not exist) and returns its manifest. */
export async function buildOpenCodeData(bin: string, version: string, root: string): Promise<Manifest> {
  const started = Date.now();
  const layout = createLayout(root);
  const project = join(root, 'project');
  const paths: Paths = { project, sub: join(project, 'sub'), scratch: join(root, 'scratch'), assets: join(project, 'assets') };
  const model = await startModelServer({ logFile: join(root, 'model-requests.jsonl') });
  try {
    writeOpenCodeConfig(layout, model.baseURL);
    const builder = new DataBuilder(bin, layout, paths, model);
    makeProject(paths, builder.env);
    await runScenarios(builder);

    // Children are found, not made: subtasks create them.
    const db = new Database(layout.dbPath, { readonly: true });
    let sessions: ManifestSession[];
    try {
      const rows = db.prepare('SELECT id, parent_id, title, directory FROM session ORDER BY time_created, id').all() as Array<{ id: string; parent_id: string | null; title: string; directory: string }>;
      sessions = rows.map((r) => {
        const counts = rowCounts(db, r.id);
        const parentScenario = r.parent_id === null ? undefined : builder.scenarioOf.get(r.parent_id);
        return {
          id: r.id,
          scenario: builder.scenarioOf.get(r.id) ?? (parentScenario !== undefined ? `${parentScenario}:child` : 'unexpected'),
          layout: counts.session_message > 0 || counts.session_input > 0 ? 'session_message' : 'message/part',
          parentId: r.parent_id,
          title: r.title,
          directory: relative(root, r.directory),
          features: [...observeFeatures(db, layout.dataDir, r.id)].sort(),
          api: { classicMessages: -1, v2Messages: -1 },
          rows: counts,
        };
      });
    } finally {
      db.close();
    }
    // A scenario whose expected traces are missing means OpenCode behaves differently: say which.
    const missing: string[] = [];
    for (const [id, expect] of builder.expected) {
      const s = sessions.find((x) => x.id === id);
      if (s === undefined) missing.push(`${builder.scenarioOf.get(id)}: session ${id} not in the database`);
      else for (const f of expect) if (!s.features.includes(f)) missing.push(`${s.scenario}: no ${f}`);
    }
    const unexpected = sessions.filter((s) => s.scenario === 'unexpected').map((s) => s.id);
    if (unexpected.length > 0) missing.push(`sessions no scenario made: ${unexpected.join(', ')}`);
    if (missing.length > 0) throw new Error(`OpenCode data build: ${missing.join('; ')}`);

    // OpenCode's own count of each session's messages, through both APIs.
    const serve = await startServe(bin, builder.env, project);
    try {
      for (const s of sessions) {
        s.api.classicMessages = (await classicMessages(serve.baseUrl, s.id)).length;
        s.api.v2Messages = (await v2Messages(serve.baseUrl, s.id)).length;
      }
    } finally {
      await serve.stop();
    }
    const manifest: Manifest = {
      opencodeVersion: version,
      builderKey: builderKey(version),
      builtAt: Date.now(),
      buildMs: Date.now() - started,
      buildRoot: root,
      sessions,
      deleted: builder.deleted,
      exports: builder.exports,
    };
    return manifest;
  } finally {
    await model.close();
  }
}

export interface CachedData {
  /** The cached folder: read it, copy it, never change it. */
  root: string;
  manifest: Manifest;
  bin: string;
  version: string;
}

const MANIFEST = 'manifest.json';

function readManifest(root: string): Manifest | undefined {
  const file = join(root, MANIFEST);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Manifest) : undefined;
}

let cached: Promise<CachedData> | undefined;

/** The cached data folder for this OpenCode version and builder, built first if missing. */
export function cachedOpenCodeData(): Promise<CachedData> {
  cached ??= (async () => {
    const { bin, version, dir } = await installOpenCode();
    const key = builderKey(version);
    const root = join(dir, `data-${key}`);
    const ready = readManifest(root);
    if (ready !== undefined) return { root, manifest: ready, bin, version };
    return withCacheLock(`${root}.lock`, async () => {
      const built = readManifest(root);
      if (built !== undefined) return { root, manifest: built, bin, version };
      rmSync(root, { recursive: true, force: true });
      // Built outside any repository: OpenCode walks up from a folder that is not a repository to
      // the enclosing one (this checkout), and would record it and its worktrees as the project.
      const staging = mkdtempSync(join(tmpdir(), `sk-opencode-build-${version}-`));
      try {
        const manifest = await buildOpenCodeData(bin, version, staging);
        // The manifest is written last: its presence marks a complete folder.
        writeFileSync(join(staging, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
        moveFolder(staging, root);
        pruneOldBuilds(dir, root);
        return { root, manifest, bin, version };
      } finally {
        rmSync(staging, { recursive: true, force: true });
      }
    });
  })();
  cached.catch(() => {
    cached = undefined;
  });
  return cached;
}

function moveFolder(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
    // The temp folder is on another file system: copy under a temporary name, then rename.
    const partial = `${to}.partial-${process.pid}`;
    cpSync(from, partial, { recursive: true });
    renameSync(partial, to);
  }
}

/** Data folders of older builder versions are dead weight once a new one is complete. */
function pruneOldBuilds(dir: string, keep: string): void {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (name.startsWith('data-') && !name.endsWith('.lock') && path !== keep && !existsSync(`${path}.lock`) && statSync(path).isDirectory()) {
      rmSync(path, { recursive: true, force: true });
    }
  }
}
