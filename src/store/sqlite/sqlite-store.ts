/**
 * The SQLite store: OpenCode's own file, read with the memory rules of DESIGN.md section 3.
 * Payload columns are sized with octet_length (which reads no payload), fetched as BLOBs (Buffers
 * outside the V8 heap) one large value at a time, and reduced before anything is parsed.
 */
import { existsSync, statSync } from 'node:fs';
import type {
  AttachmentResult,
  ListResult,
  MessageView,
  OversizeValue,
  PageOptions,
  ShowResult,
  StatsOptions,
  StatsResult,
  SessionSummary,
} from '../../core/api.js';
import { decodeMessageCursor, decodeSessionCursor, encodeCursor } from '../../core/cursor.js';
import { SkError } from '../../core/errors.js';
import { toMessageInfo, toPartInfo, toSessionInfo, type SessionRow } from '../../core/opencode-format.js';
import {
  attachmentRefName,
  findAttachmentRef,
  findAttachments,
  parseAttachmentRef,
  scanPartData,
} from '../../core/part-scan.js';
import { crossedThresholds } from '../../core/thresholds.js';
import { AttachmentCache } from '../attachment-cache.js';
import { DEFAULT_MESSAGE_PAGE, DEFAULT_SESSION_PAGE, PAGE_RULES, stringLimits, type SessionStore } from '../store.js';
import { partsOfMessages, payloadOf, type PayloadRow } from './part-rows.js';
import { mapSqliteError, openDatabase, V8_STRING_LIMIT, type OpenDatabase, type OpenOptions } from './open.js';

const { inlineFetchBytes: INLINE_FETCH_BYTES, inlineTotalBytes: INLINE_TOTAL_BYTES, budgetBytes: PAGE_BUDGET_BYTES } = PAGE_RULES;
const { sessionPayloadColumns: SESSION_PAYLOAD_COLUMNS, sessionPayloadLimit: SESSION_PAYLOAD_LIMIT } = PAGE_RULES;


export class SqliteStore implements SessionStore {
  readonly kind = 'sqlite' as const;
  private readonly open: OpenDatabase;

  constructor(path: string, options: OpenOptions = {}) {
    this.open = openDatabase(path, options);
  }

  get path(): string {
    return this.open.path;
  }

  get connection(): OpenDatabase {
    return this.open;
  }

  private has(table: string): boolean {
    return this.open.schema.tables.has(table);
  }

  /** Runs a read, mapping SQLite's failures to one-line errors. */
  private read<T>(fn: () => T): T {
    try {
      return fn();
    } catch (error) {
      throw mapSqliteError(error, this.open.path);
    }
  }

  async dataVersion(): Promise<number> {
    return this.read(() => this.open.db.pragma('data_version', { simple: true }) as number);
  }

  async stats(options: StatsOptions = {}): Promise<StatsResult> {
    return this.read(() => this.statsSync(options));
  }

