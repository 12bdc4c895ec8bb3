/** SQLite's failures as our one-line errors, naming the file (shared by the connection and the value readers). */
import { SkError } from '../../core/errors.js';

/** Turns SQLite's error codes into our one-line errors, naming the file. */
export function mapSqliteError(error: unknown, path: string): SkError {
  if (error instanceof SkError) return error;
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  // Extended codes (SQLITE_BUSY_SNAPSHOT, SQLITE_IOERR_SHORT_READ, ...) map by their primary code.
  switch (typeof code === 'string' ? code.split('_').slice(0, 2).join('_') : '') {
    case 'SQLITE_NOTADB':
      return new SkError('not-sqlite', `${path} is not a SQLite database`);
    case 'SQLITE_CORRUPT':
      return new SkError('corrupt', `${path} is corrupt (${message}); run 'sqlite3 ${path} ".recover"' on a copy`);
    case 'SQLITE_BUSY':
    case 'SQLITE_LOCKED':
      return new SkError('locked', `${path} is locked by another process (${message}); close OpenCode or try again`);
    case 'SQLITE_FULL':
      return new SkError('disk-full', `disk full while writing ${path}`);
    case 'SQLITE_READONLY':
      return new SkError('read-only', `${path} is read-only (${message})`);
    case 'SQLITE_CANTOPEN':
      return new SkError('not-found', `cannot open ${path} (${message})`);
    case 'SQLITE_TOOBIG':
      return new SkError('too-big', `a value in ${path} is larger than this connection can read (${message})`);
    case 'SQLITE_IOERR':
      return new SkError('corrupt', `I/O error reading ${path} (${message})`);
    default:
      return new SkError('internal', `${path}: ${message}`);
  }
}
