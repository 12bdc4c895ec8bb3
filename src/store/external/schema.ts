/**
 * The external schema and its migrations. The tool creates and upgrades its own tables: a
 * versioned `sk_migrations` table records what ran, each step is applied once, and every statement
 * is written to be harmless when repeated (a step interrupted on an engine without transactional
 * DDL, MySQL, is simply run again).
 *
 * Layout (DESIGN.md section 2 rows, attachments moved out):
 * - `sk_session`: indexed columns plus `row_json` (the SQLite row, every column, in the engine's
 *   JSON type) and `extras_json` (project id, todos, share, diff file) for an exact restore;
 *   `complete`/`digest` mark a session whose copy finished and was verified.
 * - `sk_message`, `sk_part`: `body` holds the row's exact JSON bytes (binary, so no charset or
 *   NUL can alter them) with every attachment's payload cut out (the `data:<mime>;base64,` header
 *   stays in place); `data` holds the same JSON in the engine's JSON type for queries (NULL when the
 *   row is not valid JSON for that engine); `attachments` lists each cut as
 *   `{i, o, s, k, n, e}` = index among the part's data URLs, byte offset in body, sha256, kind
 *   (`b` base64 re-encoded canonically, `r` raw payload bytes), decoded bytes, encoded bytes.
 * - `sk_attachment` + `sk_attachment_chunk`: content-addressed bytes (sha256), stored once however
 *   often referenced, in chunks of at most 1 MB, so no row or read is large.
 */
import { sql, type Kysely } from 'kysely';
import type { ExternalKind } from './connection.js';

export interface SkTables {
  sk_migrations: { version: number; name: string; applied_at: number };
  sk_project: { id: string; row_json: string };
  sk_session: {
    id: string;
    project_id: string;
    parent_id: string | null;
    title: string;
    time_created: number;
    time_updated: number;
    time_archived: number | null;
    row_json: string;
    extras_json: string | null;
    messages: number;
    parts: number;
    bytes: number;
    digest: string | null;
    complete: number;
  };
  sk_message: {
    id: string;
    session_id: string;
    time_created: number;
    time_updated: number;
    bytes: number;
    body: Buffer;
    data: string | null;
  };
  sk_part: {
    id: string;
    message_id: string;
    session_id: string;
    time_created: number;
    time_updated: number;
    bytes: number;
    body: Buffer;
    data: string | null;
    attachments: string | null;
    att_count: number;
    att_bytes: number;
    att_encoded: number;
  };
  sk_attachment: { sha256: string; bytes: number; chunks: number; complete: number };
  sk_attachment_chunk: { sha256: string; seq: number; data: Buffer };
}

interface Types {
  id: string;
  text: string;
  json: string;
  blob: string;
  suffix: string;
}

const TYPES: Record<ExternalKind, Types> = {
  postgres: { id: 'VARCHAR(255)', text: 'TEXT', json: 'JSONB', blob: 'BYTEA', suffix: '' },
  // Ids compare byte-wise as in SQLite (the default collations are case-insensitive).
  mysql: {
    id: 'VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin',
    text: 'LONGTEXT',
    json: 'JSON',
    blob: 'LONGBLOB',
    suffix: ' ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin',
  },
  sqlserver: { id: 'VARCHAR(255) COLLATE Latin1_General_BIN2', text: 'NVARCHAR(MAX)', json: 'NVARCHAR(MAX)', blob: 'VARBINARY(MAX)', suffix: '' },
};

function tableDdl(kind: ExternalKind, name: string, body: string): string {
  const create = `CREATE TABLE ${name} (${body})${TYPES[kind].suffix}`;
  if (kind === 'sqlserver') return `IF OBJECT_ID(N'${name}', N'U') IS NULL ${create}`;
  return create.replace('CREATE TABLE', 'CREATE TABLE IF NOT EXISTS');
}

function indexDdl(kind: ExternalKind, name: string, table: string, columns: string): string {
  if (kind === 'postgres') return `CREATE INDEX IF NOT EXISTS ${name} ON ${table} (${columns})`;
  if (kind === 'mysql') return `CREATE INDEX IF NOT EXISTS ${name} ON ${table} (${columns})`;
  return `IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'${name}') CREATE INDEX ${name} ON ${table} (${columns})`;
}

