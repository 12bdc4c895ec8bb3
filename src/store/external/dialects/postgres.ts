/** PostgreSQL (pg): bytea bodies, jsonb copies the server builds from them, asynchronous bulk commits. */
import { isUtf8 } from 'node:buffer';
import { CompiledQuery, sql, type Dialect as KyselyDialect, type Kysely } from 'kysely';
import { V8_STRING_LIMIT } from '../../../core/page-rules.js';
import { hasRefusedEscape, jsonObjectText, jsonPlausible } from '../codec.js';
import type { Pool as PgPool } from 'pg';
import type { BulkRow, EngineDialect } from '../dialect.js';
import { pgCopyIn } from './postgres-copy.js';
import type { SkTables } from '../tables.js';

/** Columns of the bulk INSERT, with their types (the VALUES list is untyped). */
const BULK_COLUMNS = {
  sk_message: [
    ['id', 'varchar'],
    ['session_id', 'varchar'],
    ['time_created', 'int8'],
    ['time_updated', 'int8'],
    ['bytes', 'int8'],
    ['body', 'bytea'],
  ],
  sk_part: [
    ['id', 'varchar'],
    ['message_id', 'varchar'],
    ['session_id', 'varchar'],
    ['time_created', 'int8'],
    ['time_updated', 'int8'],
    ['bytes', 'int8'],
    ['body', 'bytea'],
    ['attachments', 'text'],
    ['att_count', 'int4'],
    ['att_bytes', 'int8'],
    ['att_encoded', 'int8'],
  ],
} as const;

/**
 * One statement for many rows: the body goes over the wire once, as binary, and the server builds
 * the jsonb copy from it (`convert_from(body, 'UTF8')::jsonb`) where `json` says it can.
 */
export function pgBulkInsert(table: 'sk_message' | 'sk_part', rows: readonly BulkRow[]): CompiledQuery {
  const columns = BULK_COLUMNS[table];
  const parameters: unknown[] = [];
  const tuples: string[] = [];
  for (const { row, json } of rows) {
    const cells: string[] = [];
    for (const [name, type] of columns) {
      parameters.push(row[name] ?? null);
      cells.push(`$${parameters.length}::${type}`);
    }
    parameters.push(json);
    cells.push(`$${parameters.length}::bool`);
    tuples.push(`(${cells.join(',')})`);
  }
  const names = columns.map(([name]) => name).join(', ');
  return CompiledQuery.raw(
    `INSERT INTO ${table} (${names}, data) SELECT ${names}, CASE WHEN j THEN convert_from(body, 'UTF8')::jsonb END FROM (VALUES ${tuples.join(',')}) AS v(${names}, j)`,
    parameters,
  );
}

/** Fields of a digest line (digest.ts's rowLine, tableRowLine) as UTF-8 bytes, each after a NUL. */
const field = (expression: string): string => `'\\x00'::bytea || convert_to(${expression}, 'UTF8')`;
const bodyFields = `${field('octet_length(body)::text')} || ${field("encode(sha256(body), 'hex')")}`;

/**
 * Each session's lines as digest.ts makes them, sorted and hashed by the server: `m`/`p` lines
 * (id, times, body length and sha256, attachment list), then `r` lines of its other rows. They are
 * sorted on their leading fields as "C" text, which orders exactly as the whole lines' bytes do
 * (those fields hold no NUL, and are unique per kind within a session), and sorts much faster
 * than bytea (abbreviated keys).
 */
const STORED_DIGESTS = `
  WITH line AS (
    SELECT session_id, 'm' AS kind, id AS k1, '' AS k2,
           '\\x6d'::bytea || ${field('id')} || ${field('time_created::text')} || ${field('time_updated::text')} || ${bodyFields} || '\\x00'::bytea AS line
      FROM sk_message WHERE session_id = ANY($1::varchar[])
    UNION ALL
    SELECT session_id, 'p', id, '',
           '\\x70'::bytea || ${field('id')} || ${field('time_created::text')} || ${field('time_updated::text')} || ${bodyFields} || ${field("coalesce(attachments, '')")}
      FROM sk_part WHERE session_id = ANY($1::varchar[])
    UNION ALL
    SELECT session_id, 'r', table_name, ord::text,
           '\\x72'::bytea || ${field('table_name')} || ${field('ord::text')} || ${bodyFields} || ${field("coalesce(attachments, '')")}
      FROM sk_row WHERE session_id = ANY($1::varchar[])
  )
  SELECT session_id, count(*) FILTER (WHERE kind = 'm') AS messages, count(*) FILTER (WHERE kind = 'p') AS parts,
         encode(sha256(string_agg(line || '\\x0a'::bytea, ''::bytea ORDER BY kind COLLATE "C", k1 COLLATE "C", k2 COLLATE "C")), 'hex') AS digest
    FROM line GROUP BY session_id`;

