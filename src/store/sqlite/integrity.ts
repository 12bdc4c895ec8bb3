/** `PRAGMA quick_check` before anything destructive: a damaged file is refused with one line. */
import { SkError } from '../../core/errors.js';
import type { SqliteConnection } from './connection.js';

export function assertIntact(conn: SqliteConnection): void {
  const problems = conn.db.prepare('PRAGMA quick_check(3)').pluck().all() as string[];
  if (problems.length === 1 && problems[0] === 'ok') return;
  throw new SkError(
    'corrupt',
    `${conn.path} is damaged (quick_check: ${problems.join('; ').slice(0, 300)}); nothing was changed. Run 'sqlite3 ${conn.path} ".recover"' on a copy`,
  );
}
