/**
 * `session-keeper clean [--diffs] [--snapshot-temp] [--legacy-json] [--dry-run | --apply]`: the
 * data folder's clean-ups of what nothing references. A dry run by default; `--apply` removes
 * exactly what the plan shows (asked on a terminal), orphan diffs and the legacy tree archived first.
 */
import type { Command } from 'commander';
import { formatBytes as bytes } from '../../core/bytes.js';
import type { SessionConfig, SessionOverrides } from '../../core/config.js';
import { CLEAN_TARGETS, type CleanPlan, type CleanResult, type CleanTarget } from '../../core/data-folder.js';
import { SkError } from '../../core/errors.js';
import { print } from '../format.js';
import { addApplyOptions, applies, besideWriter, confirm, type ApplyFlags } from './ask.js';

interface CleanGlobals {
  db: string;
  json: boolean;
}

interface CleanFlags extends ApplyFlags {
  diffs?: boolean;
  snapshotTemp?: boolean;
  legacyJson?: boolean;
}

const plural = (n: number, word: string): string => `${n.toLocaleString('en-US')} ${word}${n === 1 ? '' : 's'}`;

export function formatCleanPlan(plan: CleanPlan, archive: string | null): string {
  const lines: string[] = [];
  if (plan.diffs) {
    lines.push(`${'Orphan session diffs'.padEnd(24)}${plural(plan.diffs.files.length, 'file').padEnd(11)}${bytes(plan.diffs.bytes).padStart(9)}  storage/session_diff files whose session is in no OpenCode database`);
  }
  if (plan.snapshotTemp) {
    const kept = [plan.snapshotTemp.younger ? `${plan.snapshotTemp.younger} younger than a day` : '', plan.snapshotTemp.heldOpen ? `${plan.snapshotTemp.heldOpen} held open by a process` : ''].filter(Boolean);
    lines.push(
      `${'Snapshot pack leftovers'.padEnd(24)}${plural(plan.snapshotTemp.files.length, 'file').padEnd(11)}${bytes(plan.snapshotTemp.bytes).padStart(9)}  tmp_* files git left in snapshot/*/objects/pack, older than a day${kept.length ? ` (kept: ${kept.join(', ')})` : ''}; not archived: git never reads them`,
    );
  }
  const legacy = plan.legacyJson;
  if (legacy) {
    if (!legacy.present) lines.push(`${'Pre-SQLite JSON tree'.padEnd(24)}none`);
    else {
      const what = `${plural(legacy.sessions, 'session')}, ${plural(legacy.messages, 'message')}, ${plural(legacy.parts, 'part')}${legacy.unowned ? `, ${plural(legacy.unowned, 'file')} of no session` : ''}`;
      lines.push(`${'Pre-SQLite JSON tree'.padEnd(24)}${`${legacy.entries.toLocaleString('en-US')} entries`.padEnd(11)}${bytes(legacy.bytes).padStart(9)}  ${what}`);
      if (legacy.ready) lines.push(`${''.padEnd(44)}every session in it, with its messages and parts, is in the database`);
      else {
        const named = [...legacy.missing.sessions, ...legacy.missing.messages, ...legacy.missing.parts].slice(0, 3).join(', ');
        lines.push(`${''.padEnd(44)}kept: ${plural(legacy.missing.count, 'id')} of it ${legacy.missing.count === 1 ? 'is' : 'are'} in no OpenCode database (${named}); removing the tree would lose them`);
      }
    }
  }
  lines.push('', `Would free ${bytes(plan.freesBytes)}.${archive ? ` Orphan diffs and the JSON tree are archived first, to ${archive}.` : plan.freesBytes ? ' Nothing is archived (archiving is off).' : ''}`);
  lines.push('Nothing was changed (dry run). Apply with: session-keeper clean --apply' + (plan.targets.length < CLEAN_TARGETS.length ? ` ${plan.targets.map((t) => `--${t}`).join(' ')}` : ''));
  return lines.join('\n');
}

function formatCleanResult(result: CleanResult): string {
  const parts = [
    result.removed.diffs ? plural(result.removed.diffs, 'orphan diff file') : '',
    result.removed.snapshotTemp ? plural(result.removed.snapshotTemp, 'snapshot pack leftover') : '',
    result.removed.legacyJson ? `the pre-SQLite JSON tree (${plural(result.removed.legacyJson, 'file')})` : '',
  ].filter(Boolean);
  if (parts.length === 0) return 'Nothing was removed.';
  return `Removed ${parts.join(', ')}: ${bytes(result.freedBytes)} freed.${result.archive ? ` Archived first to ${result.archive} (verified; 'tar xzf' it in the data folder to put the files back).` : ''}${result.skipped ? ` ${plural(result.skipped, 'file')} changed since the plan and ${result.skipped === 1 ? 'was' : 'were'} kept.` : ''}`;
}

export function registerClean<G extends CleanGlobals>(
  program: Command,
  helpers: { sqliteFile: (command: Command, name: string) => G; settings: (overrides?: SessionOverrides) => Promise<SessionConfig> },
): void {
  const command = program
    .command('clean')
    .description('remove what nothing references in the data folder: orphan session diffs, snapshot pack leftovers, the pre-SQLite JSON tree; dry run by default')
    .option('--diffs', 'storage/session_diff files whose session is in no OpenCode database')
    .option('--snapshot-temp', 'tmp_pack files older than a day in the snapshot repositories')
    .option('--legacy-json', 'the pre-SQLite JSON tree, once every session in it is in the database');
  addApplyOptions(command, {
    dryRun: 'print what would be removed and change nothing (default)',
    apply: 'archive, then remove',
    noArchive: 'remove without archiving first',
    yes: 'do not ask before removing',
  }).action(async (options: CleanFlags, cmd: Command) => {
      const g = helpers.sqliteFile(cmd, 'clean');
      const apply = applies(options);
      const config = await helpers.settings({ archive: options.archive === false ? false : undefined });
      const chosen: CleanTarget[] = [options.diffs ? 'diffs' : null, options.snapshotTemp ? 'snapshot-temp' : null, options.legacyJson ? 'legacy-json' : null].filter((t): t is CleanTarget => t !== null);
      const targets = chosen.length > 0 ? chosen : [...CLEAN_TARGETS];
      const { applyClean, planClean } = await import('../../main/clean.js');
      const plan = await planClean({ db: g.db, targets });
      const archiveNote = config.archive ? config.archiveDir : null;
      if (!apply) {
        print(g.json, plan, () => formatCleanPlan(plan, archiveNote));
        return;
      }
      if (plan.freesBytes === 0) {
        print(g.json, { archive: null, removed: { diffs: 0, snapshotTemp: 0, legacyJson: 0 }, skipped: 0, freedBytes: 0, plan }, () => (plan.legacyJson?.present && !plan.legacyJson.ready ? formatCleanPlan(plan, archiveNote).split('\n').slice(0, -2).join('\n') + '\nNothing was removed.' : 'Nothing to remove.'));
        return;
      }
      await besideWriter(g.db, { yes: options.yes });
      if (process.stdin.isTTY && !options.yes) process.stderr.write(`${formatCleanPlan(plan, archiveNote).split('\n').slice(0, -1).join('\n')}\n`);
      if (!(await confirm(`Remove these files${config.archive ? ' (archiving what holds session data first)' : ', without archiving,'}?`, options.yes))) throw new SkError('usage', 'nothing was changed');
      const result = await applyClean({ db: g.db, plan, archive: config.archive, archiveDir: config.archiveDir });
      print(g.json, result, () => formatCleanResult(result));
    });
}
