#!/usr/bin/env node
/**
 * `session-keeper`: a thin shell over the session service. Each command parses its flags, calls
 * one service method, prints the result (or `--json`), and turns any failure into one line on
 * stderr and a non-zero exit.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { oneLine, SkError } from '../core/errors.js';
import { defaultCacheDir, defaultDbPath } from '../core/paths.js';
import type { SessionService } from '../main/service.js';
import { formatBytes } from '../core/bytes.js';
import { mergeOverrides, type SessionConfig, type SessionOverrides } from '../core/config.js';
import { isConnectionString } from '../core/storage.js';
import { loadConfig } from '../main/config-file.js';
import { registerExternalCommands } from './commands/external.js';
import { registerServe } from './commands/serve.js';
import { besideWriter, confirm, interactive } from './commands/ask.js';
import { registerClean } from './commands/clean.js';
import { registerSync } from './commands/sync.js';
import { addSelectorOptions, registerTrim, selectorOf } from './commands/trim.js';
import type { SelectorFlags } from '../core/selectors.js';
import { registerPluginCommands } from './commands/plugin.js';
import { removeTempFiles } from '../store/temp-files.js';
import { formatCompactionPlan, formatList, formatPlan, formatShow, formatStats, print } from './format.js';

// Each command loads the modules it runs when it runs: `list` starts without the writers,
// archives, retention, migration or web mode.
const retention = () => import('../main/retention.js');
const archives = () => import('../main/archives.js');
const compaction = () => import('../main/compaction.js');
const maintenance = () => import('../main/maintenance.js');

export interface GlobalOptions {
  db: string;
  cacheDir: string;
  config?: string;
  json: boolean;
}

export const positiveInt = (value: string): number => {
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new InvalidArgumentError('expected a positive whole number');
  return Number(value);
};

const wholeNumber = (value: string): number => {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('expected a whole number (0 or more)');
  return Number(value);
};


/** Opens the service for one command and always closes it. */
async function withService<T>(globals: GlobalOptions, fn: (service: SessionService) => Promise<T>): Promise<T> {
  const { SessionService } = await import('../main/service.js');
  const service = await SessionService.open({ db: globals.db, cacheDir: globals.cacheDir, inline: true });
  try {
    return await fn(service);
  } finally {
    await service.close();
  }
}

/** The version in package.json (two folders up from dist/cli/). */
function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

