/**
 * The external-store commands: `migrate --to <connectionString>` and `restore --from
 * <connectionString> <sessionID...>` (the `--from` form of `restore`). `--db <connectionString>`
 * for stats/list/show/attachment is routed by the session service itself.
 */
import { Command, Option } from 'commander';
import { formatBytes } from '../../core/bytes.js';
import { redactSecrets, SkError } from '../../core/errors.js';
import { isConnectionString } from '../../core/storage.js';
import type { CopyProgress } from '../../main/migration.js';
import { print } from '../format.js';

interface Globals {
  db: string;
  json: boolean;
}


function requireConnection(value: string, flag: string): void {
  if (!isConnectionString(value)) {
    throw new SkError('usage', `${flag} needs a connection string (postgres://, mysql://, mariadb://, sqlserver://), not a file`);
  }
}

/** A progress bar on stderr when it is a terminal (and not for --json); nothing otherwise. */
async function progressBar(enabled: boolean): Promise<{ update: (p: CopyProgress) => void; stop: () => void }> {
  if (!enabled || !process.stderr.isTTY) return { update: () => undefined, stop: () => undefined };
  const cliProgress = (await import('cli-progress')).default;
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: 'migrate [{bar}] {percentage}% | {done}/{size} | {sessions}/{sessionsTotal} sessions | {rows} rows | {eta_formatted} left',
      hideCursor: true,
      clearOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update: (p) => {
      const payload = {
        done: formatBytes(p.bytesDone),
        size: formatBytes(p.bytesTotal),
        sessions: p.sessionsDone,
        sessionsTotal: p.sessionsTotal,
        rows: p.rows,
      };
      if (!started) {
        bar.start(Math.max(1, p.bytesTotal), p.bytesDone, payload);
        started = true;
      } else {
        bar.update(p.bytesDone, payload);
      }
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}

/** `restore --from <connectionString> <sessionID...>`: sessions back into the SQLite file, byte for byte. */
export async function restoreFromCommand(globals: Globals, from: string, ids: readonly string[]): Promise<void> {
  requireConnection(from, '--from');
  const { restoreFrom } = await import('../../main/migration.js');
  const result = await restoreFrom({ db: globals.db, from, roots: ids });
  print(globals.json, { restored: result.copied, skipped: result.skipped, sessions: result.copiedIds }, () =>
    `Restored ${result.copied} sessions from ${redactSecrets(from)}; ${result.skipped} were already present.`,
  );
}

export function registerExternalCommands(program: Command, globals: (command: Command) => Globals): void {
  program
    .command('migrate')
    .description('copy the SQLite store (--db) into an external database: streamed, resumable, verified')
    .requiredOption('--to <connectionString>', 'postgres://, mysql://, mariadb:// or sqlserver:// (password is never printed)')
    .option('--session <id...>', 'only these sessions (with their child sessions)')
    .addOption(new Option('--no-progress', 'no progress bar'))
    .action(async (options: { to: string; session?: string[]; progress: boolean }, command: Command) => {
      const g = globals(command);
      requireConnection(options.to, '--to');
      if (isConnectionString(g.db)) throw new SkError('usage', 'migrate copies from a SQLite file: --db must be a file');
      const bar = await progressBar(options.progress && !g.json);
      let result;
      try {
        const { migrateTo } = await import('../../main/migration.js');
        result = await migrateTo({ db: g.db, to: options.to, roots: options.session, onProgress: bar.update });
      } finally {
        bar.stop();
      }
      const seconds = result.elapsedMs / 1000;
      const { copiedIds: _copied, skippedIds: _skipped, ...summary } = result;
      print(g.json, summary, () =>
        `Migrated ${result.sessions} sessions (${result.copied} copied, ${result.skipped} already there) to ${result.target}: ` +
          `${result.messages} messages, ${result.parts} parts, ${formatBytes(result.bytes)} in ${seconds.toFixed(1)} s; verified.`,
      );
    });
}
