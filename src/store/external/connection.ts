/**
 * Connection strings for the external stores and the Kysely instance each one gets. Every
 * failure becomes a one-line SkError('connection') with any password masked: a connection string
 * is a secret, and so is everything a driver echoes back from it.
 */
// kysely and the drivers load on first connect: commands that never touch a server stay fast.
import type { Kysely } from 'kysely';
import { SkError, redactSecrets } from '../../core/errors.js';
import { externalKindOf } from '../../core/storage.js';
import type { CopyIn, EngineDialect, ParsedConnection } from './dialect.js';
import { dialectFor } from './engines.js';
import type { SkTables } from './tables.js';

export type { ParsedConnection };


export async function parseConnectionString(value: string): Promise<{ conn: ParsedConnection; dialect: EngineDialect }> {
  const display = redactSecrets(value);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new SkError('connection', `not a valid connection string: ${display}`);
  }
  // An @ after the host part means a password that was not URL-encoded: the driver would read part of it as the host.
  const authorityEnd = value.indexOf('/', value.indexOf('://') + 3);
  if (authorityEnd !== -1 && value.indexOf('@', authorityEnd) !== -1) {
    throw new SkError('connection', `${display}: a password holding @, / or # must be URL-encoded (%40, %2F, %23)`);
  }
  const kind = externalKindOf(value);
  if (!kind) throw new SkError('connection', `unsupported database scheme ${url.protocol} in ${display} (postgres, mysql, mariadb, sqlserver)`);
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!url.hostname) throw new SkError('connection', `no host in ${display}`);
  if (!database) throw new SkError('connection', `no database name in ${display} (add /<database>)`);
  const dialect = await dialectFor(kind);
  const conn: ParsedConnection = {
    kind,
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port ? Number(url.port) : dialect.defaultPort,
    user: decodeURIComponent(url.username) || dialect.defaultUser,
    password: decodeURIComponent(url.password),
    database,
    display,
    url,
  };
  return { conn, dialect };
}

/** Driver errors, one line, password-free, prefixed with where we were talking to. */
export function connectionError(error: unknown, conn: Pick<ParsedConnection, 'display' | 'password'>, doing = 'database error', remedy?: string): SkError {
  if (error instanceof SkError) return error;
  const raw = error instanceof Error ? error.message || (error as NodeJS.ErrnoException).code || error.name : String(error);
  const errors = (error as { errors?: unknown[] }).errors;
  // AggregateError (IPv4 and IPv6 both refused) carries its reasons inside.
  const detail = raw || (Array.isArray(errors) && errors[0] instanceof Error ? errors[0].message : 'unknown error');
  let line = (detail.split('\n')[0] ?? detail).trim();
  if (conn.password) line = line.split(conn.password).join('***');
  const code = (error as NodeJS.ErrnoException).code;
  if ((code && ['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'PROTOCOL_CONNECTION_LOST'].includes(code)) || /terminated|connection lost|closed the connection|socket hang up/i.test(line)) {
    line = `the connection to the server was lost (${line})`;
  }
  return new SkError('connection', redactSecrets(`${conn.display}: ${doing}: ${line}${remedy ? `; ${remedy}` : ''}`));
}

export interface ExternalConnection {
  conn: ParsedConnection;
  dialect: EngineDialect;
  db: Kysely<SkTables>;
  /** The engine's bulk load on this pool, where it has one. */
  copyIn: CopyIn | null;
}

/** Opens a pool and proves it with one round trip, so a bad string fails here with one line. */
export async function connect(connectionString: string, poolSize = 4, bulk = false): Promise<ExternalConnection> {
  const { conn, dialect } = await parseConnectionString(connectionString);
  let db: Kysely<SkTables> | undefined;
  try {
    const { Kysely } = await import('kysely');
    const kyselyDialect = await dialect.kyselyDialect(conn, poolSize, bulk);
    db = new Kysely<SkTables>({ dialect: kyselyDialect });
    await db.selectNoFrom((eb) => eb.val(1).as('one')).execute();
    return { conn, dialect, db, copyIn: dialect.copyIn?.(kyselyDialect) ?? null };
  } catch (error) {
    await db?.destroy().catch(() => undefined);
    throw connectionError(error, conn, 'cannot connect');
  }
}
