/**
 * `session-keeper trim --reasoning | --compacted-outputs | --attachments [selectors]`: shrink
 * sessions without deleting them, archived first; a dry run by default. Also the selector flags
 * `retention`, `archive`, `delete` and `trim` share.
 */
import type { Command } from 'commander';
import { formatBytes } from '../../core/bytes.js';
import type { SessionConfig, SessionOverrides } from '../../core/config.js';
import { SkError } from '../../core/errors.js';
import { parseDuration, selectorFromFlags, type SelectorFlags, type SessionSelector } from '../../core/selectors.js';
import type { TrimMode, TrimOutcome, TrimPlan } from '../../core/trim.js';
import { print } from '../format.js';
import { addApplyOptions, applies, besideWriter, confirm, interactive, type ApplyFlags } from './ask.js';

interface TrimGlobals {
  db: string;
  cacheDir: string;
  json: boolean;
}

/** Adds the shared selector flags; `olderThanDays` only where the command has no flag of that name already. */
export function addSelectorOptions(command: Command, options: { olderThan?: boolean } = {}): Command {
  command
    .option('--subagents', 'child (subagent) sessions only')
    .option('--larger-than <size>', "sessions holding more than SIZE of their own rows (50M, 1.5G, 700K)")
    .option('--keep-latest <n>', 'spare the N most recently active sessions')
    .option('--project <id|dir>', 'sessions of one project, by its id or its directory');
  if (options.olderThan !== false) command.option('--older-than <duration>', 'sessions created longer ago than this (14d, 12h, 2w)');
  return command;
}

/** The selector of a command's flags (a bad value is one usage line). */
export function selectorOf(flags: SelectorFlags): SessionSelector {
  return selectorFromFlags(flags);
}

interface TrimFlags extends SelectorFlags, ApplyFlags {
  reasoning?: boolean;
  compactedOutputs?: boolean;
  attachments?: boolean;
  session?: string[];
}

const MODE_TEXT: Record<TrimMode, string> = {
  reasoning: 'reasoning parts and items',
  'compacted-outputs': 'outputs of tool calls OpenCode compacted',
  attachments: 'attachments (data: URLs)',
};

export function formatTrimPlan(plan: TrimPlan, archiveDir: string | null): string {
  const lines = plan.byMode.map((m) => `${MODE_TEXT[m.mode].padEnd(42)}${`${m.rows.toLocaleString('en-US')} rows`.padStart(12)}${formatBytes(m.bytes).padStart(10)}`);
  lines.push('', `${plan.sessions.length} session${plan.sessions.length === 1 ? '' : 's'} would be trimmed, freeing about ${formatBytes(plan.freesBytes)}.${archiveDir ? ` What is trimmed is archived first, to ${archiveDir}; 'session-keeper restore <archive>' puts it back.` : plan.targets.length ? ' Nothing is archived (archiving is off).' : ''}`);
  lines.push('Nothing was changed (dry run). Apply with --apply.');
  return lines.join('\n');
}

function formatTrimOutcome(outcome: TrimOutcome): string {
  const rows = Object.values(outcome.rows).reduce((n, r) => n + r, 0);
  if (rows === 0) return 'Nothing to trim.';
  return (
    `Trimmed ${rows.toLocaleString('en-US')} rows in ${outcome.sessions.length} session${outcome.sessions.length === 1 ? '' : 's'}${outcome.archive ? `, archived first to ${outcome.archive} (verified)` : ''}.\n` +
    `Database ${formatBytes(outcome.bytesBefore)} -> ${formatBytes(outcome.bytesAfter)} (reclaimed by ${outcome.reclaim}).` +
    (outcome.changed ? `\n${outcome.changed} rows changed after they were archived and were left as they are.` : '')
  );
}

export function registerTrim<G extends TrimGlobals>(
  program: Command,
  helpers: { sqliteFile: (command: Command, name: string) => G; settings: (overrides?: SessionOverrides) => Promise<SessionConfig> },
): void {
  const command = program
    .command('trim')
    .description('shrink sessions without deleting them (reasoning, compacted tool outputs, attachments), archived first; dry run by default')
    .option('--reasoning', 'remove reasoning parts (and reasoning items of the newer layout)')
    .option('--compacted-outputs', 'empty the outputs and attachments of tool calls OpenCode marked compacted')
    .option('--attachments', 'replace attachments by a small placeholder (with --older-than-days N: only older ones)')
    .option('--older-than-days <n>', 'with --attachments: only attachments older than N days; otherwise sessions created more than N days ago', (v: string) => {
      if (!/^\d+$/.test(v)) throw new SkError('usage', `--older-than-days: expected a whole number, got ${JSON.stringify(v)}`);
      return Number(v);
    })
    .option('--session <id...>', 'sessions to trim (with their child sessions)');
  addApplyOptions(addSelectorOptions(command), {
    dryRun: 'print what would be trimmed and change nothing (default)',
    apply: 'archive, trim, reclaim',
    noArchive: 'trim without archiving first',
    yes: 'do not ask before trimming',
  }).action(async (flags: TrimFlags, cmd: Command) => {
      const g = helpers.sqliteFile(cmd, 'trim');
      const apply = applies(flags);
      const modes: TrimMode[] = [flags.reasoning ? 'reasoning' : null, flags.compactedOutputs ? 'compacted-outputs' : null, flags.attachments ? 'attachments' : null].filter((m): m is TrimMode => m !== null);
      if (modes.length === 0) throw new SkError('usage', 'trim what? give --reasoning, --compacted-outputs and/or --attachments');
      // With --attachments, an age is the attachments' age; otherwise it selects sessions.
      const attachmentAge = flags.attachments && flags.olderThanDays !== undefined;
      const selector = selectorOf({ ...flags, olderThanDays: attachmentAge ? undefined : flags.olderThanDays });
      const config = await helpers.settings({ archive: flags.archive === false ? false : undefined });
      const { applyTrimRun, planTrimRun } = await import('../../main/trim.js');
      const run = {
        db: g.db,
        cacheDir: g.cacheDir,
        modes,
        selector,
        ...(flags.session ? { sessions: flags.session } : {}),
        ...(attachmentAge ? { attachmentsOlderThanMs: parseDuration(`${flags.olderThanDays}d`) } : {}),
        archive: config.archive,
        archiveDir: config.archiveDir,
      };
      const plan = await planTrimRun(run);
      const archiveNote = config.archive ? config.archiveDir : null;
      if (!apply) {
        print(g.json, plan, () => formatTrimPlan(plan, archiveNote));
        return;
      }
      if (plan.targets.length === 0) {
        print(g.json, { modes, archive: null, sessions: [], rows: {}, changed: 0, freesBytes: 0, bytesBefore: 0, bytesAfter: 0, reclaim: 'none' } satisfies TrimOutcome, () => 'Nothing to trim.');
        return;
      }
      const beside = await besideWriter(g.db, { yes: flags.yes, unsafe: 'the VACUUM that gives the space back' });
      if (interactive() && !flags.yes) process.stderr.write(`${formatTrimPlan(plan, archiveNote).split('\n').slice(0, -1).join('\n')}\n`);
      if (!(await confirm(`${config.archive ? 'Archive and trim' : 'Trim, without archiving,'} these ${plan.sessions.length} sessions?`, flags.yes))) throw new SkError('usage', 'nothing was changed');
      const outcome = await applyTrimRun({ ...run, seen: plan, besideWriter: beside });
      print(g.json, outcome, () => formatTrimOutcome(outcome));
    });
}