  private statsSync(options: StatsOptions): StatsResult {
    const { db, path, readableLimit } = this.open;
    const fileBytes = statSync(path).size;
    const walBytes = existsSync(`${path}-wal`) ? statSync(`${path}-wal`).size : 0;
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    const freePages = db.pragma('freelist_count', { simple: true }) as number;
    const autoVacuumMode = db.pragma('auto_vacuum', { simple: true }) as number;
    const count = (sql: string): number => db.prepare(sql).pluck().get() as number;

    const tables: StatsResult['tables'] = [];
    for (const [name, payload] of [
      ['session', 'coalesce(octet_length(summary_diffs),0) + coalesce(octet_length(revert),0)'],
      ['message', 'octet_length(data)'],
      ['part', 'octet_length(data)'],
      ['event', 'octet_length(data)'],
      ['todo', 'octet_length(content)'],
    ] as const) {
      if (!this.has(name)) continue;
      if (name === 'session' && !this.open.schema.sessionColumns.has('summary_diffs')) continue;
      const row = db.prepare(`SELECT count(*) AS rows, coalesce(sum(${payload}), 0) AS bytes FROM "${name}"`).get() as {
        rows: number;
        bytes: number;
      };
      tables.push({ name, rows: row.rows, payloadBytes: row.bytes });
    }

    const oversize: OversizeValue[] = [];
    for (const [table, sessionColumn] of [
      ['part', 'session_id'],
      ['message', 'session_id'],
      ['event', 'aggregate_id'],
    ] as const) {
      if (!this.has(table)) continue;
      const rows = db
        .prepare(`SELECT id, ${sessionColumn} AS sessionId, octet_length(data) AS bytes FROM "${table}" WHERE octet_length(data) > ?`)
        .all(V8_STRING_LIMIT) as { id: string; sessionId: string | null; bytes: number }[];
      for (const row of rows) oversize.push({ table, ...row, readable: row.bytes <= readableLimit });
    }

    // Attachments: only parts that mention a data URL are read, one at a time, as Buffers.
    let attachmentCount = 0;
    let attachmentBytes = 0;
    let encodedBytes = 0;
    const withData = db.prepare(
      `SELECT id, CAST(data AS BLOB) AS data FROM part WHERE octet_length(data) <= ? AND instr(data, '"data:') > 0`,
    );
    for (const row of withData.iterate(readableLimit) as IterableIterator<{ id: string; data: Buffer }>) {
      try {
        for (const span of findAttachments(row.data, row.id)) {
          attachmentCount++;
          attachmentBytes += span.decodedBytes;
          encodedBytes += span.end - span.start;
        }
      } catch {
        // a malformed part is reported by `show`, not counted here
      }
    }

    const largestLimit = options.largest ?? 10;
    const eventJoin = this.has('event')
      ? `LEFT JOIN (SELECT aggregate_id AS id, sum(octet_length(data)) AS b FROM event GROUP BY aggregate_id) e ON e.id = s.id`
      : '';
    const largest = db
      .prepare(
        `SELECT s.id, s.title, coalesce(m.b, 0) + coalesce(p.b, 0) ${eventJoin ? '+ coalesce(e.b, 0)' : ''} AS bytes
         FROM session s
         LEFT JOIN (SELECT session_id AS id, sum(octet_length(data)) AS b FROM message GROUP BY session_id) m ON m.id = s.id
         LEFT JOIN (SELECT session_id AS id, sum(octet_length(data)) AS b FROM part GROUP BY session_id) p ON p.id = s.id
         ${eventJoin}
         ORDER BY bytes DESC, s.id LIMIT ?`,
      )
      .all(largestLimit) as { id: string; title: string; bytes: number }[];

    return {
      path,
      schema: this.open.schema.version,
      fileBytes,
      walBytes,
      freeBytes: freePages * pageSize,
      pageSize,
      autoVacuum: autoVacuumMode === 2 ? 'incremental' : autoVacuumMode === 1 ? 'full' : 'none',
      sessions: count('SELECT count(*) FROM session'),
      rootSessions: count('SELECT count(*) FROM session WHERE parent_id IS NULL'),
      messages: count('SELECT count(*) FROM message'),
      parts: count('SELECT count(*) FROM part'),
      events: this.has('event') ? count('SELECT count(*) FROM event') : 0,
      attachments: { count: attachmentCount, bytes: attachmentBytes, encodedBytes },
      tables,
      largest,
      oversize,
      warnings: crossedThresholds(fileBytes + walBytes, options.warnAtMB),
    };
  }

  /** Payload bytes of each session's own messages and parts (index-backed; events are in `stats`). */
  private sessionBytes(ids: string[]): Map<string, number> {
    const rows = this.open.db
      .prepare(
        `SELECT ids.value AS id,
           coalesce((SELECT sum(octet_length(data)) FROM message WHERE session_id = ids.value), 0) +
           coalesce((SELECT sum(octet_length(data)) FROM part WHERE session_id = ids.value), 0) AS bytes
         FROM json_each(?) AS ids`,
      )
      .all(JSON.stringify(ids)) as { id: string; bytes: number }[];
    return new Map(rows.map((r) => [r.id, r.bytes]));
  }

