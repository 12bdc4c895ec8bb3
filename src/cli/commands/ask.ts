/** Questions the destructive commands ask on a terminal, and what they say when OpenCode is running. */
import { describeWriters } from '../../core/data-folder.js';
import { whoElseWrites } from '../../main/maintenance.js';

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
 * Asks on a terminal before something destructive; `--yes` (or no terminal: scripts, pipes)
 * goes ahead without asking. False means the user said no.
 */
export async function confirm(question: string, yes: boolean | undefined): Promise<boolean> {
  if (yes || !onTerminal()) return true;
  return ask(question);
}

export interface BesideWriterCheck {
  /** `--yes`: every question answered yes. */
  yes?: boolean | undefined;
  /** The step that must not run beside a writer (e.g. the VACUUM after a delete), or none. */
  unsafe?: string;
}

/**
 * Said before any destructive step: who else has the database open or is writing to it. Returns
 * true when the steps unsafe beside a writer must wait (VACUUM blocks OpenCode's writes while it
 * runs): OpenCode was seen and, on a terminal, the user did not ask for them anyway; without a
 * terminal they wait unless `--yes`.
 */
export async function besideWriter(db: string, check: BesideWriterCheck): Promise<boolean> {
  const line = describeWriters(await whoElseWrites(db), db);
  if (!line) return false;
  process.stderr.write(`session-keeper: ${line}.\n`);
  if (!check.unsafe) return true;
  if (check.yes) {
    process.stderr.write(`session-keeper: --yes: ${check.unsafe} runs anyway; OpenCode's writes wait until it ends.\n`);
    return false;
  }
  if (onTerminal()) return !(await ask(`Run ${check.unsafe} anyway? OpenCode's writes wait while it runs (the rest is safe beside it).`));
  process.stderr.write(`session-keeper: ${check.unsafe} waits: the freed space stays inside the file (SQLite reuses it) until 'session-keeper vacuum' runs with OpenCode closed.\n`);
  return true;
}
