/**
 * session-keeper inside OpenCode (`session-keeper/opencode-plugin`): a thin shell that runs in
 * OpenCode's own Bun process and never opens the database (better-sqlite3 is Node's). At OpenCode's
 * start it launches the startup check (size warnings, retention, compaction from the `session`
 * config, beside OpenCode as the writer) under Node in the background; it shows what the check
 * reports as a TUI toast and a line in OpenCode's log; it checks the size again, throttled, when a
 * session goes idle; and it gives the agent a read-only `session_storage` tool. Anything that fails
 * is one line in OpenCode's log: OpenCode itself is never held up or stopped.
 *
 * The shapes below are the part of `@opencode-ai/plugin` 1.18.33's `PluginInput` and `Hooks` this
 * plugin uses, written out so the package does not depend on it.
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { findNode, runCaptured, startDetached, ensureDir, type NodeLookup } from './node-child.js';
import { lastErrorLine, newReportId, reportFolders, takeReports, type ReportFolders, type Taken } from './reports.js';

type LogLevel = 'debug' | 'info' | 'warn' | 'error';
type ToastVariant = 'info' | 'success' | 'warning' | 'error';

/** The SDK client calls used (`client.app.log`, `client.tui.showToast`). */
export interface OpenCodeClient {
  app: { log(options: { body: { service: string; level: LogLevel; message: string; extra?: Record<string, unknown> } }): Promise<unknown> };
  tui: { showToast(options: { body: { title?: string; message: string; variant: ToastVariant; duration?: number } }): Promise<unknown> };
}

export interface PluginInput {
  client: OpenCodeClient;
  directory: string;
  worktree: string;
}

export interface ToolContext {
  sessionID: string;
  directory: string;
  abort: AbortSignal;
}

export interface ToolDefinition {
  description: string;
  args: Record<string, never>;
  execute(args: Record<string, never>, context: ToolContext): Promise<string>;
}

export interface Hooks {
  event?: (input: { event: { type: string; properties?: unknown } }) => Promise<void>;
  tool?: Record<string, ToolDefinition>;
}

/** Options from `"plugin": [["<this file>", { ... }]]` in opencode.json (all optional). */
export interface SessionKeeperPluginOptions {
  /** Absolute path of the `node` to run the CLI with (default: `$SESSION_KEEPER_NODE`, else PATH). */
  node?: string;
  /** Minutes between size checks on session-idle events (default 10; 0 turns them off). */
  recheckMinutes?: number;
  /** false: no check at OpenCode's start (the tool and idle checks remain). */
  startup?: boolean;
}

const SERVICE = 'session-keeper';
const CLIENT_TIMEOUT_MS = 5_000;
const TOOL_TIMEOUT_MS = 120_000;
const DEFAULT_RECHECK_MINUTES = 10;

/** Reads the options without trusting them: a bad one is said once and its default used. */
function readOptions(raw: unknown): { options: SessionKeeperPluginOptions; problems: string[] } {
  const problems: string[] = [];
  const options: SessionKeeperPluginOptions = {};
  if (raw === undefined || raw === null) return { options, problems };
  if (typeof raw !== 'object' || Array.isArray(raw)) return { options, problems: ['plugin options are not an object; using the defaults'] };
  const given = raw as Record<string, unknown>;
  if (given['node'] !== undefined) {
    if (typeof given['node'] === 'string' && given['node'] !== '') options.node = given['node'];
    else problems.push('plugin option "node" is not a path; looking on PATH');
  }
  if (given['recheckMinutes'] !== undefined) {
    const value = given['recheckMinutes'];
    if (typeof value === 'number' && Number.isFinite(value) && value >= 0) options.recheckMinutes = value;
    else problems.push(`plugin option "recheckMinutes" is not a number of minutes; using ${DEFAULT_RECHECK_MINUTES}`);
  }
  if (given['startup'] !== undefined) {
    if (typeof given['startup'] === 'boolean') options.startup = given['startup'];
    else problems.push('plugin option "startup" is not true or false; checking at startup');
  }
  return { options, problems };
}

/** A client call that can neither throw nor hang the caller. */
async function settle(call: () => Promise<unknown>): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([call(), new Promise((resolve) => (timer = setTimeout(resolve, CLIENT_TIMEOUT_MS)))]);
  } catch {
    // OpenCode's log or TUI is not reachable: there is nowhere else to say it.
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}

class SessionKeeperShell {
  private readonly folders: ReportFolders;
  private readonly node: NodeLookup;
  private running = false;
  private lastCheck = 0;
  private nodeMissingSaid = false;

  constructor(
    private readonly input: PluginInput,
    private readonly options: SessionKeeperPluginOptions,
  ) {
    this.folders = reportFolders();
    this.node = findNode(options.node);
  }

  /** One line in OpenCode's log, always starting `session-keeper:` so it can be found there. */
  log(level: LogLevel, message: string): Promise<void> {
    const line = message.startsWith(`${SERVICE}:`) ? message : `${SERVICE}: ${message}`;
    return settle(() => this.input.client.app.log({ body: { service: SERVICE, level, message: line } }));
  }

  toast(message: string, variant: ToastVariant): Promise<void> {
    return settle(() => this.input.client.tui.showToast({ body: { title: 'session-keeper', message, variant, duration: 15_000 } }));
  }