  async listSessions(options: PageOptions = {}): Promise<ListResult> {
    return this.read(() => {
      const limit = options.limit ?? DEFAULT_SESSION_PAGE;
      const archived = this.open.schema.sessionColumns.has('time_archived') ? 'time_archived' : 'NULL';
      const columns = `id, parent_id AS parentId, title, time_created AS timeCreated, time_updated AS timeUpdated, ${archived} AS timeArchived`;
      // OpenCode lists by time_updated; ids wrapped in 2026-08 so the id only breaks ties.
      const rows = (
        options.cursor
          ? (() => {
              const [updated, id] = decodeSessionCursor(options.cursor);
              return this.open.db
                .prepare(
                  `SELECT ${columns} FROM session WHERE time_updated < ? OR (time_updated = ? AND id < ?)
                   ORDER BY time_updated DESC, id DESC LIMIT ?`,
                )
                .all(updated, updated, id, limit + 1);
            })()
          : this.open.db.prepare(`SELECT ${columns} FROM session ORDER BY time_updated DESC, id DESC LIMIT ?`).all(limit + 1)
      ) as Omit<SessionSummary, 'bytes'>[];
      const page = rows.slice(0, limit);
      const bytes = this.sessionBytes(page.map((r) => r.id));
      const last = page[page.length - 1];
      return {
        sessions: page.map((r) => ({ ...r, bytes: bytes.get(r.id) ?? 0 })),
        nextCursor: rows.length > limit && last ? encodeCursor([last.timeUpdated, last.id]) : null,
      };
    });
  }

  private sessionRow(sessionId: string): SessionRow {
    const columns = [...this.open.schema.sessionColumns];
    const select = columns
      .map((c) =>
        (SESSION_PAYLOAD_COLUMNS as readonly string[]).includes(c)
          ? `CASE WHEN octet_length("${c}") <= ${SESSION_PAYLOAD_LIMIT} THEN "${c}" END AS "${c}", octet_length("${c}") AS "${c}__bytes"`
          : `"${c}"`,
      )
      .join(', ');
    const row = this.open.db.prepare(`SELECT ${select} FROM session WHERE id = ?`).get(sessionId) as
      | (SessionRow & Record<string, unknown>)
      | undefined;
    if (!row) throw new SkError('not-found', `no session ${sessionId} in ${this.open.path}`);
    for (const c of SESSION_PAYLOAD_COLUMNS) {
      const bytes = row[`${c}__bytes`];
      delete row[`${c}__bytes`];
      if (typeof bytes === 'number' && bytes > SESSION_PAYLOAD_LIMIT) {
        row[c] = JSON.stringify(`[session-keeper: cut, ${bytes} bytes in all]`);
      }
    }
    return row;
  }

