/**
 * SQL Server (tedious): VARBINARY(MAX) bodies, NVARCHAR(MAX) JSON copies, `TOP n`, at most 2,100
 * parameters per statement. No server exists where this project is developed: this dialect is
 * built against tedious's and Kysely's real APIs, and its tests run only when MSSQL_URL is set.
 */
import { sql, type Kysely } from 'kysely';
import { V8_STRING_LIMIT } from '../../../core/page-rules.js';
import { jsonObjectText } from '../codec.js';
import type { EngineDialect } from '../dialect.js';

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

/** SQL Server's "Violation of PRIMARY KEY constraint": the row is there already. */
const DUPLICATE_KEY = 2627;

export const mssqlDialect: EngineDialect = {
  kind: 'sqlserver',
  defaultUser: 'sa',
  defaultPort: 1433,
  types: { id: 'VARCHAR(255) COLLATE Latin1_General_BIN2', text: 'NVARCHAR(MAX)', json: 'NVARCHAR(MAX)', blob: 'VARBINARY(MAX)', tableSuffix: '' },

  async kyselyDialect(conn, poolSize) {
    const { MssqlDialect } = await import('kysely');
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
  },

  createTable: (name, body) => `IF OBJECT_ID(N'${name}', N'U') IS NULL CREATE TABLE ${name} (${body})`,
  async ensureIndex(db, name, table, columns) {
    await sql.raw(`IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'${name}') CREATE INDEX ${name} ON ${table} (${columns})`).execute(db);
  },
  tuning: [],
  transactionalDdl: true,

  byteLength: (column) => sql<number>`DATALENGTH(${sql.ref(column)})`,
  sha256Hex: (column) => sql<string>`LOWER(CONVERT(VARCHAR(64), HASHBYTES('SHA2_256', ${sql.ref(column)}), 2))`,
  limit: (qb, n) => qb.top(n),
  async databaseBytes(db) {
    const r = await sql<{ b: number }>`SELECT COALESCE(SUM(reserved_page_count), 0) * 8192 AS b FROM sys.dm_db_partition_stats`.execute(db);
    return Number(r.rows[0]?.b ?? 0);
  },

  batchRows: 150,
  chunksPerStatement: 4,
  batchesSmallAttachments: false,
  async insertIgnoring(db, table, values) {
    // No INSERT IGNORE here: each row alone, a duplicate key meaning it is stored already.
    for (const value of values) {
      try {
        await (db as unknown as Kysely<Record<string, Record<string, unknown>>>).insertInto(table).values(value as never).execute();
      } catch (error) {
        if ((error as { number?: number }).number !== DUPLICATE_KEY) throw error;
      }
    }
  },
  jsonCopy: jsonObjectText,
  serverJson: null,
  // Each commit is durable here.
  async durableBarrier() {},
  async durableCommit() {},
  readableLimit: V8_STRING_LIMIT,
};
