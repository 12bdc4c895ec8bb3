/**
 * Real database servers for the external-store tests: each test gets a freshly created database
 * (PostgreSQL, MariaDB) or schema-less database (SQL Server, only with MSSQL_URL), dropped after.
 */
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';

export const PG_ADMIN = process.env['SK_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
export const MYSQL_ADMIN = process.env['SK_MYSQL_URL'] ?? 'mysql://root@127.0.0.1:3306/test';
export const MSSQL_URL = process.env['MSSQL_URL'];

export type Backend = 'postgres' | 'mysql' | 'sqlserver';

export interface FreshDatabase {
  url: string;
  drop: () => Promise<void>;
}

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

/** A new empty database on `backend`; `drop()` removes it. */
export async function freshDatabase(backend: Backend): Promise<FreshDatabase> {
  const name = `sk_t_${randomBytes(5).toString('hex')}`;
  if (backend === 'postgres') {
    const pg = (await import('pg')).default;
    const admin = new pg.Client({ connectionString: PG_ADMIN });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    return {
      url: withDatabase(PG_ADMIN, name),
      drop: async () => {
        const c = new pg.Client({ connectionString: PG_ADMIN });
        await c.connect();
        // A pool's end() resolves before its clients' sockets close: FORCE would end them with a
        // FATAL error nobody listens for any more. Their own goodbyes first (a leaked one is forced after 5 s).
        for (const until = Date.now() + 5000; Date.now() < until; ) {
          const { rows } = await c.query<{ n: string }>('SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1', [name]);
          if (Number(rows[0]?.n) === 0) break;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        await c.end();
      },
    };
  }
  if (backend === 'mysql') {
    const mysql = await import('mysql2/promise');
    const u = new URL(MYSQL_ADMIN);
    const options = { host: u.hostname, port: Number(u.port || 3306), user: decodeURIComponent(u.username) || 'root', password: decodeURIComponent(u.password) };
    const admin = await mysql.createConnection(options);
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    return {
      url: withDatabase(MYSQL_ADMIN, name),
      drop: async () => {
        const c = await mysql.createConnection(options);
        await c.query(`DROP DATABASE IF EXISTS ${name}`);
        await c.end();
      },
    };
  }
  if (!MSSQL_URL) throw new Error('MSSQL_URL is not set');
  const { sql } = await import('kysely');
  const { connect } = await import('../../src/store/external/connection.js');
  const admin = await connect(MSSQL_URL);
  await sql.raw(`CREATE DATABASE ${name}`).execute(admin.db);
  await admin.db.destroy();
  return {
    url: withDatabase(MSSQL_URL, name),
    drop: async () => {
      const c = await connect(MSSQL_URL);
      await sql.raw(`ALTER DATABASE ${name} SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE ${name}`).execute(c.db);
      await c.db.destroy();
    },
  };
}

/** Backends to run: PostgreSQL and MariaDB always; SQL Server only when MSSQL_URL names one. */
export const BACKENDS: { backend: Backend; skip: boolean }[] = [
  { backend: 'postgres', skip: false },
  { backend: 'mysql', skip: false },
  { backend: 'sqlserver', skip: !MSSQL_URL },
];

/** sha256 of a SQLite file's session rows, messages and parts (every column, as stored, in order). */
export function rowsDigest(path: string, sessionIds?: readonly string[]): string {
  const db = new Database(path, { readonly: true });
  const hash = createHash('sha256');
  const filter = sessionIds ? `WHERE session_id IN (SELECT value FROM json_each(?))` : '';
  const args = sessionIds ? [JSON.stringify(sessionIds)] : [];
  const sessions = db
    .prepare(`SELECT * FROM session ${sessionIds ? 'WHERE id IN (SELECT value FROM json_each(?))' : ''} ORDER BY id`)
    .all(...args);
  hash.update(JSON.stringify(sessions));
  for (const row of db.prepare(`SELECT id, session_id, time_created, time_updated, CAST(data AS BLOB) AS data FROM message ${filter} ORDER BY id`).iterate(...args) as IterableIterator<Record<string, unknown>>) {
    hash.update(JSON.stringify({ ...row, data: undefined }));
    hash.update(row['data'] as Buffer);
  }
  for (const row of db.prepare(`SELECT id, message_id, session_id, time_created, time_updated, CAST(data AS BLOB) AS data FROM part ${filter} ORDER BY id`).iterate(...args) as IterableIterator<Record<string, unknown>>) {
    hash.update(JSON.stringify({ ...row, data: undefined }));
    hash.update(row['data'] as Buffer);
  }
  db.close();
  return hash.digest('hex');
}

/** One SQL statement on a test database through the driver itself: an independent look at what the store wrote. */
export async function serverQuery<T = Record<string, unknown>>(url: string, text: string): Promise<T[]> {
  const kind = new URL(url).protocol.replace(':', '');
  if (kind === 'postgres' || kind === 'postgresql') {
    const pg = (await import('pg')).default;
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      return (await client.query(text)).rows as T[];
    } finally {
      await client.end();
    }
  }
  if (kind === 'mysql' || kind === 'mariadb') {
    const mysql = await import('mysql2/promise');
    const u = new URL(url);
    const c = await mysql.createConnection({
      host: u.hostname,
      port: Number(u.port || 3306),
      user: decodeURIComponent(u.username) || 'root',
      password: decodeURIComponent(u.password),
      database: u.pathname.slice(1),
    });
    try {
      return (await c.query(text))[0] as T[];
    } finally {
      await c.end();
    }
  }
  const { sql } = await import('kysely');
  const { connect } = await import('../../src/store/external/connection.js');
  const c = await connect(url);
  try {
    return (await sql.raw<T>(text).execute(c.db)).rows;
  } finally {
    await c.db.destroy();
  }
}