  async showSession(sessionId: string, options: PageOptions = {}): Promise<ShowResult> {
    return this.read(() => {
      const db = this.open.db;
      const session = toSessionInfo(this.sessionRow(sessionId));
      const limit = options.limit ?? DEFAULT_MESSAGE_PAGE;
      const columns = `id, time_created AS timeCreated, octet_length(data) AS bytes,
        CASE WHEN octet_length(data) <= ${INLINE_FETCH_BYTES} THEN CAST(data AS BLOB) END AS data`;
      const messages = (
        options.cursor
          ? (() => {
              const [created, id] = decodeMessageCursor(options.cursor);
              return db
                .prepare(
                  `SELECT ${columns} FROM message WHERE session_id = ? AND (time_created > ? OR (time_created = ? AND id > ?))
                   ORDER BY time_created, id LIMIT ?`,
                )
                .all(sessionId, created, created, id, limit + 1);
            })()
          : db.prepare(`SELECT ${columns} FROM message WHERE session_id = ? ORDER BY time_created, id LIMIT ?`).all(sessionId, limit + 1)
      ) as (PayloadRow & { timeCreated: number })[];
      // The parts of the whole page in one query; inline data stops after 4 MB, the rest is
      // fetched one part at a time, so a message with thousands of parts never arrives at once.
      const page = messages.slice(0, limit);
      const partsByMessage = partsOfMessages(this.open, page.map((m) => m.id), INLINE_FETCH_BYTES, INLINE_TOTAL_BYTES);

      let budget = PAGE_BUDGET_BYTES;
      const views: MessageView[] = [];
      let lastIncluded: (PayloadRow & { timeCreated: number }) | undefined;
      for (const message of page) {
        if (views.length > 0 && budget <= 0) break;
        const info = this.reduce('message', message, budget, (value) => toMessageInfo(message.id, sessionId, value));
        budget -= info.cost;
        const parts: Record<string, unknown>[] = [];
        for (const part of partsByMessage.get(message.id) ?? []) {
          const view = this.reduce('part', part, budget, (value) => toPartInfo(part.id, sessionId, message.id, value));
          budget -= view.cost;
          parts.push(view.value);
        }
        views.push({ info: info.value, parts });
        lastIncluded = message;
      }
      const more = messages.length > views.length;
      return {
        session: session as unknown as Record<string, unknown>,
        messages: views,
        nextCursor: more && lastIncluded ? encodeCursor([lastIncluded.timeCreated, lastIncluded.id]) : null,
      };
    });
  }

  /** One row's JSON, reduced; an unreadable row becomes a marked stand-in instead of failing the page. */
  private reduce(
    table: 'part' | 'message',
    row: PayloadRow,
    budget: number,
    wrap: (value: unknown) => Record<string, unknown>,
  ): { value: Record<string, unknown>; cost: number } {
    const { maxInlineString, previewBytes } = stringLimits(budget);
    try {
      const buf = payloadOf(this.open, table, row);
      const scanned = scanPartData(buf, { partId: row.id, maxInlineString, previewBytes });
      const value = wrap(scanned.value);
      // Cost is what the page will hold: the reduced JSON, not the stored bytes.
      const cost = scanned.attachments.length === 0 && scanned.truncatedStrings === 0 ? buf.length : JSON.stringify(value).length;
      return { value, cost };
    } catch (error) {
      if (!(error instanceof SkError) || (error.code !== 'bad-part' && error.code !== 'too-big')) throw error;
      return { value: wrap({ type: 'unreadable', bytes: row.bytes, error: error.message }), cost: 256 };
    }
  }

  async extractAttachment(requested: string, cacheDir: string, out?: string): Promise<AttachmentResult> {
    const { partId, index } = parseAttachmentRef(requested);
    const ref = attachmentRefName(partId, index);
    const part = this.read(
      () =>
        this.open.db.prepare('SELECT id, octet_length(data) AS bytes, NULL AS data FROM part WHERE id = ?').get(partId) as
          | PayloadRow
          | undefined,
    );
    if (!part) throw new SkError('not-found', `no part ${partId} in ${this.open.path}`);
    const buf = this.read(() => payloadOf(this.open, 'part', part));
    const spans = findAttachments(buf, partId);
    const span = spans[index];
    if (!span) {
      throw new SkError('not-found', `part ${partId} has ${spans.length} attachment${spans.length === 1 ? '' : 's'}, no number ${index}`);
    }
    let filename: string | null = null;
    try {
      const scanned = scanPartData(buf, { partId, maxInlineString: Number.MAX_SAFE_INTEGER });
      filename = findAttachmentRef(scanned.value, ref)?.filename ?? null;
    } catch {
      // the attachment itself is intact; only its name is unknown
    }
    const cache = new AttachmentCache(cacheDir);
    // With --out the bytes go straight to the user's file, not through the cache and a copy.
    const file = cache.writeSpan(buf, span, ref, `part ${partId} attachment ${index}`, out);
    return { ref, path: file.path, bytes: file.bytes, sha256: file.sha256, mime: span.mime, filename };
  }

  async close(): Promise<void> {
    this.open.db.close();
  }
}

