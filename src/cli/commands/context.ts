/** What every command module is handed by main.ts: the global options, resolved, and the flag parsers they share. */
import { InvalidArgumentError, type Command } from 'commander';
import type { SessionConfig, SessionOverrides } from '../../core/config.js';

export interface GlobalOptions {
  db: string;
  cacheDir: string;
  config?: string;
  json: boolean;
}

export interface CommandHelpers {
  /** The global options, `--db` replaced by the config's server when none was given and `storage` names one. */
  globals: (command: Command) => GlobalOptions;
  /** The same, refused unless `--db` is a SQLite file: for the commands that rewrite the file itself. */
  sqliteFile: (command: Command, name: string) => GlobalOptions;
  /** The config's settings with the command's flags over them (validated again); warnings go to stderr. */
  settings: (overrides?: SessionOverrides) => Promise<SessionConfig>;
}

export const positiveInt = (value: string): number => {
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new InvalidArgumentError('expected a positive whole number');
  return Number(value);
};

export const wholeNumber = (value: string): number => {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('expected a whole number (0 or more)');
  return Number(value);
};

/** A progress line for the writing commands: stderr, so `--json` output stays clean. */
export const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};
