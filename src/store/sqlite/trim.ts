/**
 * Trimming sessions in OpenCode's file without deleting them. Planning finds the rows each mode
 * changes with SQLite's JSON functions (sizes and paths only: no payload reaches JS); applying
 * rewrites them inside SQLite (json_set / json_remove, so a 300 MB attachment is never a JS
 * value) in short write transactions, each row only while it is still what was planned.
 *
 * Both layouts of OpenCode 1.18: `part` rows (reasoning parts are deleted; compacted tool outputs
 * and data: URLs rewritten) and `session_message` / `session_input` content (reasoning items
 * dropped from `content`, data: URIs replaced). OpenCode marks compacted outputs only in parts.
 */
import { SkError } from '../../core/errors.js';
import { COMPACTED_OUTPUT, MIN_TRIMMED_URL_BYTES, PLACEHOLDER_MIME, PLACEHOLDER_PREFIX, summarizeTargets, type TrimPlan, type TrimTable, type TrimTarget } from '../../core/trim.js';
import type { SqliteConnection } from './connection.js';
import { statement } from './rows.js';
import { findStoredAttachments, valueChunks } from './value-chunks.js';
import type { TrimRequest } from '../reader.js';
import type { AppliedTrim } from '../writer.js';


/**
 * Rows bigger than this never go through SQLite's JSON functions, which hold a parsed copy of the
 * value in memory: their type is read from their first bytes and their data: URLs are found and
 * cut out by streaming the value a chunk at a time (value-chunks.ts).
 */
export const BIG_ROW_BYTES = 16 * 1024 * 1024;

/** A write transaction stops taking more rows after this long. */
const TRANSACTION_BUDGET_MS = 50;

/** The column holding a table's content, and whether it has `time_updated`. */
const CONTENT: Record<TrimTable, { column: string; updated: boolean; session: string }> = {
  part: { column: 'data', updated: true, session: 'session_id' },
  session_message: { column: 'data', updated: true, session: 'session_id' },
  session_input: { column: 'prompt', updated: false, session: 'session_id' },
};

function refuseLayout(conn: SqliteConnection): void {
  if (conn.schema.layout === '2.x') {
    throw new SkError('unsupported-schema', `${conn.path} is an OpenCode 2.x file (session_v2): session-keeper reads it but changes nothing in it yet; nothing was trimmed`);
  }
}

interface UrlRow {
  id: string;
  sessionId: string;
  timeUpdated: number | null;
  bytes: number;
  path: string;
  urlBytes: number;
  /** The URL's 0-based position among the row's data: URLs (what an attachment reference counts). */
  index: number;
}

/** The data: URLs (keys `url`/`uri`) of a table's rows in `sessions`, numbered in document order. */
function dataUrls(conn: SqliteConnection, table: TrimTable, ids: string, before: number, extraWhere = ''): UrlRow[] {
  const { column, updated, session } = CONTENT[table];
  const rows = conn.db
    .prepare(
      `SELECT r.id, r.${session} AS sessionId, ${updated ? 'r.time_updated' : 'NULL'} AS timeUpdated, octet_length(r.${column}) AS bytes,
              j.fullkey AS path, octet_length(j.value) AS urlBytes,
              (row_number() OVER (PARTITION BY r.id ORDER BY j.id)) - 1 AS "index",
              substr(j.value, 1, ${PLACEHOLDER_PREFIX.length}) AS head
       FROM "${table}" r, json_tree(r.${column}) j
       WHERE r.${session} IN (SELECT value FROM json_each(?)) AND r.time_created < ? AND octet_length(r.${column}) <= ${BIG_ROW_BYTES} AND json_valid(r.${column}) ${extraWhere}
         AND j.key IN ('url', 'uri') AND j.type = 'text' AND substr(j.value, 1, 5) = 'data:'
       ORDER BY r.${session}, r.id, j.id`,
    )
    .all(ids, before) as (UrlRow & { head: string })[];
  return rows.filter((r) => r.head !== PLACEHOLDER_PREFIX && r.urlBytes >= MIN_TRIMMED_URL_BYTES).map(({ head: _head, ...r }) => r);
}

interface BigRow {
  table: TrimTable;
  id: string;
  sessionId: string;
  timeUpdated: number | null;
  timeCreated: number;
  bytes: number;
  /** A part's `type`, read from its first bytes (OpenCode writes it first), or null. */
  type: string | null;
}

