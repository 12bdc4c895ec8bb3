/**
 * The commands that archive, restore, delete and evict sessions and give the space back:
 * `retention`, `archive`, `restore`, `delete`, `vacuum`, `compact`. Loaded only when one of them runs.
 */
import type { Command } from 'commander';
import { formatBytes } from '../../core/bytes.js';
import { SkError } from '../../core/errors.js';
import type { SelectorFlags } from '../../core/selectors.js';
import { formatCompactionPlan, formatPlan, print } from '../format.js';
import { addApplyOptions, applies, besideWriter, confirm, interactive } from './ask.js';
import { log, positiveInt, wholeNumber, type CommandHelpers } from './context.js';
import { addSelectorOptions, selectorOf } from './trim.js';

const retention = () => import('../../main/retention.js');
const archives = () => import('../../main/archives.js');
const compaction = () => import('../../main/compaction.js');
const maintenance = () => import('../../main/maintenance.js');

export function registerSessionCommands(program: Command, helpers: CommandHelpers): void {
  const retentionCommand = program
    .command('retention')
    .description('plan (--dry-run, the default) or apply (--apply) the retention policy from the config and flags; selectors narrow it to some sessions')
    .option('--max-size-mb <n>', 'evict oldest until the database fits', positiveInt)
    .option('--max-age-days <n>', 'evict sessions older than this', positiveInt)
    .option('--max-sessions <n>', 'keep at most this many root sessions', positiveInt);
  addApplyOptions(addSelectorOptions(retentionCommand), {
    dryRun: 'print the plan and change nothing (default)',
    apply: 'archive, evict and reclaim',
    noArchive: 'evict without archiving first',
    yes: 'do not ask before applying',
  }).action(async (options: { maxSizeMb?: number; maxAgeDays?: number; maxSessions?: number; dryRun?: boolean; apply?: boolean; archive: boolean; yes?: boolean } & SelectorFlags, command: Command) => {
      const g = helpers.sqliteFile(command, 'retention');
      const selector = selectorOf(options);
      const apply = applies(options);
      const config = await helpers.settings({
        maxSizeMB: options.maxSizeMb,
        maxAgeDays: options.maxAgeDays,
        maxSessions: options.maxSessions,
        archive: options.archive === false ? false : undefined,
      });
      if (!apply) {
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
      const g = helpers.sqliteFile(command, 'archive');
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
      const g = helpers.sqliteFile(command, 'restore');
      if (options.from) {
        await (await import('./external.js')).restoreFromCommand(g, options.from, args);
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
  addApplyOptions(addSelectorOptions(deleteCommand), { noArchive: 'delete without archiving first', yes: 'do not ask before deleting' }).action(async (given: string[], options: { archive: boolean; yes?: boolean } & SelectorFlags, command: Command) => {
      const g = helpers.sqliteFile(command, 'delete');
      const config = await helpers.settings({ archive: options.archive === false ? false : undefined });
      const selector = selectorOf(options);
      const { selectorNarrows } = await import('../../core/selectors.js');
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
      const g = helpers.sqliteFile(command, 'vacuum');
      if (await besideWriter(g.db, { yes: options.yes, unsafe: 'VACUUM', yesRunsUnsafe: true })) throw new SkError('locked', `OpenCode is using ${g.db}: nothing was changed; run again with OpenCode closed (or --yes)`);
      const result = await (await maintenance()).reclaimSpace(g.db, options.incremental ? 'convert-incremental' : 'reclaim');
      print(g.json, result, () => `${formatBytes(result.bytesBefore)} -> ${formatBytes(result.bytesAfter)} (${result.mode}).`);
    });

  const compactCommand = program
    .command('compact')
    .description("drop superseded snapshots from OpenCode's event log (every session stays as it is); dry run by default")
    .option('--orphans', 'also remove events of sessions that no longer exist');
  addApplyOptions(compactCommand, {
    dryRun: 'print what would be freed and change nothing (default)',
    apply: 'compact, then reclaim the space',
    yes: 'do not ask before applying',
  }).action(async (options: { dryRun?: boolean; apply?: boolean; orphans?: boolean; yes?: boolean }, command: Command) => {
      const g = helpers.sqliteFile(command, 'compact');
      const apply = applies(options);
      const { applyCompaction, planCompaction } = await compaction();
      const plan = await planCompaction({ db: g.db, orphans: options.orphans ?? false });
      if (!apply) {
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

}