/** The pool behind each Kysely dialect made here, for COPY (Kysely hands out no raw connection). */
const pools = new WeakMap<KyselyDialect, PgPool>();

/** Bodies above this size are checked on their bytes only (a string that size lingers in V8's large-object space). */
export const SERVER_CHECKED_JSON_BYTES = 128 * 1024;

export const postgresDialect: EngineDialect = {
  kind: 'postgres',
  defaultUser: 'postgres',
  defaultPort: 5432,
  types: { id: 'VARCHAR(255)', text: 'TEXT', json: 'JSONB', blob: 'BYTEA', tableSuffix: '' },

  async kyselyDialect(conn, poolSize, bulk) {
    const { PostgresDialect } = await import('kysely');
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
    const dialect = new PostgresDialect({ pool });
    pools.set(dialect, pool);
    return dialect;
  },

  createTable: (name, body) => `CREATE TABLE IF NOT EXISTS ${name} (${body})`,
  async ensureIndex(db, name, table, columns) {
    await sql.raw(`CREATE INDEX IF NOT EXISTS ${name} ON ${table} (${columns})`).execute(db);
  },
  // Attachment chunks (PDFs, images) do not compress: stored without trying. JSON copies use lz4
  // where the server has it (several times faster than pglz).
  tuning: [
    'ALTER TABLE sk_attachment_chunk ALTER COLUMN data SET STORAGE EXTERNAL',
    `DO $$ BEGIN
       IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)) THEN
         ALTER TABLE sk_part ALTER COLUMN body SET COMPRESSION lz4;
         ALTER TABLE sk_part ALTER COLUMN data SET COMPRESSION lz4;
         ALTER TABLE sk_message ALTER COLUMN body SET COMPRESSION lz4;
         ALTER TABLE sk_message ALTER COLUMN data SET COMPRESSION lz4;
         ALTER TABLE sk_session ALTER COLUMN row_json SET COMPRESSION lz4;
       END IF;
     END $$`,
  ],
  transactionalDdl: true,

  byteLength: (column) => sql<number>`octet_length(${sql.ref(column)})`,
  sha256Hex: (column) => sql<string>`encode(sha256(${sql.ref(column)}), 'hex')`,
  limit: (qb, n) => qb.limit(n),
  async storedDigests(db, sessionIds) {
    const result = await db.executeQuery<{ session_id: string; messages: number; parts: number; digest: string }>(CompiledQuery.raw(STORED_DIGESTS, [sessionIds]));
    return new Map(result.rows.map((r) => [r.session_id, { id: r.session_id, messages: Number(r.messages), parts: Number(r.parts), digest: r.digest }]));
  },
  async databaseBytes(db) {
    const r = await sql<{ b: number }>`SELECT pg_database_size(current_database()) AS b`.execute(db);
    return Number(r.rows[0]?.b ?? 0);
  },

  batchRows: 500,
  chunksPerStatement: 4,
  batchesSmallAttachments: true,
  async insertIgnoring(db, table, values) {
    // Kysely's types cannot follow a table chosen at run time; the values are that table's rows.
    await (db as unknown as Kysely<Record<string, Record<string, unknown>>>).insertInto(table).values(values as never).onConflict((oc) => oc.doNothing()).execute();
  },
  jsonCopy(body) {
    // jsonb is built from the body's bytes (invalid UTF-8 is refused) and refuses \u0000 and lone surrogates.
    if (body.length > 1024 * 1024 || !isUtf8(body) || hasRefusedEscape(body)) return null;
    return jsonObjectText(body);
  },
  serverJson: {
    acceptable: (body) => (body.length > SERVER_CHECKED_JSON_BYTES ? jsonPlausible(body) : postgresDialect.jsonCopy(body) !== null),
    plausible: jsonPlausible,
    aloneAbove: SERVER_CHECKED_JSON_BYTES,
    bulkInsert: pgBulkInsert,
  },
  async durableCommit(trx: Kysely<SkTables>) {
    // A bulk connection commits asynchronously; a commit others act on (the mirror's state) waits for the WAL flush.
    await sql`SET LOCAL synchronous_commit = on`.execute(trx);
  },
  async durableBarrier(db: Kysely<SkTables>) {
    // A synchronous commit of a real write flushes the WAL up to it (asynchronous commits are never reordered).
    await db.transaction().execute(async (trx) => {
      await sql`SET LOCAL synchronous_commit = on`.execute(trx);
      // Any real write does; the first migration's row is there on every schema version.
      await trx.updateTable('sk_migrations').set((eb) => ({ applied_at: eb.ref('applied_at') })).where('version', '=', 1).execute();
    });
  },
  // The driver carries bytea as hex text first: twice the bytes on the heap.
  readableLimit: Math.floor(V8_STRING_LIMIT / 2) - 16,
  copyIn(dialect) {
    const pool = pools.get(dialect);
    return pool ? pgCopyIn(pool) : null;
  },
};
