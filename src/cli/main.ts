#!/usr/bin/env node
/**
 * `session-keeper`: a thin shell over the session service. Each command parses its flags, calls
 * one service method, prints the result (or `--json`), and turns any failure into one line on
 * stderr and a non-zero exit.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { oneLine, SkError } from '../core/errors.js';
import { defaultCacheDir, defaultDbPath } from '../core/paths.js';
import { SessionService } from '../main/service.js';
import { formatList, formatShow, formatStats } from './format.js';

export interface GlobalOptions {
  db: string;
  cacheDir: string;
  json: boolean;
}

export const positiveInt = (value: string): number => {
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new InvalidArgumentError('expected a positive whole number');
  return Number(value);
};

function print(json: boolean, value: unknown, human: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`);
}

/** Opens the service for one command and always closes it. */
async function withService<T>(globals: GlobalOptions, fn: (service: SessionService) => Promise<T>): Promise<T> {
  const service = await SessionService.open({ db: globals.db, cacheDir: globals.cacheDir });
  try {
    return await fn(service);
  } finally {
    await service.close();
  }
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('session-keeper')
    .description("Browse, size, archive and trim OpenCode's session database without running out of memory.")
    .addOption(new Option('--db <path>', 'OpenCode database file').default(defaultDbPath(), '$OPENCODE_DB or $XDG_DATA_HOME/opencode/opencode.db'))
    .addOption(new Option('--cache-dir <dir>', 'attachment cache').default(defaultCacheDir(), '$XDG_CACHE_HOME/session-keeper/attachments'))
    .option('--json', 'machine-readable output', false)
    .showHelpAfterError(false)
    .configureOutput({
      outputError: (text, write) => write(`session-keeper: ${text.replace(/^error: /, '')}`),
    })
    .exitOverride();

  const globals = (command: Command): GlobalOptions => command.optsWithGlobals<GlobalOptions>();

  program
    .command('stats')
    .description('file, WAL and free-page bytes; row counts; attachments; largest sessions; warnings')
    .option('--largest <n>', 'how many of the largest sessions to list', positiveInt, 10)
    .action(async (options: { largest: number }, command: Command) => {
      const g = globals(command);
      const stats = await withService(g, (s) => s.stats({ largest: options.largest }));
      print(g.json, stats, () => formatStats(stats));
    });

  program
    .command('list')
    .description('sessions, most recently updated first, with their bytes')
    .option('--limit <n>', 'sessions per page', positiveInt, 50)
    .option('--cursor <cursor>', 'continue after a previous page')
    .action(async (options: { limit: number; cursor?: string }, command: Command) => {
      const g = globals(command);
      const list = await withService(g, (s) => s.listSessions({ limit: options.limit, cursor: options.cursor ?? null }));
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
      const page = await withService(g, (s) =>
        s.showSession(sessionId, { limit: options.limit, cursor: options.cursor ?? null }),
      );
      print(g.json, page, () => formatShow(page));
    });

  program
    .command('attachment')
    .description('decode one attachment to a file (a part id, or part id.N for the Nth)')
    .argument('<ref>')
    .option('--out <file>', 'write the decoded bytes here (default: the attachment cache)')
    .action(async (ref: string, options: { out?: string }, command: Command) => {
      const g = globals(command);
      const result = await withService(g, (s) => s.attachment(ref, options.out));
      print(g.json, result, () => `${result.path}  (${result.mime}, ${result.bytes} bytes, sha256 ${result.sha256})`);
    });

  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
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
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