interface Migration {
  version: number;
  name: string;
  statements: (kind: ExternalKind) => string[];
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'sessions, messages, parts, content-addressed attachments',
    statements: (kind) => {
      const t = TYPES[kind];
      return [
        tableDdl(kind, 'sk_project', `id ${t.id} NOT NULL PRIMARY KEY, row_json ${t.json} NOT NULL`),
        tableDdl(
          kind,
          'sk_session',
          `id ${t.id} NOT NULL PRIMARY KEY, project_id ${t.id} NOT NULL, parent_id ${t.id} NULL, title ${t.text} NOT NULL,
           time_created BIGINT NOT NULL, time_updated BIGINT NOT NULL, time_archived BIGINT NULL,
           row_json ${t.json} NOT NULL, extras_json ${t.text} NULL,
           messages INT NOT NULL DEFAULT 0, parts INT NOT NULL DEFAULT 0, bytes BIGINT NOT NULL DEFAULT 0,
           digest VARCHAR(64) NULL, complete SMALLINT NOT NULL DEFAULT 0`,
        ),
        indexDdl(kind, 'sk_session_updated_idx', 'sk_session', 'time_updated, id'),
        indexDdl(kind, 'sk_session_parent_idx', 'sk_session', 'parent_id'),
        tableDdl(
          kind,
          'sk_message',
          `id ${t.id} NOT NULL PRIMARY KEY, session_id ${t.id} NOT NULL, time_created BIGINT NOT NULL, time_updated BIGINT NOT NULL,
           bytes BIGINT NOT NULL, body ${t.blob} NOT NULL, data ${t.json} NULL`,
        ),
        indexDdl(kind, 'sk_message_session_idx', 'sk_message', 'session_id, time_created, id'),
        tableDdl(
          kind,
          'sk_part',
          `id ${t.id} NOT NULL PRIMARY KEY, message_id ${t.id} NOT NULL, session_id ${t.id} NOT NULL,
           time_created BIGINT NOT NULL, time_updated BIGINT NOT NULL, bytes BIGINT NOT NULL,
           body ${t.blob} NOT NULL, data ${t.json} NULL, attachments ${t.text} NULL,
           att_count INT NOT NULL DEFAULT 0, att_bytes BIGINT NOT NULL DEFAULT 0, att_encoded BIGINT NOT NULL DEFAULT 0`,
        ),
        indexDdl(kind, 'sk_part_message_idx', 'sk_part', 'message_id, time_created, id'),
        indexDdl(kind, 'sk_part_session_idx', 'sk_part', 'session_id'),
        tableDdl(kind, 'sk_attachment', `sha256 CHAR(64) NOT NULL PRIMARY KEY, bytes BIGINT NOT NULL, chunks INT NOT NULL, complete SMALLINT NOT NULL DEFAULT 0`),
        tableDdl(kind, 'sk_attachment_chunk', `sha256 CHAR(64) NOT NULL, seq INT NOT NULL, data ${t.blob} NOT NULL, PRIMARY KEY (sha256, seq)`),
        // PostgreSQL: attachment chunks (PDFs, images) do not compress, so they are stored without
        // trying; JSON copies use lz4 where the server has it (several times faster than pglz).
        ...(kind === 'postgres'
          ? [
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
            ]
          : []),
      ];
    },
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;

/** Creates or upgrades the schema; returns the versions applied now (empty when up to date). */
export async function migrateSchema(db: Kysely<SkTables>, kind: ExternalKind): Promise<number[]> {
  await sql
    .raw(tableDdl(kind, 'sk_migrations', `version INT NOT NULL PRIMARY KEY, name VARCHAR(200) NOT NULL, applied_at BIGINT NOT NULL`))
    .execute(db);
  const done = new Set((await db.selectFrom('sk_migrations').select('version').execute()).map((r) => Number(r.version)));
  const applied: number[] = [];
  for (const migration of MIGRATIONS) {
    if (done.has(migration.version)) continue;
    const run = async (exec: Kysely<SkTables>): Promise<void> => {
      for (const statement of migration.statements(kind)) await sql.raw(statement).execute(exec);
      await exec.insertInto('sk_migrations').values({ version: migration.version, name: migration.name, applied_at: Date.now() }).execute();
    };
    try {
      // PostgreSQL and SQL Server roll DDL back with the transaction; MySQL commits each statement.
      if (kind === 'mysql') await run(db);
      else await db.transaction().execute(run);
    } catch (error) {
      // Another process ran the same step at the same moment: its row is there now.
      const again = await db.selectFrom('sk_migrations').select('version').where('version', '=', migration.version).executeTakeFirst();
      if (!again) throw error;
    }
    applied.push(migration.version);
  }
  return applied;
}

/** The highest applied version, or 0 when the tool has never touched this database. */
export async function schemaVersion(db: Kysely<SkTables>): Promise<number> {
  try {
    const row = await db.selectFrom('sk_migrations').select((eb) => eb.fn.max('version').as('v')).executeTakeFirst();
    return Number(row?.v ?? 0);
  } catch {
    return 0;
  }
}
