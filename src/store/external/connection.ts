/**
 * Connection strings for the external stores and the Kysely instance each one gets. Every
 * failure becomes a one-line SkError('connection') with any password masked: a connection string
 * is a secret, and so is everything a driver echoes back from it.
 */
// kysely and the drivers load on first connect: commands that never touch a server stay fast.
import type { Dialect, Kysely } from 'kysely';
import { SkError, redactSecrets } from '../../core/errors.js';
import type { SkTables } from './schema.js';

export type ExternalKind = 'postgres' | 'mysql' | 'sqlserver';

export interface ParsedConnection {
  kind: ExternalKind;
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** The string with its password masked: safe for logs, errors and `stats.path`. */
  display: string;
  url: URL;
}

const SCHEMES: Record<string, ExternalKind> = {
  'postgres:': 'postgres',
  'postgresql:': 'postgres',
  'mysql:': 'mysql',
  'mariadb:': 'mysql',
  'sqlserver:': 'sqlserver',
  'mssql:': 'sqlserver',
};
const DEFAULT_PORTS: Record<ExternalKind, number> = { postgres: 5432, mysql: 3306, sqlserver: 1433 };

/** True when `value` names an external database rather than a SQLite file. */
export function isConnectionString(value: string): boolean {
  return /^(postgres|postgresql|mysql|mariadb|sqlserver|mssql):\/\//i.test(value);
}

export function parseConnectionString(value: string): ParsedConnection {
  const display = redactSecrets(value);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new SkError('connection', `not a valid connection string: ${display}`);
  }
  const kind = SCHEMES[url.protocol.toLowerCase()];
  if (!kind) throw new SkError('connection', `unsupported database scheme ${url.protocol} in ${display} (postgres, mysql, mariadb, sqlserver)`);
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!url.hostname) throw new SkError('connection', `no host in ${display}`);
  if (!database) throw new SkError('connection', `no database name in ${display} (add /<database>)`);
  const port = url.port ? Number(url.port) : DEFAULT_PORTS[kind];
  return {
    kind,
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port,
    user: decodeURIComponent(url.username) || (kind === 'sqlserver' ? 'sa' : kind === 'mysql' ? 'root' : 'postgres'),
    password: decodeURIComponent(url.password),
    database,
    display,
    url,
  };
}

/** Driver errors, one line, password-free, prefixed with where we were talking to. */
export function connectionError(error: unknown, conn: Pick<ParsedConnection, 'display' | 'password'>, doing = 'database error'): SkError {
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
  return new SkError('connection', redactSecrets(`${conn.display}: ${doing}: ${line}`));
}

/** tarn's Pool as Kysely's MssqlDialect uses it (tarn itself is not a dependency): FIFO, bounded. */
class SmallPool<T> {
  private readonly idle: T[] = [];
  private readonly waiting: ((value: T) => void)[] = [];
  private size = 0;
  private readonly max: number;
  private readonly create: () => Promise<T>;
  private readonly destroyOne: (value: T) => Promise<void>;

  constructor(options: { max?: number; create: () => Promise<T>; destroy: (value: T) => Promise<void> }) {
    this.max = options.max ?? 4;
    this.create = options.create;
    this.destroyOne = options.destroy;
  }

  acquire(): { promise: Promise<T> } {
    const next = this.idle.pop();
    if (next !== undefined) return { promise: Promise.resolve(next) };
    if (this.size < this.max) {
      this.size++;
      return {
        promise: this.create().catch((error: unknown) => {
          this.size--;
          throw error;
        }),
      };
    }
    return { promise: new Promise<T>((resolve) => this.waiting.push(resolve)) };
  }

  release(value: T): void {
    const waiter = this.waiting.shift();
    if (waiter) waiter(value);
    else this.idle.push(value);
  }

  async destroy(): Promise<void> {
    const all = this.idle.splice(0);
    this.size -= all.length;
    await Promise.all(all.map((v) => this.destroyOne(v).catch(() => undefined)));
  }
}

async function dialectFor(conn: ParsedConnection, poolSize: number, bulk: boolean): Promise<Dialect> {
  const { MssqlDialect, MysqlDialect, PostgresDialect } = await import('kysely');
  if (conn.kind === 'postgres') {
    const pg = (await import('pg')).default;
    const pool = new pg.Pool({
      host: conn.host,
      port: conn.port,
      user: conn.user,
      password: conn.password || undefined,
      database: conn.database,
      max: poolSize,
      connectionTimeoutMillis: 10_000,
      // Bulk copies commit asynchronously (no WAL flush per batch); they end with one synchronous
      // commit (`durableBarrier`), which flushes every earlier commit in order.
      options: bulk ? '-c synchronous_commit=off' : undefined,
      ssl: conn.url.searchParams.get('sslmode') === 'require' ? { rejectUnauthorized: false } : undefined,
      // int8 and numeric (sums) as numbers: our values are byte counts and epoch ms, far below 2^53.
      types: {
        getTypeParser: ((oid: number, format?: string) =>
          oid === 20 || oid === 1700 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
      },
    });
    // An idle client losing its server must not crash the process; the next query reports it.
    pool.on('error', () => undefined);
    // A checked-out client whose socket dies emits 'error' too; the failing query reports it.
    pool.on('connect', (client) => client.on('error', () => undefined));
    return new PostgresDialect({ pool });
  }
  if (conn.kind === 'mysql') {
    const { createPool } = await import('mysql2');
    const pool = createPool({
      host: conn.host,
      port: conn.port,
      user: conn.user,
      password: conn.password,
      database: conn.database,
      connectionLimit: poolSize,
      connectTimeout: 10_000,
      charset: 'utf8mb4',
      supportBigNumbers: true,
      bigNumberStrings: false,
      decimalNumbers: true,
    });
    pool.on('connection', (c) => c.on('error', () => undefined));
    return new MysqlDialect({ pool });
  }
  const tedious = await import('tedious');
  return new MssqlDialect({
    tarn: { Pool: SmallPool as never, options: { min: 0, max: poolSize } },
    tedious: {
      ...tedious,
      connectionFactory: () =>
        new tedious.Connection({
          server: conn.host,
          authentication: { type: 'default', options: { userName: conn.user, password: conn.password } },
          options: {
            port: conn.port,
            database: conn.database,
            encrypt: conn.url.searchParams.get('encrypt') !== 'false',
            trustServerCertificate: conn.url.searchParams.get('trustServerCertificate') !== 'false',
            connectTimeout: 10_000,
            requestTimeout: 0,
          },
        }),
    },
  });
}

export interface ExternalConnection {
  conn: ParsedConnection;
  db: Kysely<SkTables>;
}

/** Opens a pool and proves it with one round trip, so a bad string fails here with one line. */
export async function connect(connectionString: string, poolSize = 4, bulk = false): Promise<ExternalConnection> {
  const conn = parseConnectionString(connectionString);
  let db: Kysely<SkTables> | undefined;
  try {
    const { Kysely } = await import('kysely');
    db = new Kysely<SkTables>({ dialect: await dialectFor(conn, poolSize, bulk) });
    await db.selectNoFrom((eb) => eb.val(1).as('one')).execute();
    return { conn, db };
  } catch (error) {
    await db?.destroy().catch(() => undefined);
    throw connectionError(error, conn, 'cannot connect');
  }
}
