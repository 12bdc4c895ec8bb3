/** Questions the destructive commands ask on a terminal, and what they say when OpenCode is running. */
import type { Command } from 'commander';
import { describeWriters } from '../../core/data-folder.js';
import { SkError } from '../../core/errors.js';

/** What a command's run flags say in its help; a flag left out is not declared (`delete` has no dry run, `compact` archives nothing). */
export interface ApplyOptionTexts {
  dryRun?: string;
  apply?: string;
  noArchive?: string;
  yes: string;
}

/** The flags `addApplyOptions` declares, as commander hands them over (`archive` is false for `--no-archive`). */
export interface ApplyFlags {
  dryRun?: boolean;
  apply?: boolean;
  archive?: boolean;
  yes?: boolean;
}

/** Declares `--dry-run`, `--apply`, `--no-archive` and `--yes` in that order, each with its command's text. */
export function addApplyOptions(command: Command, texts: ApplyOptionTexts): Command {
  if (texts.dryRun !== undefined) command.option('--dry-run', texts.dryRun);
  if (texts.apply !== undefined) command.option('--apply', texts.apply);
  if (texts.noArchive !== undefined) command.option('--no-archive', texts.noArchive);
  return command.option('--yes', texts.yes);
}

/** Whether the run applies (`--apply`) rather than plans; `--dry-run` with `--apply` is a usage error. */
export function applies(flags: ApplyFlags): boolean {
  if (flags.apply && flags.dryRun) throw new SkError('usage', '--dry-run and --apply exclude each other');
  return flags.apply === true;
}

const onTerminal = (): boolean => Boolean(process.stdin.isTTY && process.stderr.isTTY);

async function ask(question: string): Promise<boolean> {
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim());
  } finally {
    rl.close();
  }
}

/**
 * Asks on a terminal before something destructive; `--yes` goes ahead without asking. Without a
 * terminal (a script, a pipe) and without `--yes` nothing destructive runs: nobody saw the plan.
 * False means the user said no.
 */
export async function confirm(question: string, yes: boolean | undefined): Promise<boolean> {
  if (yes) return true;
  if (!onTerminal()) throw new SkError('usage', `${question.replace(/\?$/, '')}: not asked, since this is not a terminal; nothing was changed (add --yes to go ahead)`);
  return ask(question);
}

/** Whether a person is there to be asked (standard input and error on a terminal). */
export const interactive = onTerminal;

export interface BesideWriterCheck {
  /** `--yes`: every question answered yes. */
  yes?: boolean | undefined;
  /** The step that must not run beside a writer (e.g. the VACUUM after a delete), or none. */
  unsafe?: string;
  /** `--yes` also runs the unsafe step: the `vacuum` command, where that step is the whole job. */
  yesRunsUnsafe?: boolean;
}

/**
 * Said before any destructive step: who else has the database open or is writing to it. Returns
 * true when the steps unsafe beside a writer must wait (VACUUM blocks OpenCode's writes while it
 * runs): OpenCode was seen and, on a terminal, the user did not ask for them anyway; otherwise
 * they wait (for `vacuum` itself, `--yes` runs it).
 */
export async function besideWriter(db: string, check: BesideWriterCheck): Promise<boolean> {
  const { refuseWhenBusy, whoElseWrites } = await import('../../main/maintenance.js');
  // Another session-keeper changing the file is the answer, not a process to describe.
  refuseWhenBusy(db);
  const line = describeWriters(await whoElseWrites(db), db);
  if (!line) return false;
  process.stderr.write(`session-keeper: ${line}.\n`);
  if (!check.unsafe) return true;
  if (check.yes && check.yesRunsUnsafe) {
    process.stderr.write(`session-keeper: --yes: ${check.unsafe} runs anyway; OpenCode's writes wait until it ends.\n`);
    return false;
  }
  // --yes answers for the plan, not for blocking OpenCode: that is asked only of a person.
  if (onTerminal() && !check.yes) return !(await ask(`Run ${check.unsafe} anyway? OpenCode's writes wait while it runs (the rest is safe beside it).`));
  process.stderr.write(`session-keeper: ${check.unsafe} waits: the freed space stays inside the file (SQLite reuses it) until 'session-keeper vacuum' runs with OpenCode closed.\n`);
  return true;
}
