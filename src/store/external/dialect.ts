/**
 * What differs between the servers, as data: one small object per engine (dialects/<name>.ts), in
 * the manner of Kysely's own `src/dialect/<name>/` folders. Shared code asks its dialect; it
 * never asks which engine it is talking to.
 */
import type { CompiledQuery, Dialect as KyselyDialect, Kysely, RawBuilder } from 'kysely';
import type { ExternalKind } from '../../core/storage.js';
import type { SessionCheck } from './digest.js';
import type { SkTables } from './tables.js';

/** A connection string taken apart (the password kept out of `display`). */
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

/** Column types of our schema in this engine's words. */
export interface ColumnTypes {
  id: string;
  text: string;
  json: string;
  blob: string;
  /** Appended to CREATE TABLE (engine, charset). */
  tableSuffix: string;
}

/** A row for the bulk part/message insert, with whether the server may build its JSON copy. */
export interface BulkRow {
  row: Record<string, unknown>;
  json: boolean;
}

export interface EngineDialect {
  readonly kind: ExternalKind;
  /** The user a connection string without one means. */
  readonly defaultUser: string;
  readonly defaultPort: number;
  readonly types: ColumnTypes;
  /** Kysely's dialect over this engine's driver, with a pool of `poolSize`; `bulk` relaxes per-commit durability. */
  kyselyDialect(conn: ParsedConnection, poolSize: number, bulk: boolean): Promise<KyselyDialect>;
  /** What the user can do about a driver error that is a limit of this engine's configuration, or undefined. */
  remedyFor?(error: unknown): string | undefined;

  // ---- schema ----
  /** A CREATE TABLE that does nothing when the table exists. */
  createTable(name: string, body: string): string;
  /** Creates an index unless one of that name exists (each engine checks in its own way). */
  ensureIndex(db: Kysely<SkTables>, name: string, table: string, columns: string): Promise<void>;
  /** Engine-only statements after the first schema step (storage tweaks). */
  readonly tuning: readonly string[];
  /** Whether DDL rolls back with its transaction. */
  readonly transactionalDdl: boolean;

  // ---- expressions ----
  byteLength(column: string): RawBuilder<number>;
  /** sha256 of a binary column as lowercase hex, computed by the server. */
  sha256Hex(column: string): RawBuilder<string>;
  /** `LIMIT n` or `TOP n`. */
  limit<T extends { limit(n: number): T; top(n: number): T }>(qb: T, n: number): T;
  /** Bytes the database occupies (0 when the role may not see it). */
  databaseBytes(db: Kysely<SkTables>): Promise<number>;
  /**
   * Where the engine can: each session's digest (digest.ts: its row lines sorted, hashed) and
   * counts, computed by the server from the stored rows in one query, so no row comes back.
   * Sessions without rows are absent. Its sort is bytewise, JavaScript's by UTF-16 unit: they
   * differ only for ids beyond ASCII, and a caller re-checks a mismatch row by row.
   */
  storedDigests?(db: Kysely<SkTables>, sessionIds: readonly string[]): Promise<Map<string, SessionCheck>>;

  // ---- writes ----
  /** Rows per INSERT (SQL Server allows 2,100 parameters per statement). */
  readonly batchRows: number;
  /** Attachment chunks per INSERT (MySQL caps its packets at 16 MB by default). */
  readonly chunksPerStatement: number;
  /** Whether single-chunk attachments go in with their part's batch. */
  readonly batchesSmallAttachments: boolean;
  /** INSERT … that skips rows whose key exists. */
  insertIgnoring<T extends 'sk_attachment' | 'sk_attachment_chunk'>(db: Kysely<SkTables>, table: T, values: readonly SkTables[T][]): Promise<void>;
  /** The JSON copy of a body for this engine's JSON column, or null when the column stays NULL. */
  jsonCopy(body: Buffer): string | null;
  /**
   * When set, the server builds the JSON copy from the binary body itself, and a bulk insert is
   * one statement of this dialect's making (the body crosses the wire once).
   */
  readonly serverJson: ServerJson | null;
  /** Makes every earlier commit durable (a no-op where each commit already is). */
  durableBarrier(db: Kysely<SkTables>): Promise<void>;
  /** Inside a transaction: its commit returns (and is seen) only once it and every earlier commit are durable. */
  durableCommit(trx: Kysely<SkTables>): Promise<void>;
  /** Largest value a read can bring back without exceeding V8's string limit on the way. */
  readonly readableLimit: number;
  /**
   * A bulk load that streams rows into a table (PostgreSQL's COPY), for the pool `kyselyDialect`
   * made; absent where the engine has none, and shared code then inserts.
   */
  copyIn?(pool: KyselyDialect): CopyIn | null;
}

/** A value too big to hold whole, read chunk by chunk (a `ChunkedValue` fits). */
export interface StreamedValue {
  readonly bytes: number;
  chunks(): Iterable<Buffer>;
}

/** Our schema's column types as a bulk load encodes them (`json`: the text of a JSON value). */
export type CopyType = 'text' | 'int4' | 'int8' | 'blob' | 'json';

export interface CopyColumn {
  name: string;
  type: CopyType;
}

/** One value of a loaded row: `text` and `json` cells are UTF-8 bytes or strings, `blob` bytes. */
export type CopyCell = string | number | Buffer | StreamedValue | null;

export interface CopyIn {
  /**
   * Loads `rows` into `table` in one statement on a pooled connection (streamed values go out
   * chunk by chunk as the server takes them) and returns the rows stored: all of them or, when
   * anything fails, none.
   */
  load(table: string, columns: readonly CopyColumn[], rows: Iterable<readonly CopyCell[]>): Promise<number>;
}

export interface ServerJson {
  /** Whether the server will accept the body as JSON (cheap, on the bytes, for big bodies). */
  acceptable(body: Buffer): boolean;
  /**
   * A check of the bytes only, no parse: for bulk loads (`copyIn`), which let the server judge
   * and find a refused body by halving the batch that held it.
   */
  plausible(body: Buffer): boolean;
  /** Bodies above this size go one per statement, so a refusal costs one row. */
  readonly aloneAbove: number;
  bulkInsert(table: 'sk_message' | 'sk_part', rows: readonly BulkRow[]): CompiledQuery;
}