  /** Shows every finished report: the newest crossing as a toast and a warning line, the rest as log lines. */
  async deliver(): Promise<void> {
    let taken: Taken[];
    try {
      taken = await takeReports(this.folders);
    } catch (error) {
      await this.log('error', `session-keeper: could not read the startup check's report: ${(error as Error).message}`);
      return;
    }
    for (const item of taken) {
      if ('unreadable' in item) {
        await this.log('error', `session-keeper: ${item.unreadable}`);
        continue;
      }
      const report = item.report;
      if (!report.ok) {
        await this.log('error', `session-keeper: the ${report.mode === 'startup' ? 'startup check' : 'size check'} did not run: ${report.error}`);
        continue;
      }
      const top = report.newWarnings[0];
      if (top) {
        const line = `${top.message} Fix: ${top.fix}`;
        await this.log('warn', line);
        await this.toast(line, 'warning');
      }
      for (const note of report.notes) await this.log('info', note);
    }
  }

  /** Starts a check in the background unless one is running; its report is shown when it ends. */
  check(mode: 'startup' | 'warnings'): void {
    if (this.running) return;
    if (!this.node.ok) {
      if (!this.nodeMissingSaid) {
        this.nodeMissingSaid = true;
        void this.log('warn', `session-keeper: no size check or retention in OpenCode: ${this.node.why}`);
      }
      return;
    }
    this.running = true;
    this.lastCheck = Date.now();
    const id = newReportId();
    const args = ['startup', '--yes', '--report', join(this.folders.reports, `${id}.json`), ...(mode === 'warnings' ? ['--warnings-only'] : [])];
    try {
      ensureDir(this.folders.reports);
      ensureDir(this.folders.delivered);
      const child = startDetached(this.node.node, args, { cwd: this.input.directory, stderrFile: join(this.folders.reports, `${id}.log`) });
      child.exited.then(
        async (code) => {
          this.running = false;
          const reported = await this.deliverCounting(id);
          if (!reported && code !== 0) {
            // Died before writing its report (killed, out of memory): its last stderr line says why.
            const why = lastErrorLine(this.folders, id)?.replace(/^session-keeper: /, '') ?? `exited with ${code === null ? 'a signal' : `code ${code}`}`;
            await this.log('error', `session-keeper: the ${mode === 'startup' ? 'startup check' : 'size check'} failed: ${why}`);
          }
          rmSync(join(this.folders.reports, `${id}.log`), { force: true });
        },
        async (error: Error) => {
          this.running = false;
          await this.log('error', `session-keeper: could not start ${this.node.ok ? this.node.node : 'node'}: ${error.message}`);
        },
      );
    } catch (error) {
      this.running = false;
      void this.log('error', `session-keeper: could not start the startup check: ${(error as Error).message}`);
    }
  }

  /** Delivers what is there; true when the check `id` left a report (shown now, or already by another OpenCode). */
  private async deliverCounting(id: string): Promise<boolean> {
    await this.deliver();
    return existsSync(join(this.folders.delivered, `${id}.json`)) || existsSync(join(this.folders.reports, `${id}.json`));
  }

  onIdle(): void {
    const minutes = this.options.recheckMinutes ?? DEFAULT_RECHECK_MINUTES;
    if (minutes === 0 || Date.now() - this.lastCheck < minutes * 60_000) return;
    this.check('warnings');
  }

  /** The tool's answer: `session-keeper stats`, read-only, as text. */
  async storage(context: ToolContext): Promise<string> {
    if (!this.node.ok) return `session-keeper cannot run: ${this.node.why}.`;
    try {
      const run = await runCaptured(this.node.node, ['stats', '--largest', '5'], { cwd: context.directory || this.input.directory, signal: context.abort, timeoutMs: TOOL_TIMEOUT_MS });
      if (run.code === 0) return run.stdout.trim();
      const line = run.stderr.trim().split('\n').at(-1) ?? `exited with code ${run.code}`;
      return `session-keeper stats failed: ${line}`;
    } catch (error) {
      return `session-keeper stats could not start: ${(error as Error).message}`;
    }
  }
}

/** The plugin function OpenCode calls once per instance; it returns at once and works in the background. */
export async function SessionKeeperPlugin(input: PluginInput, rawOptions?: unknown): Promise<Hooks> {
  let shell: SessionKeeperShell;
  let problems: string[] = [];
  try {
    const read = readOptions(rawOptions);
    problems = read.problems;
    shell = new SessionKeeperShell(input, read.options);
    const startup = read.options.startup ?? true;
    // After OpenCode has finished loading plugins: a client call made during this function waits for it.
    setTimeout(() => {
      for (const problem of problems) void shell.log('warn', `session-keeper: ${problem}`);
      void shell.deliver().then(() => {
        if (startup) shell.check('startup');
      });
    }, 0);
  } catch (error) {
    const message = `session-keeper: the plugin could not start: ${(error as Error).message}`;
    setTimeout(() => void settle(() => input.client.app.log({ body: { service: SERVICE, level: 'error', message } })), 0);
    return {};
  }
  return {
    event: async ({ event }) => {
      try {
        if (event.type === 'session.idle') shell.onIdle();
      } catch {
        // never OpenCode's problem
      }
    },
    tool: {
      session_storage: {
        description:
          "Why OpenCode's session database is as big as it is: file, WAL and free pages; bytes per table and per event type; attachments; the largest sessions; size warnings crossed. Read-only (session-keeper stats).",
        args: {},
        execute: (_args, context) => shell.storage(context),
      },
    },
  };
}

export default SessionKeeperPlugin;
