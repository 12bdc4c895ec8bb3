/** What every part of the external store works with: the pool, the parsed connection, the dialect. */
import type { Kysely } from 'kysely';
import type { ExternalKind } from '../../core/storage.js';
import { SkError } from '../../core/errors.js';
import { connectionError } from './connection.js';
import type { CopyIn, EngineDialect, ParsedConnection } from './dialect.js';
import type { SkTables } from './tables.js';

export class ExternalContext {
  readonly kind: ExternalKind;

  constructor(
    readonly db: Kysely<SkTables>,
    readonly conn: ParsedConnection,
    readonly dialect: EngineDialect,
    /** Bulk loads on the pool (never inside a transaction of `db`), where the engine has them. */
    readonly copyIn: CopyIn | null = null,
  ) {
    this.kind = conn.kind;
  }

  get location(): string {
    return this.conn.display;
  }

  /** Runs a database step, turning driver failures into one password-free line. */
  async guard<T>(doing: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw this.failure(doing, error);
    }
  }

  /** What `guard` throws for `error`: for steps that run synchronously when they can. */
  failure(doing: string, error: unknown): unknown {
    // SQLite's own failures (a copy reads the file while it writes here) keep their own mapping.
    if (error instanceof Error && error.name === 'SqliteError') return error;
    if (error instanceof TypeError || error instanceof RangeError) return new SkError('internal', `${doing}: ${error.message}`);
    return connectionError(error, this.conn, doing, this.dialect.remedyFor?.(error));
  }
}
