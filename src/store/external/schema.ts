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
 * - `sk_row` (version 2): every other row a session owns in OpenCode's file (the event log,
 *   session_message, session_input, session_context_epoch), each encoded value by value
 *   (core/table-row.ts) in `body`, its attachments cut out as in `sk_part`.
 * - `sk_attachment` + `sk_attachment_chunk`: content-addressed bytes (sha256), stored once however
 *   often referenced, in chunks of at most 1 MB, so no row or read is large.
 * - `sk_sync_source`, `sk_sync_session`, `sk_sync_base` (version 3): the mirror's state (sync):
 *   the machines mirroring here, who wrote the version held now, and what each machine last sent.
 */
import { sql, type Kysely } from 'kysely';
import type { EngineDialect } from './dialect.js';
import type { SkTables } from './tables.js';

export type { SkTables };


/** One step of a migration: a statement, or an action that needs to look before it acts. */
type Step = string | ((db: Kysely<SkTables>) => Promise<void>);

interface Migration {
  version: number;
  name: string;
  steps: (dialect: EngineDialect) => Step[];
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'sessions, messages, parts, content-addressed attachments',
    steps: (d) => {
      const t = d.types;
      const index = (name: string, table: string, columns: string): Step => (db) => d.ensureIndex(db, name, table, columns);
      return [
        d.createTable('sk_project', `id ${t.id} NOT NULL PRIMARY KEY, row_json ${t.json} NOT NULL`),
        d.createTable(
          'sk_session',
          `id ${t.id} NOT NULL PRIMARY KEY, project_id ${t.id} NOT NULL, parent_id ${t.id} NULL, title ${t.text} NOT NULL,
           time_created BIGINT NOT NULL, time_updated BIGINT NOT NULL, time_archived BIGINT NULL,
           row_json ${t.json} NOT NULL, extras_json ${t.text} NULL,
           messages INT NOT NULL DEFAULT 0, parts INT NOT NULL DEFAULT 0, bytes BIGINT NOT NULL DEFAULT 0,
           digest VARCHAR(64) NULL, complete SMALLINT NOT NULL DEFAULT 0`,
        ),
        index('sk_session_updated_idx', 'sk_session', 'time_updated, id'),
        index('sk_session_parent_idx', 'sk_session', 'parent_id'),
        d.createTable(
          'sk_message',
          `id ${t.id} NOT NULL PRIMARY KEY, session_id ${t.id} NOT NULL, time_created BIGINT NOT NULL, time_updated BIGINT NOT NULL,
           bytes BIGINT NOT NULL, body ${t.blob} NOT NULL, data ${t.json} NULL`,
        ),
        index('sk_message_session_idx', 'sk_message', 'session_id, time_created, id'),
        d.createTable(
          'sk_part',
          `id ${t.id} NOT NULL PRIMARY KEY, message_id ${t.id} NOT NULL, session_id ${t.id} NOT NULL,
           time_created BIGINT NOT NULL, time_updated BIGINT NOT NULL, bytes BIGINT NOT NULL,
           body ${t.blob} NOT NULL, data ${t.json} NULL, attachments ${t.text} NULL,
           att_count INT NOT NULL DEFAULT 0, att_bytes BIGINT NOT NULL DEFAULT 0, att_encoded BIGINT NOT NULL DEFAULT 0`,
        ),
        index('sk_part_message_idx', 'sk_part', 'message_id, time_created, id'),
        index('sk_part_session_idx', 'sk_part', 'session_id'),
        d.createTable('sk_attachment', `sha256 CHAR(64) NOT NULL PRIMARY KEY, bytes BIGINT NOT NULL, chunks INT NOT NULL, complete SMALLINT NOT NULL DEFAULT 0`),
        d.createTable('sk_attachment_chunk', `sha256 CHAR(64) NOT NULL, seq INT NOT NULL, data ${t.blob} NOT NULL, PRIMARY KEY (sha256, seq)`),
        ...d.tuning,
      ];
    },
  },
  {
    version: 2,
    name: "rows of a session's other tables: the event log, OpenCode 1.18's session_message, session_input, ...",
    steps: (d) => [
      d.createTable(
        'sk_row',
        `session_id ${d.types.id} NOT NULL, table_name VARCHAR(64) NOT NULL, ord INT NOT NULL, bytes BIGINT NOT NULL,
         body ${d.types.blob} NOT NULL, attachments ${d.types.text} NULL,
         att_count INT NOT NULL DEFAULT 0, att_bytes BIGINT NOT NULL DEFAULT 0, att_encoded BIGINT NOT NULL DEFAULT 0,
         PRIMARY KEY (session_id, ord)`,
      ),
    ],
  },
  {
    version: 3,
    name: 'the mirror: the machines (sources) that mirror here, and which version of each session each one wrote or holds',
    steps: (d) => [
      d.createTable('sk_sync_source', `source_id VARCHAR(64) NOT NULL PRIMARY KEY, name ${d.types.text} NOT NULL, time_seen BIGINT NOT NULL`),
      // The version the server holds now: which source wrote it, and that source's change mark then.
      d.createTable(
        'sk_sync_session',
        `session_id ${d.types.id} NOT NULL PRIMARY KEY, source_id VARCHAR(64) NOT NULL, time_updated BIGINT NOT NULL, mark VARCHAR(64) NOT NULL, digest VARCHAR(64) NOT NULL, time_synced BIGINT NOT NULL`,
      ),
      // Per source, the version it last wrote or found already here: what a later change of either side is judged against.
      d.createTable(
        'sk_sync_base',
        `source_id VARCHAR(64) NOT NULL, session_id ${d.types.id} NOT NULL, time_updated BIGINT NOT NULL, mark VARCHAR(64) NOT NULL, digest VARCHAR(64) NOT NULL, time_synced BIGINT NOT NULL, PRIMARY KEY (source_id, session_id)`,
      ),
    ],
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;

/** Creates or upgrades the schema; returns the versions applied now (empty when up to date). */
export async function migrateSchema(db: Kysely<SkTables>, dialect: EngineDialect): Promise<number[]> {
  await sql.raw(dialect.createTable('sk_migrations', `version INT NOT NULL PRIMARY KEY, name VARCHAR(200) NOT NULL, applied_at BIGINT NOT NULL`)).execute(db);
  const done = new Set((await db.selectFrom('sk_migrations').select('version').execute()).map((r) => Number(r.version)));
  const applied: number[] = [];
  for (const migration of MIGRATIONS) {
    if (done.has(migration.version)) continue;
    const run = async (exec: Kysely<SkTables>): Promise<void> => {
      for (const step of migration.steps(dialect)) {
        if (typeof step === 'string') await sql.raw(step).execute(exec);
        else await step(exec);
      }
      await exec.insertInto('sk_migrations').values({ version: migration.version, name: migration.name, applied_at: Date.now() }).execute();
    };
    try {
      // Where DDL rolls back with its transaction, a step is all or nothing; elsewhere each statement commits.
      if (dialect.transactionalDdl) await db.transaction().execute(run);
      else await run(db);
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