export function buildProgram(): Command {
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

  const globals = (command: Command): GlobalOptions => {
    const g = command.optsWithGlobals<GlobalOptions>();
    // Without --db or OPENCODE_DB, the config's `storage` + `connectionString` choose the store.
    if (program.getOptionValueSource('db') === 'default' && !process.env['OPENCODE_DB']) {
      const { config } = loadConfig({ path: g.config });
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
    const { config } = loadConfig({ path: g.config });
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
        : await withService(g, (s) => s.listSessions({ limit: options.limit, cursor: options.cursor ?? null }));
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

  const settings = (g: GlobalOptions, overrides: SessionOverrides = {}): SessionConfig => {
    const loaded = loadConfig({ path: g.config });
    for (const warning of loaded.warnings) process.stderr.write(`session-keeper: ${warning}\n`);
    return mergeOverrides(loaded.config, overrides);
  };
  const log = (line: string): void => {
    process.stderr.write(`${line}\n`);
  };

  const retentionCommand = program
    .command('retention')
    .description('plan (--dry-run, the default) or apply (--apply) the retention policy from the config and flags; selectors narrow it to some sessions')
    .option('--max-size-mb <n>', 'evict oldest until the database fits', positiveInt)
    .option('--max-age-days <n>', 'evict sessions older than this', positiveInt)
    .option('--max-sessions <n>', 'keep at most this many root sessions', positiveInt);
  addSelectorOptions(retentionCommand)
    .option('--dry-run', 'print the plan and change nothing (default)')
    .option('--apply', 'archive, evict and reclaim')
    .option('--no-archive', 'evict without archiving first')
    .option('--yes', 'do not ask before applying')
    .action(async (options: { maxSizeMb?: number; maxAgeDays?: number; maxSessions?: number; dryRun?: boolean; apply?: boolean; archive: boolean; yes?: boolean } & SelectorFlags, command: Command) => {
      const g = sqliteFile(command, 'retention');
      const selector = selectorOf(options);
      if (options.apply && options.dryRun) throw new SkError('usage', '--dry-run and --apply exclude each other');
      const config = settings(g, {
        maxSizeMB: options.maxSizeMb,
        maxAgeDays: options.maxAgeDays,
        maxSessions: options.maxSessions,
        archive: options.archive === false ? false : undefined,
      });
      if (!options.apply) {
        const plan = await (await retention()).dryRun({ db: g.db, config, selector });
        print(g.json, { evict: plan.evict, freesBytes: plan.freesBytes, storeBytes: plan.storeBytes, unmetSize: plan.unmetSize, ...(plan.mirrored ? { mirrored: plan.mirrored } : {}) }, () => formatPlan(plan, config));
        return;
      }
      const beside = await besideWriter(g.db, { yes: options.yes, unsafe: 'the VACUUM that gives the space back' });
      let seen: Set<string> | undefined;
      if (!options.yes) {
        // The plan is shown first, then asked about, and only what was shown is evicted.
        const plan = await (await retention()).dryRun({ db: g.db, config, selector });
        if (plan.evict.length === 0) {
          print(g.json, { evicted: [], archive: null, archives: [], bytesBefore: 0, bytesAfter: 0, changed: [], reclaim: 'none', unmetBytes: 0 }, () => 'Nothing to evict.');
          return;
        }
        const sessions = plan.evict.reduce((n, e) => n + 1 + e.children.length, 0);
        if (interactive()) process.stderr.write(`${formatPlan(plan, config).split('\n').slice(0, -1).join('\n')}\n`);
        if (!(await confirm(`${config.archive ? 'Archive and delete' : 'Delete, without archiving,'} these ${sessions} sessions?`, false))) throw new SkError('usage', 'nothing was changed');
        seen = new Set(plan.evict.map((e) => e.id));
      }
      const result = await (await retention()).applyRetention({ db: g.db, config, cacheDir: g.cacheDir, log, seen, besideWriter: beside, selector });
      print(g.json, result, () =>
        result.evicted.length === 0
          ? 'Nothing to evict.'
          : `Evicted ${result.evicted.length} sessions${result.archive ? `, archived to ${result.archives.join(', ')}` : ''}.\n` +
            `Database ${formatBytes(result.bytesBefore)} -> ${formatBytes(result.bytesAfter)} (reclaimed by ${result.reclaim}).` +
            (result.changed.length ? `\n${result.changed.length} sessions changed after archiving and were kept.` : '') +
            (result.unmetBytes > 0 ? `\nStill ${formatBytes(result.unmetBytes)} over the size limit: run again to plan more.` : ''),
      );
    });

  const archiveCommand = program
    .command('archive')
    .description('write sessions (with their child sessions) to a JSON archive; .gz when the name ends so')
    .requiredOption('--output <file>', 'archive file (with --split, a folder)')
    .option('--session <id...>', 'sessions to archive (default: every session)')
    .option('--older-than-days <n>', 'root sessions created more than N days ago', wholeNumber);
  addSelectorOptions(archiveCommand)
    .option('--split', "one <sessionID>.json per session in OpenCode's export shape, for `opencode import`")
    .option('--force', 'replace existing files')
    .action(async (options: { output: string; session?: string[]; olderThanDays?: number; split?: boolean; force?: boolean } & SelectorFlags, command: Command) => {
      const g = sqliteFile(command, 'archive');
      // --older-than-days is the --older-than selector in days: both narrow the same sessions.
      const selector = selectorOf(options);
      const result = await (await archives()).archiveSessions({
        db: g.db,
        cacheDir: g.cacheDir,
        output: options.output,
        sessions: options.session,
        selector,
        split: options.split ?? false,
        force: options.force ?? false,
      });
      print(g.json, result, () =>
        options.split
          ? `Wrote ${result.sessions} session files (${formatBytes(result.bytes)}) to ${result.archive}, verified; each one: opencode import <file>.`
          : `Archived ${result.sessions} sessions (${formatBytes(result.bytes)}) to ${result.archive}, verified.`,
      );
    });

  program
    .command('restore')
    .description('put the sessions of an archive back (sessions already present are skipped); with --from, sessions from an external database')
    .argument('<file|sessionID...>')
    .option('--from <connectionString>', 'restore these session ids from an external database instead of an archive file')
    .action(async (args: string[], options: { from?: string }, command: Command) => {
      const g = sqliteFile(command, 'restore');
      if (options.from) {
        await (await import('./commands/external.js')).restoreFromCommand(g, options.from, args);
        return;
      }
      if (args.length !== 1) throw new SkError('usage', 'restore takes one archive file (or --from <connectionString> <sessionID...>)');
      const result = await (await archives()).restoreArchive(g.db, args[0] as string);
      const restored = result.imported.map((s) => s.id);
      const putBack = result.putBack ?? [];
      const absent = result.absent ?? [];
      print(g.json, { restored: restored.length, skipped: result.skipped.length, sessions: restored, putBack, absent }, () =>
        `Restored ${restored.length} sessions; ${result.skipped.length} were already present.` +
          (putBack.length ? ` Put the trimmed content back into ${putBack.length} session${putBack.length === 1 ? '' : 's'} (${putBack.reduce((n, s) => n + s.rows, 0)} rows).` : '') +
          (absent.length ? ` ${absent.length} trimmed session${absent.length === 1 ? ' is' : 's are'} not in the database (${absent.slice(0, 3).join(', ')}): this archive holds only what was trimmed; restore the session's own archive first, then this one.` : ''),
      );
    });

  const deleteCommand = program
    .command('delete')
    .description('delete sessions (given, or chosen by selectors) with their children, events and diff files (archived first), and reclaim the space')
    .argument('[sessionID...]');
  addSelectorOptions(deleteCommand)
    .option('--no-archive', 'delete without archiving first')
    .option('--yes', 'do not ask before deleting')
    .action(async (given: string[], options: { archive: boolean; yes?: boolean } & SelectorFlags, command: Command) => {
      const g = sqliteFile(command, 'delete');
      const config = settings(g, { archive: options.archive === false ? false : undefined });
      const selector = selectorOf(options);
      const { selectorNarrows } = await import('../core/selectors.js');
      if (given.length > 0 && selectorNarrows(selector)) throw new SkError('usage', 'give session ids or selectors, not both');
      if (given.length === 0 && !selectorNarrows(selector)) throw new SkError('usage', 'delete which sessions? give their ids, or selectors (--subagents, --larger-than, --keep-latest, --project, --older-than)');
      const selected = given.length > 0 ? [] : await (await maintenance()).selectedSessions(g.db, selector);
      const ids = given.length > 0 ? given : selected.map((s) => s.id);
      if (ids.length === 0) {
        print(g.json, { evicted: [], archive: null, bytesAfter: 0, changed: [], reclaim: 'none' }, () => 'No session matches.');
        return;
      }
      // The sessions chosen are shown before the question: what is deleted is exactly these.
      if (interactive() && !options.yes && selected.length > 0) {
        for (const s of selected.slice(0, 20)) process.stderr.write(`  ${s.id}  ${formatBytes(s.bytes).padStart(8)}  ${s.title.slice(0, 60)}\n`);
        if (selected.length > 20) process.stderr.write(`  ... and ${selected.length - 20} more\n`);
      }
      const missing = await (await maintenance()).missingSessions(g.db, ids);
      if (missing[0] !== undefined) throw new SkError('not-found', `no session ${missing[0]} in ${g.db}`);
      const beside = await besideWriter(g.db, { yes: options.yes, unsafe: 'the VACUUM that gives the space back' });
      const what = `${ids.length} ${selector.subagents ? 'child ' : ''}session${ids.length === 1 ? '' : 's'} (with their child sessions)`;
      if (!(await confirm(config.archive ? `Archive to ${config.archiveDir} and delete ${what}?` : `Delete ${what} without archiving?`, options.yes))) {
        throw new SkError('usage', 'nothing was deleted');
      }
      const result = await (await retention()).archiveThenDelete({ db: g.db, cacheDir: g.cacheDir, archive: config.archive, archiveDir: config.archiveDir, log, reclaim: 'when-worth-it', besideWriter: beside }, ids);
      print(g.json, result, () =>
        `Deleted ${result.evicted.length} sessions${result.archive ? ` (archived to ${result.archive})` : ''}; database now ${formatBytes(result.bytesAfter)}` +
          (result.reclaim === 'deferred' ? ` (the freed space stays inside the file, where SQLite reuses it; 'session-keeper vacuum' gives it back to the disk).` : '.'),
      );
    });

  program
    .command('vacuum')
    .description('reclaim free pages (VACUUM), or with --incremental convert the file to auto_vacuum=INCREMENTAL once')
    .option('--incremental', 'convert to auto_vacuum=INCREMENTAL so later deletes shrink the file in small steps')
    .option('--yes', 'run even while OpenCode uses the database (its writes wait)')
    .action(async (options: { incremental?: boolean; yes?: boolean }, command: Command) => {
      const g = sqliteFile(command, 'vacuum');
      if (await besideWriter(g.db, { yes: options.yes, unsafe: 'VACUUM', yesRunsUnsafe: true })) throw new SkError('locked', `OpenCode is using ${g.db}: nothing was changed; run again with OpenCode closed (or --yes)`);
      const result = await (await maintenance()).reclaimSpace(g.db, options.incremental ? 'convert-incremental' : 'reclaim');
      print(g.json, result, () => `${formatBytes(result.bytesBefore)} -> ${formatBytes(result.bytesAfter)} (${result.mode}).`);
    });

  program
    .command('compact')
    .description("drop superseded snapshots from OpenCode's event log (every session stays as it is); dry run by default")
    .option('--dry-run', 'print what would be freed and change nothing (default)')
    .option('--apply', 'compact, then reclaim the space')
    .option('--orphans', 'also remove events of sessions that no longer exist')
    .option('--yes', 'do not ask before applying')
    .action(async (options: { dryRun?: boolean; apply?: boolean; orphans?: boolean; yes?: boolean }, command: Command) => {
      const g = sqliteFile(command, 'compact');
      if (options.apply && options.dryRun) throw new SkError('usage', '--dry-run and --apply exclude each other');
      const { applyCompaction, planCompaction } = await compaction();
      const plan = await planCompaction({ db: g.db, orphans: options.orphans ?? false });
      if (!options.apply) {
        print(g.json, plan, () => formatCompactionPlan(plan, options.orphans ?? false));
        return;
      }
      if (plan.freesBytes === 0) {
        print(g.json, { compaction: null, reclaim: null, freesBytes: 0 }, () => 'Nothing to compact.');
        return;
      }
      const beside = await besideWriter(g.db, { yes: options.yes, unsafe: 'the VACUUM that gives the space back' });
      if (!(await confirm(`Remove ${plan.compactable.count.toLocaleString('en-US')} superseded event snapshots (${formatBytes(plan.freesBytes)})? Every session stays as it is.`, options.yes))) {
        throw new SkError('usage', 'nothing was changed');
      }
      const outcome = await applyCompaction({ db: g.db, orphans: options.orphans ?? false, besideWriter: beside });
      print(g.json, outcome, () =>
        `Removed ${outcome.compaction.deleted.count.toLocaleString('en-US')} superseded event snapshots (${formatBytes(outcome.compaction.deleted.bytes)})` +
          `${outcome.compaction.orphansDeleted.count ? ` and ${outcome.compaction.orphansDeleted.count.toLocaleString('en-US')} orphan events` : ''}; ` +
          `database ${formatBytes(outcome.reclaim.bytesBefore)} -> ${formatBytes(outcome.reclaim.bytesAfter)} (reclaimed by ${outcome.reclaim.mode}).`,
      );
    });

  registerServe(program);
  registerClean(program, { sqliteFile, settings });
  registerTrim(program, { sqliteFile, settings });
  registerPluginCommands(program, { sqliteFile, settings });

  registerExternalCommands(program, globals);
  registerSync(program);

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