/** The rows of these sessions too big for the JSON functions (sizes from octet_length: nothing is read). */
function bigRows(conn: SqliteConnection, ids: string): BigRow[] {
  const out: BigRow[] = [];
  for (const table of ['part', 'session_message', 'session_input'] as const) {
    if (!conn.schema.tables.has(table)) continue;
    const { column, updated, session } = CONTENT[table];
    const rows = conn.db
      .prepare(
        `SELECT id, ${session} AS sessionId, ${updated ? 'time_updated' : 'NULL'} AS timeUpdated, time_created AS timeCreated, octet_length(${column}) AS bytes
         FROM "${table}" WHERE ${session} IN (SELECT value FROM json_each(?)) AND octet_length(${column}) > ${BIG_ROW_BYTES} ORDER BY ${session}, time_created, id`,
      )
      .all(ids) as Omit<BigRow, 'table' | 'type'>[];
    for (const r of rows) {
      const head = table === 'part' ? Buffer.concat([...valueChunks(conn.db, table, column, { id: r.id }, { stop: 256 })]).toString('utf8') : '';
      out.push({ table, ...r, type: /^\{\s*"type"\s*:\s*"([^"]+)"/.exec(head)?.[1] ?? null });
    }
  }
  return out;
}

/** The rows `request` would change, row facts taken now. */
export function planTrim(conn: SqliteConnection, request: TrimRequest): TrimPlan {
  refuseLayout(conn);
  const { db, schema } = conn;
  const ids = JSON.stringify(request.sessions);
  const targets: TrimTarget[] = [];
  const hasPart = schema.tables.has('part');
  const hasMessages = schema.tables.has('session_message');
  const compacted = new Set<string>();
  const big = bigRows(conn, ids);
  const bigParts = big.filter((r) => r.table === 'part');
  // A big tool part is rare (a compacted read of a huge file): it alone goes through the JSON query.
  const bigTools = bigParts.filter((r) => r.type === 'tool').map((r) => r.id);
  // (Reasoning items inside a newer-layout message over BIG_ROW_BYTES, one carrying a huge tool
  // file, are left: finding them would parse the whole value.)
  if (request.modes.includes('reasoning')) {
    for (const r of bigParts) if (r.type === 'reasoning') targets.push({ table: 'part', id: r.id, sessionId: r.sessionId, timeUpdated: r.timeUpdated, bytes: r.bytes, mode: 'reasoning', action: 'delete', freesBytes: r.bytes });
    if (hasPart) {
      const rows = db
        .prepare(
          `SELECT id, session_id AS sessionId, time_updated AS timeUpdated, octet_length(data) AS bytes FROM part
           WHERE session_id IN (SELECT value FROM json_each(?)) AND octet_length(data) <= ${BIG_ROW_BYTES} AND json_valid(data) AND data ->> '$.type' = 'reasoning' ORDER BY session_id, time_created, id`,
        )
        .all(ids) as { id: string; sessionId: string; timeUpdated: number; bytes: number }[];
      for (const r of rows) targets.push({ table: 'part', ...r, mode: 'reasoning', action: 'delete', freesBytes: r.bytes });
    }
    if (hasMessages) {
      const rows = db
        .prepare(
          `SELECT m.id, m.session_id AS sessionId, m.time_updated AS timeUpdated, octet_length(m.data) AS bytes, sum(octet_length(j.value)) AS freed
           FROM session_message m, json_each(m.data, '$.content') j
           WHERE m.session_id IN (SELECT value FROM json_each(?)) AND octet_length(m.data) <= ${BIG_ROW_BYTES} AND json_valid(m.data) AND json_type(m.data, '$.content') = 'array' AND j.value ->> '$.type' = 'reasoning'
           GROUP BY m.id ORDER BY m.session_id, m.seq`,
        )
        .all(ids) as { id: string; sessionId: string; timeUpdated: number; bytes: number; freed: number }[];
      for (const r of rows) targets.push({ table: 'session_message', id: r.id, sessionId: r.sessionId, timeUpdated: r.timeUpdated, bytes: r.bytes, mode: 'reasoning', action: 'rewrite', freesBytes: r.freed });
    }
  }
  if (request.modes.includes('compacted-outputs') && hasPart) {
    const rows = db
      .prepare(
        `SELECT id, session_id AS sessionId, time_updated AS timeUpdated, octet_length(data) AS bytes,
                coalesce(octet_length(data ->> '$.state.output'), 0) + coalesce(octet_length(data -> '$.state.attachments'), 0) AS freed
         FROM part WHERE session_id IN (SELECT value FROM json_each(?)) AND (octet_length(data) <= ${BIG_ROW_BYTES} OR id IN (SELECT value FROM json_each(?))) AND json_valid(data) AND data ->> '$.type' = 'tool'
           AND data -> '$.state.time.compacted' IS NOT NULL
           AND (coalesce(data ->> '$.state.output', '') NOT IN ('', ?) OR coalesce(json_array_length(data, '$.state.attachments'), 0) > 0)
         ORDER BY session_id, time_created, id`,
      )
      .all(ids, JSON.stringify(bigTools), COMPACTED_OUTPUT) as { id: string; sessionId: string; timeUpdated: number; bytes: number; freed: number }[];
    for (const r of rows) {
      compacted.add(r.id);
      targets.push({ table: 'part', id: r.id, sessionId: r.sessionId, timeUpdated: r.timeUpdated, bytes: r.bytes, mode: 'compacted-outputs', action: 'rewrite', freesBytes: Math.max(0, r.freed - COMPACTED_OUTPUT.length) });
    }
  }
  if (request.modes.includes('attachments')) {
    const before = request.attachmentsBefore ?? Number.MAX_SAFE_INTEGER;
    const tables: TrimTable[] = [];
    if (hasPart) tables.push('part');
    if (hasMessages) tables.push('session_message');
    if (schema.tables.has('session_input')) tables.push('session_input');
    for (const r of big) {
      if (!tables.includes(r.table) || r.timeCreated >= before) continue;
      if (r.table === 'part' && (compacted.has(r.id) || (r.type === 'reasoning' && request.modes.includes('reasoning')))) continue;
      const cuts = findStoredAttachments(db, r.table, CONTENT[r.table].column, { id: r.id }, r.id)
        .filter((s) => s.end - s.start >= MIN_TRIMMED_URL_BYTES)
        .map((s) => ({ start: s.start, end: s.end, index: s.index }));
      if (cuts.length === 0) continue;
      targets.push({ table: r.table, id: r.id, sessionId: r.sessionId, timeUpdated: r.timeUpdated, bytes: r.bytes, mode: 'attachments', action: 'rewrite', freesBytes: cuts.reduce((n, c) => n + c.end - c.start, 0), urls: cuts.map((c) => ({ path: '', index: c.index })), cuts });
    }
    for (const table of tables) {
      const byRow = new Map<string, TrimTarget>();
      // Reasoning parts go whole and compacted tool parts lose their attachments anyway.
      const extra = table === 'part' && request.modes.includes('reasoning') ? `AND coalesce(r.data ->> '$.type', '') <> 'reasoning'` : '';
      for (const url of dataUrls(conn, table, ids, before, extra)) {
        if (table === 'part' && compacted.has(url.id)) continue;
        let target = byRow.get(url.id);
        if (!target) {
          target = { table, id: url.id, sessionId: url.sessionId, timeUpdated: url.timeUpdated, bytes: url.bytes, mode: 'attachments', action: 'rewrite', freesBytes: 0, urls: [] };
          byRow.set(url.id, target);
          targets.push(target);
        }
        target.urls?.push({ path: url.path, index: url.index });
        target.freesBytes += url.urlBytes;
      }
    }
  }
  const order = new Map(request.sessions.map((id, i) => [id, i]));
  const sessions = [...new Set(targets.map((t) => t.sessionId))].sort((a, b) => (order.get(a) ?? 0) - (order.get(b) ?? 0));
  return summarizeTargets([...request.modes], sessions, targets);
}


/** A big row's value with the URL byte ranges `cuts` replaced by `placeholder`, read a chunk at a time. */
function cutValue(conn: SqliteConnection, table: TrimTable, column: string, id: string, cuts: readonly { start: number; end: number }[], placeholder: string): Buffer {
  const pieces: Buffer[] = [];
  const replacement = Buffer.from(placeholder, 'utf8');
  let at = 0;
  for (const cut of [...cuts].sort((a, b) => a.start - b.start)) {
    if (cut.start > at) pieces.push(...valueChunks(conn.db, table, column, { id }, { start: at, stop: cut.start }));
    pieces.push(replacement);
    at = cut.end;
  }
  pieces.push(...valueChunks(conn.db, table, column, { id }, { start: at }));
  return Buffer.concat(pieces);
}

/**
 * Applies a plan: each row's changes in one statement, the rows of a few sessions per short
 * transaction, a row only while its `time_updated` and size are what was planned (and archived).
 */
export function applyTrim(conn: SqliteConnection, plan: TrimPlan, placeholder: string): AppliedTrim {
  refuseLayout(conn);
  const { db } = conn;
  const result: AppliedTrim = { rows: {}, changed: 0, partIds: [] };
  const rows = new Map<string, TrimTarget[]>();
  for (const t of plan.targets) {
    const key = `${t.table}\u0000${t.id}`;
    rows.set(key, [...(rows.get(key) ?? []), t]);
  }
  const groups = [...rows.values()];
  const applyRow = (targets: TrimTarget[]): void => {
    const first = targets[0] as TrimTarget;
    const { column, updated } = CONTENT[first.table];
    const guard = `id = ? AND octet_length(${column}) = ?${updated ? ' AND time_updated = ?' : ''}`;
    const guardArgs = [first.id, first.bytes, ...(updated ? [first.timeUpdated] : [])];
    let changes: number;
    if (targets.some((t) => t.action === 'delete')) {
      changes = statement(db, `DELETE FROM "${first.table}" WHERE ${guard}`).run(...guardArgs).changes;
    } else {
      let expression = column;
      const args: unknown[] = [];
      const attachments = targets.find((t) => t.mode === 'attachments');
      let whereSql = guard;
      let whereArgs: unknown[] = guardArgs;
      if (attachments?.cuts?.length) {
        // A big row: rebuilt from the bytes around its URLs, read in chunks; then the small result
        // is an ordinary row, whose replaced files get the placeholder's mime.
        const rebuilt = cutValue(conn, first.table, column, first.id, attachments.cuts, placeholder);
        if (statement(db, `UPDATE "${first.table}" SET ${column} = CAST(? AS TEXT) WHERE ${guard}`).run(rebuilt, ...guardArgs).changes === 0) {
          result.changed++;
          return;
        }
        const mimes = (
          db
            .prepare(`SELECT j.fullkey FROM "${first.table}" r, json_tree(r.${column}) j WHERE r.id = ? AND j.key IN ('url', 'uri') AND substr(j.value, 1, ${PLACEHOLDER_PREFIX.length}) = ?`)
            .pluck()
            .all(first.id, PLACEHOLDER_PREFIX) as string[]
        ).map((path) => path.replace(/\.(url|uri)$/, '.mime'));
        if (mimes.length > 0) statement(db, `UPDATE "${first.table}" SET ${column} = json_replace(${column}, ${mimes.map(() => `?, '${PLACEHOLDER_MIME}'`).join(', ')}) WHERE id = ?`).run(...mimes, first.id);
        whereSql = 'id = ?';
        whereArgs = [first.id];
      }
      // Attachments innermost (their paths are the planned row's), reasoning items outermost.
      if (attachments?.urls?.length && !attachments.cuts) {
        const mimes = attachments.urls.map((u) => u.path.replace(/\.(url|uri)$/, '.mime'));
        expression = `json_replace(${expression}, ${mimes.map(() => `?, '${PLACEHOLDER_MIME}'`).join(', ')})`;
        args.push(...mimes);
        expression = `json_set(${expression}, ${attachments.urls.map(() => '?, ?').join(', ')})`;
        for (const u of attachments.urls) args.push(u.path, placeholder);
      }
      if (targets.some((t) => t.mode === 'compacted-outputs')) {
        expression = `json_remove(json_set(${expression}, '$.state.output', ?), '$.state.attachments')`;
        args.push(COMPACTED_OUTPUT);
      }
      if (targets.some((t) => t.mode === 'reasoning')) {
        expression = `json_set(${expression}, '$.content', (SELECT json_group_array(json(j.value) ORDER BY j.key) FROM json_each(${expression}, '$.content') j WHERE coalesce(j.value ->> '$.type', '') <> 'reasoning'))`;
        // The inner expression appears twice: its arguments are bound twice.
        args.push(...args);
      }
      changes = expression === column ? 1 : statement(db, `UPDATE "${first.table}" SET ${column} = ${expression} WHERE ${whereSql}`).run(...args, ...whereArgs).changes;
    }
    if (changes === 0) {
      result.changed++;
      return;
    }
    result.rows[first.table] = (result.rows[first.table] ?? 0) + 1;
    if (first.table === 'part') result.partIds.push(first.id);
  };
  let next = 0;
  while (next < groups.length) {
    db.transaction(() => {
      const started = performance.now();
      do applyRow(groups[next++] as TrimTarget[]);
      while (next < groups.length && performance.now() - started < TRANSACTION_BUDGET_MS);
    }).immediate();
  }
  return result;
}
