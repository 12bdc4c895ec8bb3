#!/usr/bin/env node
/**
 * `session-keeper`: a thin shell over the session service. Each command parses its flags, calls
 * one service method, prints the result (or `--json`), and turns any failure into one line on
 * stderr and a non-zero exit.
 */
import { Command, Option } from 'commander';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { oneLine, SkError } from '../core/errors.js';
import { defaultCacheDir, defaultDbPath } from '../core/paths.js';
import type { SessionConfig, SessionOverrides } from '../core/config.js';
import { isConnectionString } from '../core/storage.js';
import type { SessionService } from '../main/service.js';
import { configReader, type ConfigReader } from '../main/config-reader.js';
import { positiveInt, type CommandHelpers, type GlobalOptions } from './commands/context.js';
import { packageVersion } from '../store/package-files.js';
import { removeTempFiles } from '../store/temp-files.js';
import { formatList, formatShow, formatStats, print } from './format.js';

export type { GlobalOptions } from './commands/context.js';

/**
 * The commands declared outside this file, by the module that declares them, in the order help
 * lists them. A run loads only the module of the command it names (every one for help or an
 * unknown name), so `list`, `show` and `stats` start without the writers, selectors and schemas.
 */
const COMMAND_MODULES: readonly { names: readonly string[]; register: (program: Command, helpers: CommandHelpers) => Promise<void> }[] = [
  { names: ['retention', 'archive', 'restore', 'delete', 'vacuum', 'compact'], register: async (p, h) => (await import('./commands/sessions.js')).registerSessionCommands(p, h) },
  { names: ['serve'], register: async (p) => (await import('./commands/serve.js')).registerServe(p) },
  { names: ['clean'], register: async (p, h) => (await import('./commands/clean.js')).registerClean(p, h) },
  { names: ['trim'], register: async (p, h) => (await import('./commands/trim.js')).registerTrim(p, h) },
  { names: ['startup', 'install-plugin'], register: async (p, h) => (await import('./commands/plugin.js')).registerPluginCommands(p, h) },
  { names: ['migrate'], register: async (p, h) => (await import('./commands/external.js')).registerExternalCommands(p, h.globals) },
  { names: ['sync'], register: async (p) => (await import('./commands/sync.js')).registerSync(p) },
];

/** Global options that take a value: what to skip when looking for the command's name. */
const VALUED_GLOBALS: ReadonlySet<string> = new Set(['--db', '--cache-dir', '--config']);

/** The first word of `argv` that is not a global option or its value: the command a run names, if any. */
export function commandName(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') return argv[i + 1];
    if (VALUED_GLOBALS.has(arg)) i++;
    else if (!arg.startsWith('-')) return arg;
  }
  return undefined;
}

/** Opens the service for one command and always closes it. */
async function withService<T>(globals: GlobalOptions, fn: (service: SessionService) => Promise<T>, reads: { mapped?: boolean } = {}): Promise<T> {
  const { SessionService } = await import('../main/service.js');
  const service = await SessionService.open({ db: globals.db, cacheDir: globals.cacheDir, inline: true, mapped: reads.mapped ?? false });
  try {
    return await fn(service);
  } finally {
    await service.close();
  }
}

/**
 * `list` reads one page of sessions and their sizes: its scattered rows through a memory map cost page
 * faults, not a read call each. Not `show`: a page holding a 300 MB PDF would map every page of it (RSS).
 */
const PAGE_READS = { mapped: true } as const;

