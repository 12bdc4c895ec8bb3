/**
 * `session-keeper sync --to <connectionString> [--once]`: mirrors OpenCode's SQLite file (--db)
 * into a server as OpenCode writes it. Runs until stopped (Ctrl-C: the session being written is
 * rolled back whole on the server); `--once` makes one pass. A status line on a terminal, one line
 * per pass that wrote otherwise; the password is never printed. Exits non-zero when the last
 * pass ended with sessions in conflict (one line says how many).
 */
import { Command, InvalidArgumentError } from 'commander';
import { SkError } from '../../core/errors.js';
import { isConnectionString } from '../../core/storage.js';
import { syncStatusLine as statusLine } from '../../core/sync-status.js';
import { print } from '../format.js';

interface SyncGlobals {
  db: string;
  config?: string;
  json: boolean;
}

const milliseconds = (value: string): number => {
  if (!/^\d+$/.test(value) || Number(value) < 10) throw new InvalidArgumentError('expected milliseconds (10 or more)');
  return Number(value);
};

export function registerSync(program: Command): void {
  program
    .command('sync')
    .description('mirror the SQLite file (--db) into an external database as OpenCode writes it; runs until stopped')
    .option('--to <connectionString>', "postgres://, mysql://, mariadb:// or sqlserver:// (default: the config's connectionString when storage names a server)")
    .option('--once', 'one pass, then stop')
    .option('--poll-ms <ms>', 'how often to look for commits', milliseconds, 250)
    .action(async (options: { to?: string; once?: boolean; pollMs: number }, command: Command) => {
      // The file itself: --db here is never replaced by the config's server (that is the target).
      const g = command.optsWithGlobals<SyncGlobals>();
      let to = options.to;
      if (to === undefined) {
        const { config } = (await import('../../main/config-file.js')).loadConfig({ path: g.config });
        if (config.storage !== 'sqlite' && config.connectionString) to = config.connectionString;
      }
      if (to === undefined) throw new SkError('usage', 'sync needs --to <connectionString> (or "storage" and "connectionString" in the config)');
      if (!isConnectionString(to)) throw new SkError('usage', '--to needs a connection string (postgres://, mysql://, mariadb://, sqlserver://), not a file');
      if (isConnectionString(g.db)) throw new SkError('usage', 'sync mirrors from a SQLite file: --db must be a file');
      const { runSync } = await import('../../main/sync.js');
      const tty = process.stderr.isTTY && !g.json;
      const stop = new AbortController();
      let lastLine = 0;
      const result = await runSync({
        db: g.db,
        to,
        once: options.once ?? false,
        pollMs: options.pollMs,
        signal: stop.signal,
        log: (line) => process.stderr.write(`${tty ? '\r\x1b[K' : ''}session-keeper: ${line}\n`),
        onStatus: (status) => {
          const now = Date.now();
          if (!tty || now - lastLine < 200) return;
          lastLine = now;
          process.stderr.write(`\r\x1b[Ksync: ${statusLine(status, now)}`);
        },
      });
      if (tty) process.stderr.write('\r\x1b[K');
      print(g.json, result, () =>
        `Mirrored to ${result.target}: ${result.written} sessions written, ${result.same} already there; ${statusLine(result.status)}.` +
          (result.conflicts.length ? `\n${result.conflicts.map((c) => `conflict: ${c.reason}`).join('\n')}` : ''),
      );
      // A pass that ended with conflicts is not a clean mirror: a script (or --once in cron) must see it.
      const n = result.status.conflicts;
      if (n > 0) throw new SkError('conflict', `${n} session${n === 1 ? '' : 's'} in conflict on ${result.target}: both copies changed since they last agreed; neither was changed`);
    });
}
