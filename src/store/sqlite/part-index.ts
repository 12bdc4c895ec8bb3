/**
 * Our own small index of OpenCode's file, kept beside the attachment cache
 * (`$XDG_CACHE_HOME/session-keeper/index/<key>.db`) and never inside OpenCode's file:
 *  - per part, by rowid and checked against its id, `time_updated` and stored size: how many
 *    attachments it holds, their decoded and encoded bytes, and where each lies in the value, so
 *    stats count attachments and pages cut them out without reading a part twice;
 *  - memos of whole-file figures (sizes per session, the stats) keyed by the file's state (its
 *    header, size, mtime and WAL header), so an unchanged file is not read again at all.
 *
 * The index is advice, never truth: a row whose facts do not match is read again, a memo whose
 * state differs is recomputed, and an index that cannot be opened or written (read-only cache,
 * disk full, another process holding it) only makes reads slower. OpenCode's connection sees it
 * attached read-only (`sk_index`) for joins; writes go through a connection of its own, in WAL
 * mode, so neither blocks the other.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { AttachmentSpan } from '../../core/part-scan.js';
import { cacheHome } from '../../core/paths.js';
import type { SqliteConnection } from './connection.js';
import { statement } from './rows.js';

/** Bumped when what the index holds changes meaning: an index of another format is rebuilt. */
const INDEX_FORMAT = '1';
const ATTACHED = 'sk_index';

/** Where indexes live when the caller names no folder: beside the attachment cache. */
export function defaultIndexDir(env: Record<string, string | undefined> = process.env): string | null {
  if (env['SESSION_KEEPER_NO_INDEX'] === '1') return null;
  return join(cacheHome(env), 'session-keeper', 'index');
}

/** What the index knows of one part. */
export interface PartFacts {
  row: number;
  id: string;
  timeUpdated: number;
  /** octet_length of its data when it was read (-1 for no data). */
  bytes: number;
  spans: readonly AttachmentSpan[];
}

/** A part row whose facts are missing or stale, with its data when it is small and mentions a data URL. */
export interface UnindexedPart {
  row: number;
  id: string;
  timeUpdated: number;
  bytes: number;
  /** 1 when the value is small and contains `"data:`, 0 when small without it, null when large. */
  mentions: 0 | 1 | null;
  data: Buffer | null;
}

export interface AttachmentTotals {
  count: number;
  decoded: number;
  encoded: number;
}

type SpanTuple = [start: number, payloadStart: number, end: number, decodedBytes: number, mime: string, base64: 0 | 1];

function encodeSpans(spans: readonly AttachmentSpan[]): string | null {
  return spans.length === 0 ? null : JSON.stringify(spans.map((s): SpanTuple => [s.start, s.payloadStart, s.end, s.decodedBytes, s.mime, s.base64 ? 1 : 0]));
}

function decodeSpans(text: string | null): AttachmentSpan[] {
  if (!text) return [];
  return (JSON.parse(text) as SpanTuple[]).map(([start, payloadStart, end, decodedBytes, mime, base64], index) => ({
    index,
    start,
    payloadStart,
    end,
    decodedBytes,
    mime,
    base64: base64 === 1,
  }));
}

function readHead(path: string, bytes: number): Buffer | null {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const head = Buffer.alloc(bytes);
    const read = readSync(fd, head, 0, bytes, 0);
    return head.subarray(0, read);
  } catch {
    return null;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * The file's state as far as its content is concerned: any commit changes it (rollback journal:
 * the header's change counter and the mtime; WAL: the WAL's size, or its header's salts when it
 * restarts). A checkpoint may change it without changing content, which only costs a recompute.
 * Taken before reading, so figures read afterwards are never filed under an older state.
 */
export function fileState(conn: SqliteConnection): string {
  const stat = statSync(conn.path, { bigint: true });
  const head = readHead(conn.path, 100);
  const walPath = `${conn.path}-wal`;
  let wal: string[] | null = null;
  if (existsSync(walPath)) {
    const walStat = statSync(walPath, { bigint: true });
    wal = [String(walStat.ino), String(walStat.size), String(walStat.mtimeNs), readHead(walPath, 32)?.toString('hex') ?? ''];
  }
  return JSON.stringify([
    INDEX_FORMAT,
    conn.readableLimit,
    String(stat.dev),
    String(stat.ino),
    String(stat.size),
    String(stat.mtimeNs),
    head?.subarray(24, 28).toString('hex') ?? '',
    head?.subarray(92, 100).toString('hex') ?? '',
    wal,
  ]);
}

export class PartIndex {
  /** Parts whose facts wait to be written, flushed in one transaction per batch. */
  private pending: PartFacts[] = [];
  private writable = true;

  private constructor(
    readonly path: string,
    private readonly conn: SqliteConnection,
    private readonly writer: Database.Database,
  ) {}