/** The program with the read commands and the modules of the commands `argv` may run (all of them when it names none we know). */
export async function buildProgram(argv: readonly string[] = []): Promise<Command> {
  const program = new Command();
  program
    .name('session-keeper')
    .description("Browse, size, archive and trim OpenCode's session database without running out of memory.")
    .addOption(new Option('--db <path>', 'OpenCode database file').default(defaultDbPath(), '$OPENCODE_DB or $XDG_DATA_HOME/opencode/opencode.db'))
    .addOption(new Option('--cache-dir <dir>', 'attachment cache').default(defaultCacheDir(), '$XDG_CACHE_HOME/session-keeper/attachments'))
    .option('--config <path>', 'OpenCode config file (default: $XDG_CONFIG_HOME/opencode/opencode.json[c])')
    .option('--json', 'machine-readable output', false)
    .version(packageVersion(), '-V, --version', 'print the version')
    .showHelpAfterError(false)
    .configureOutput({
      outputError: (text, write) => write(`session-keeper: ${text.replace(/^error: /, '')}`),
    })
    .exitOverride();

  // The config files are found (and their session blocks read) before the action runs, so the
  // commands read the config synchronously where they ask, with the schema loaded only when there
  // are settings to check; a broken file still fails only in a command that asks for the config.
  let readConfig: ConfigReader | undefined;
  program.hook('preAction', async () => {
    readConfig = await configReader({ path: program.opts<GlobalOptions>().config });
  });
  const loadConfig = (): ReturnType<ConfigReader> => {
    if (!readConfig) throw new Error('the config is read only from inside a command');
    return readConfig();
  };

  const globals = (command: Command): GlobalOptions => {
    const g = command.optsWithGlobals<GlobalOptions>();
    // Without --db or OPENCODE_DB, the config's `storage` + `connectionString` choose the store.
    if (program.getOptionValueSource('db') === 'default' && !process.env['OPENCODE_DB']) {
      const { config } = loadConfig();
      if (config.storage !== 'sqlite' && config.connectionString) g.db = config.connectionString;
    }
    return g;
  };
  /** Commands that rewrite the SQLite file itself. */
  const sqliteFile = (command: Command, name: string): GlobalOptions => {
    const g = globals(command);
    if (isConnectionString(g.db)) {
      throw new SkError('usage', `${name} works on OpenCode's SQLite file: give --db a file (external databases: migrate, restore --from, offload)`);
    }
    return g;
  };

  /** With --db a file and `storage` naming a server in the config, that server: list, show and stats cover both. */
  const mirrorFor = (g: GlobalOptions): string | undefined => {
    if (isConnectionString(g.db)) return undefined;
    const { config } = loadConfig();
    return config.storage !== 'sqlite' ? config.connectionString : undefined;
  };
  const oneView = () => import('../main/one-view.js');

  program
    .command('stats')
    .description('file, WAL and free-page bytes; row counts; attachments; largest sessions; warnings')
    .option('--largest <n>', 'how many of the largest sessions to list', positiveInt, 10)
    .action(async (options: { largest: number }, command: Command) => {
      const g = globals(command);
      const stats = await withService(g, (s) => s.stats({ largest: options.largest }));
      const mirror = mirrorFor(g);
      if (mirror) stats.mirror = await (await oneView()).mirrorFigures(g.db, mirror);
      print(g.json, stats, () => formatStats(stats));
    });

  program
    .command('list')
    .description('sessions, most recently updated first, with their bytes')
    .option('--limit <n>', 'sessions per page', positiveInt, 50)
    .option('--cursor <cursor>', 'continue after a previous page')
    .action(async (options: { limit: number; cursor?: string }, command: Command) => {
      const g = globals(command);
      const mirror = mirrorFor(g);
      const list = mirror
        ? await (await oneView()).listBoth(g.db, mirror, { limit: options.limit, cursor: options.cursor ?? null })
        : await withService(g, (s) => s.listSessions({ limit: options.limit, cursor: options.cursor ?? null }), PAGE_READS);
      print(g.json, list, () => formatList(list));
    });

  program
    .command('show')
    .description("one session's messages and parts, paged; attachments as references")
    .argument('<sessionID>')
    .option('--limit <n>', 'messages per page', positiveInt, 20)
    .option('--cursor <cursor>', 'continue after a previous page')
    .action(async (sessionId: string, options: { limit: number; cursor?: string }, command: Command) => {
      const g = globals(command);
      const mirror = mirrorFor(g);
      const page = mirror
        ? await (await oneView()).showBoth(g.db, mirror, sessionId, { limit: options.limit, cursor: options.cursor ?? null })
        : await withService(g, (s) => s.showSession(sessionId, { limit: options.limit, cursor: options.cursor ?? null }));
      print(g.json, page, () => formatShow(page));
    });

  program
    .command('attachment')
    .description('decode one attachment to a file (a part id, or part id.N for the Nth)')
    .argument('<ref>')
    .option('--out <file>', 'write the decoded bytes here (default: the attachment cache)')
    .option('--force', 'replace --out when it exists')
    .action(async (ref: string, options: { out?: string; force?: boolean }, command: Command) => {
      const g = globals(command);
      const { checkOutputFile } = await import('../main/output-paths.js');
      const out = options.out === undefined ? undefined : checkOutputFile(options.out, { db: g.db, cacheDir: g.cacheDir, force: options.force ?? false }, '--out');
      const mirror = mirrorFor(g);
      const result = mirror
        ? await withService(g, async (s) => {
            const { attachmentThrough, openForEach } = await oneView();
            return attachmentThrough(s, openForEach(mirror), ref, out);
          })
        : await withService(g, (s) => s.attachment(ref, out));
      print(g.json, result, () => `${result.path}  (${result.mime}, ${result.bytes} bytes, sha256 ${result.sha256})`);
    });

  const settings = async (overrides: SessionOverrides = {}): Promise<SessionConfig> => {
    const loaded = loadConfig();
    for (const warning of loaded.warnings) process.stderr.write(`session-keeper: ${warning}\n`);
    return (await import('../core/config.js')).mergeOverrides(loaded.config, overrides);
  };

  const named = commandName(argv);
  const helpers: CommandHelpers = { globals, sqliteFile, settings };
  const wanted = COMMAND_MODULES.filter((m) => named !== undefined && m.names.includes(named));
  const isRead = named !== undefined && program.commands.some((c) => c.name() === named);
  for (const module of isRead ? [] : wanted.length > 0 ? wanted : COMMAND_MODULES) await module.register(program, helpers);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = await buildProgram(argv);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('commander.')) {
      // commander has printed its own message (help, version, or a usage error)
      return code === 'commander.helpDisplayed' || code === 'commander.version' || code === 'commander.help' ? 0 : 2;
    }
    process.stderr.write(`session-keeper: ${oneLine(error)}\n`);
    return error instanceof SkError && error.code === 'usage' ? 2 : 1;
  }
}

const invokedDirectly = (() => {
  try {
    return realpathSync(process.argv[1] ?? '') === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
})();

if (invokedDirectly) {
  // A failure is one line of ours; a library's own console lines would come before it (mysql2 prints
  // "got packets out of order" when a server refuses a packet too large), so they show only when asked for.
  if (process.env['SESSION_KEEPER_DEBUG'] !== '1') console.error = console.warn = () => undefined;
  // `| head` closing the pipe is not an error: stop quietly.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(0);
    throw error;
  });
  // Ctrl-C or a kill between two steps: temp files go, and every transaction so far stands whole.
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.on(signal, () => {
      removeTempFiles();
      process.stderr.write(`session-keeper: interrupted; what was done so far is complete, nothing half-done remains\n`);
      process.exit(code);
    });
  }
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
