/**
 * The external-store commands: `migrate --to <connectionString>` and `restore --from
 * <connectionString> <sessionID...>` (the `--from` form of `restore`). `--db <connectionString>`
 * for stats/list/show/attachment is routed by the session service itself.
 */
import { Command, Option } from 'commander';
import { SkError } from '../../core/errors.js';
import { isConnectionString } from '../../store/external/connection.js';
import type { MigrateProgress } from '../../store/external/migrate.js';
import { SqliteWriter } from '../../store/sqlite/sqlite-writer.js';
import { bytes as formatBytes, print } from '../format.js';

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
async function progressBar(enabled: boolean): Promise<{ update: (p: MigrateProgress) => void; stop: () => void }> {
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
export async function restoreFrom(globals: Globals, from: string, ids: readonly string[]): Promise<void> {
  requireConnection(from, '--from');
  if (ids.length === 0) throw new SkError('usage', 'restore --from needs at least one session id');
  // Loaded here, not at start-up: every other command stays free of kysely and the drivers.
  const { ExternalStore } = await import('../../store/external/external-store.js');
  const { restoreFromExternal } = await import('../../store/external/migrate.js');
  const store = await ExternalStore.open(from);
  try {
    const writer = new SqliteWriter(globals.db);
    try {
      const result = await restoreFromExternal(writer.open, store, ids);
      print(globals.json, { restored: result.restored.length, skipped: result.skipped.length, sessions: result.restored }, () =>
        `Restored ${result.restored.length} sessions from ${store.conn.display}; ${result.skipped.length} were already present.`,
      );
    } finally {
      writer.close();
    }
  } finally {
    await store.close();
  }
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
      let sessionIds: string[] | undefined;
      if (options.session) {
        const { openDatabase } = await import('../../store/sqlite/open.js');
        const { sessionTrees } = await import('../../store/sqlite/sqlite-archive.js');
        const open = openDatabase(g.db, { readonly: true });
        try {
          for (const id of options.session) if (!open.db.prepare('SELECT 1 FROM session WHERE id = ?').get(id)) throw new SkError('not-found', `no session ${id} in ${g.db}`);
          sessionIds = sessionTrees(open, options.session);
        } finally {
          open.db.close();
        }
      }
      const bar = await progressBar(options.progress && !g.json);
      const { migrateToExternal } = await import('../../store/external/migrate.js');
      let result;
      try {
        result = await migrateToExternal({ source: g.db, target: options.to, sessionIds, onProgress: bar.update });
      } finally {
        bar.stop();
      }
      const seconds = result.elapsedMs / 1000;
      const { checks: _checks, ...summary } = result;
      print(g.json, summary, () =>
        `Migrated ${result.sessions} sessions (${result.copied} copied, ${result.skipped} already there) to ${result.target}: ` +
          `${result.messages} messages, ${result.parts} parts, ${formatBytes(result.bytes)} in ${seconds.toFixed(1)} s; verified.`,
      );
    });
}