  /** The index of `conn`'s file in `dir`, attached to `conn`; null when it cannot be had. */
  static open(conn: SqliteConnection, dir: string | null): PartIndex | null {
    if (!dir || !conn.schema.tables.has('part')) return null;
    let writer: Database.Database | undefined;
    try {
      const source = realpathSync(conn.path);
      const path = join(dir, `${createHash('sha256').update(source).digest('hex').slice(0, 32)}.db`);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      // Part ids and sizes are the user's: the file is created private before SQLite opens it.
      if (!existsSync(path)) closeSync(openSync(path, 'a', 0o600));
      writer = new Database(path, { timeout: 2000 });
      writer.pragma('journal_mode = WAL');
      writer.pragma('synchronous = NORMAL');
      // Written in batches, read through OpenCode's connection: a small page cache is enough.
      writer.pragma('cache_size = -2000');
      PartIndex.prepare(writer, source);
      conn.db.prepare(`ATTACH DATABASE ? AS ${ATTACHED}`).run(path);
      return new PartIndex(path, conn, writer);
    } catch {
      writer?.close();
      return null;
    }
  }

  /** Creates the tables, or rebuilds them when they are of another format or another file's. */
  private static prepare(db: Database.Database, source: string): void {
    db.exec(`CREATE TABLE IF NOT EXISTS sk_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
    const meta = new Map((db.prepare('SELECT key, value FROM sk_meta').all() as { key: string; value: string }[]).map((r) => [r.key, r.value]));
    if (meta.get('format') !== INDEX_FORMAT || meta.get('source') !== source) {
      db.exec('DROP TABLE IF EXISTS sk_part_facts; DROP TABLE IF EXISTS sk_memo; DELETE FROM sk_meta;');
      db.prepare("INSERT INTO sk_meta (key, value) VALUES ('format', ?), ('source', ?)").run(INDEX_FORMAT, source);
    }
    db.exec(`
      CREATE TABLE IF NOT EXISTS sk_part_facts (
        row INTEGER PRIMARY KEY, id TEXT NOT NULL, time_updated INTEGER NOT NULL, bytes INTEGER NOT NULL,
        attachments INTEGER NOT NULL, decoded INTEGER NOT NULL, encoded INTEGER NOT NULL, spans TEXT);
      CREATE TABLE IF NOT EXISTS sk_memo (name TEXT PRIMARY KEY, state TEXT NOT NULL, value TEXT NOT NULL);`);
  }

  /** A figure remembered for exactly this file state, or undefined. */
  memo<T>(name: string, state: string): T | undefined {
    try {
      const row = this.writer.prepare('SELECT state, value FROM sk_memo WHERE name = ?').get(name) as { state: string; value: string } | undefined;
      return row && row.state === state ? (JSON.parse(row.value) as T) : undefined;
    } catch {
      return undefined;
    }
  }

  remember(name: string, state: string, value: unknown): void {
    this.write(() => this.writer.prepare('INSERT OR REPLACE INTO sk_memo (name, state, value) VALUES (?, ?, ?)').run(name, state, JSON.stringify(value)));
  }

  /** The attachments of a part, when the index holds facts for exactly this version of it. */
  spans(row: number, id: string, timeUpdated: number, bytes: number): AttachmentSpan[] | undefined {
    const hit = statement(this.conn.db, `SELECT id, time_updated AS t, bytes, spans FROM ${ATTACHED}.sk_part_facts WHERE row = ?`).get(row) as
      | { id: string; t: number; bytes: number; spans: string | null }
      | undefined;
    return hit && hit.id === id && hit.t === timeUpdated && hit.bytes === bytes ? decodeSpans(hit.spans) : undefined;
  }

  /** Files facts (written in batches; `flush` writes the rest). */
  record(facts: PartFacts): void {
    this.pending.push(facts);
    if (this.pending.length >= 500) this.flush();
  }

  flush(): void {
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    const insert = this.writer.prepare(
      'INSERT OR REPLACE INTO sk_part_facts (row, id, time_updated, bytes, attachments, decoded, encoded, spans) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
    this.write(() =>
      this.writer.transaction(() => {
        for (const f of batch) {
          const decoded = f.spans.reduce((sum, s) => sum + s.decodedBytes, 0);
          const encoded = f.spans.reduce((sum, s) => sum + (s.end - s.start), 0);
          insert.run(f.row, f.id, f.timeUpdated, f.bytes, f.spans.length, decoded, encoded, encodeSpans(f.spans));
        }
      })(),
    );
  }

  /**
   * Runs a write. Another process holding the index (busy) skips this one; any other failure
   * (read-only, full, damaged) stops writing for this connection. Never fails the read.
   */
  private write(run: () => unknown): void {
    if (!this.writable) return;
    try {
      run();
    } catch (error) {
      if (!String((error as { code?: unknown }).code).startsWith('SQLITE_BUSY')) this.writable = false;
    }
  }

  /** Attachment totals over the parts whose facts match, and how many parts have none that do. */
  totals(): AttachmentTotals & { missing: number } {
    const row = statement(
      this.conn.db,
      `SELECT count(*) - count(i.row) AS missing, count(i.row) AS matched, coalesce(sum(i.attachments), 0) AS count,
              coalesce(sum(i.decoded), 0) AS decoded, coalesce(sum(i.encoded), 0) AS encoded
       FROM part AS p LEFT JOIN ${ATTACHED}.sk_part_facts AS i
         ON i.row = p.rowid AND i.id = p.id AND i.time_updated = p.time_updated AND i.bytes = coalesce(octet_length(p.data), -1)`,
    ).get() as AttachmentTotals & { missing: number; matched: number };
    // Facts of parts deleted since: dropped once they are a good share of the index.
    const stale = (statement(this.conn.db, `SELECT count(*) FROM ${ATTACHED}.sk_part_facts`).pluck().get() as number) - row.matched;
    if (stale > 1000 && stale > row.matched / 4) this.prune();
    return { missing: row.missing, count: row.count, decoded: row.decoded, encoded: row.encoded };
  }

  /** Encoded (as stored) attachment bytes per session, over the parts whose facts match. */
  sessionEncoded(): Map<string, number> {
    const rows = statement(
      this.conn.db,
      `SELECT p.session_id AS id, sum(i.encoded) AS encoded
       FROM part AS p JOIN ${ATTACHED}.sk_part_facts AS i
         ON i.row = p.rowid AND i.id = p.id AND i.time_updated = p.time_updated AND i.bytes = coalesce(octet_length(p.data), -1)
       WHERE i.encoded > 0 GROUP BY p.session_id`,
    ).all() as { id: string; encoded: number }[];
    return new Map(rows.map((r) => [r.id, r.encoded]));
  }

  /** Forgets facts of rows no longer in OpenCode's file (ids read on its connection, deleted on ours). */
  private prune(): void {
    const gone = statement(
      this.conn.db,
      `SELECT i.row FROM ${ATTACHED}.sk_part_facts AS i WHERE NOT EXISTS (SELECT 1 FROM part AS p WHERE p.rowid = i.row AND p.id = i.id)`,
    ).pluck().all() as number[];
    const drop = this.writer.prepare('DELETE FROM sk_part_facts WHERE row = ?');
    this.write(() => this.writer.transaction(() => gone.forEach((row) => drop.run(row)))());
  }

  /** The parts whose facts are missing or stale, one at a time (see UnindexedPart). */
  unindexed(smallBytes: number): IterableIterator<UnindexedPart> {
    return statement(this.conn.db, unindexedSql(`LEFT JOIN ${ATTACHED}.sk_part_facts AS i
         ON i.row = p.rowid AND i.id = p.id AND i.time_updated = p.time_updated AND i.bytes = coalesce(octet_length(p.data), -1)
       WHERE i.row IS NULL`)).iterate({ small: smallBytes }) as IterableIterator<UnindexedPart>;
  }

  close(): void {
    this.flush();
    try {
      this.conn.db.prepare(`DETACH DATABASE ${ATTACHED}`).run();
    } catch {
      // the connection is closing anyway
    }
    this.writer.close();
  }
}

/** Every part row as an UnindexedPart: what stats read when there is no index. */
export function everyPart(conn: SqliteConnection, smallBytes: number): IterableIterator<UnindexedPart> {
  return rowsOf(conn, 'part', 'data', smallBytes);
}

/** Every row of another table that may hold attachments (the newer layout's messages and prompts), the same way. */
export function rowsOf(conn: SqliteConnection, table: string, column: string, smallBytes: number): IterableIterator<UnindexedPart> {
  return statement(conn.db, unindexedSql('', table, column)).iterate({ small: smallBytes }) as IterableIterator<UnindexedPart>;
}

/** Sizes from octet_length (no payload read); data only for small values that mention a data URL (instr runs in SQLite). */
function unindexedSql(join: string, table = 'part', column = 'data'): string {
  const value = `p."${column}"`;
  // Only parts are indexed: other tables need no time_updated (session_input has none).
  const updated = table === 'part' ? 'p.time_updated' : '0';
  return `SELECT p.rowid AS row, p.id, ${updated} AS timeUpdated, coalesce(octet_length(${value}), -1) AS bytes,
            CASE WHEN octet_length(${value}) <= @small THEN instr(${value}, '"data:') > 0 END AS mentions,
            CASE WHEN octet_length(${value}) <= @small AND instr(${value}, '"data:') > 0 THEN CAST(${value} AS BLOB) END AS data
          FROM "${table}" AS p ${join}`;
}
