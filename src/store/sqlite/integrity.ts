/** `PRAGMA quick_check` before anything destructive: a damaged file is refused with one line. */
import { SkError } from '../../core/errors.js';
import type { SqliteConnection } from './connection.js';

export function assertIntact(conn: SqliteConnection): void {
  const problems = conn.db.prepare('PRAGMA quick_check(3)').pluck().all() as string[];
  // The check read every page: give back the page cache it filled (up to cache_size, 64 MB) before the archive reads again.
  conn.db.pragma('shrink_memory');
  if (problems.length === 1 && problems[0] === 'ok') return;
  // Each answer may span lines and starts with a '*** in database main ***' heading: one line each.
  const found = problems.flatMap((p) => p.split('\n')).filter((line) => line !== '' && !line.startsWith('*** in database'));
  throw new SkError(
    'corrupt',
    `${conn.path} is damaged (quick_check: ${found.join('; ').slice(0, 300)}); nothing was changed. Run 'sqlite3 ${conn.path} ".recover"' on a copy`,
  );
}
