/** MySQL and MariaDB (mysql2): LONGBLOB bodies, JSON copies, byte-wise id collation, one chunk per packet. */
import { sql, type Kysely } from 'kysely';
import { V8_STRING_LIMIT } from '../../../core/page-rules.js';
import { jsonObjectText } from '../codec.js';
import type { EngineDialect } from '../dialect.js';

const PACKET_REMEDY =
  "raise max_allowed_packet on the server (max_allowed_packet=256M under [mysqld], or SET GLOBAL max_allowed_packet = 268435456) and run the command again; sessions already copied and verified are kept";

export const mysqlDialect: EngineDialect = {
  kind: 'mysql',
  defaultUser: 'root',
  defaultPort: 3306,
  // Ids compare byte-wise as in SQLite (the default collations are case-insensitive).
  types: {
    id: 'VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin',
    text: 'LONGTEXT',
    json: 'JSON',
    blob: 'LONGBLOB',
    tableSuffix: ' ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin',
  },

  async kyselyDialect(conn, poolSize) {
    const { MysqlDialect } = await import('kysely');
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
  },

  // A value (a part's text once its attachments are cut out) over the server's max_allowed_packet (16 MB by default,
  // a BLOB travelling as hex at twice its size) is refused with ER_NET_PACKET_TOO_LARGE, or the server just drops the connection.
  remedyFor: (error) => {
    const { errno, code } = error as { errno?: number; code?: string };
    if (errno === 1153) return PACKET_REMEDY;
    if (code === 'ECONNRESET' || code === 'EPIPE') return `if a row was larger than the server's max_allowed_packet, ${PACKET_REMEDY}`;
    return undefined;
  },

  createTable: (name, body) => `CREATE TABLE IF NOT EXISTS ${name} (${body})${mysqlDialect.types.tableSuffix}`,
  // `CREATE INDEX IF NOT EXISTS` is MariaDB's alone (MySQL 8 rejects it): ask the catalogue first.
  async ensureIndex(db, name, table, columns) {
    const found = await sql<{ n: number }>`SELECT COUNT(*) AS n FROM information_schema.statistics
      WHERE table_schema = DATABASE() AND table_name = ${table} AND index_name = ${name}`.execute(db);
    if (Number(found.rows[0]?.n ?? 0) > 0) return;
    try {
      await sql.raw(`CREATE INDEX ${name} ON ${table} (${columns})`).execute(db);
    } catch (error) {
      // Another process made it meanwhile (ER_DUP_KEYNAME): what we wanted exists.
      if ((error as { errno?: number }).errno !== 1061) throw error;
    }
  },
  tuning: [],
  transactionalDdl: false,

  byteLength: (column) => sql<number>`LENGTH(${sql.ref(column)})`,
  sha256Hex: (column) => sql<string>`SHA2(${sql.ref(column)}, 256)`,
  limit: (qb, n) => qb.limit(n),
  async databaseBytes(db) {
    const r = await sql<{ b: number }>`SELECT COALESCE(SUM(data_length + index_length), 0) AS b FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE 'sk\\_%'`.execute(db);
    return Number(r.rows[0]?.b ?? 0);
  },

  batchRows: 500,
  chunksPerStatement: 1,
  batchesSmallAttachments: true,
  async insertIgnoring(db, table, values) {
    await (db as unknown as Kysely<Record<string, Record<string, unknown>>>).insertInto(table).ignore().values(values as never).execute();
  },
  jsonCopy: jsonObjectText,
  serverJson: null,
  // Each commit is durable here (InnoDB's default flush at commit).
  async durableBarrier() {},
  async durableCommit() {},
  readableLimit: V8_STRING_LIMIT,
};
