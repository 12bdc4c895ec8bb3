/**
 * Archiving sessions out of, and restoring them into, OpenCode's SQLite file. Rows are read in
 * keyset pages as BLOBs and written into the archive byte for byte; restore inserts them back with
 * `CAST(? AS TEXT)` so no payload becomes a JS string and every row comes back identical.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  ARCHIVE_FORMAT,
  EXTRA_KEY,
  idPrefix,
  MESSAGE_ID_KEYS,
  PART_ID_KEYS,
  unwrapRowJson,
  wrapRowJson,
  isWellFormedJson,
  type MessageExtras,
  type SessionExtras,
} from '../../core/archive-format.js';
import { SkError } from '../../core/errors.js';
import { toSessionInfo, type SessionRow } from '../../core/opencode-format.js';
import { ArchiveSink, readArchive, SessionDigest, type ArchivedSessionSummary } from '../archive-file.js';
import { mapSqliteError, type OpenDatabase } from './open.js';
import { partsOfMessages, payloadOf, statement, type PayloadRow } from './part-rows.js';

const PAGE_ROWS = 200;
const INLINE_FETCH_BYTES = 256 * 1024;
const INLINE_TOTAL_BYTES = 8 * 1024 * 1024;
/** Diff files larger than this stay on disk beside the archive's database only. */
const MAX_DIFF_FILE = 64 * 1024 * 1024;

/** `storage/session_diff/<id>.json` beside the database. */
export function diffFilePath(dbPath: string, sessionId: string): string {
  return join(dirname(dbPath), 'storage', 'session_diff', `${sessionId}.json`);
}

export interface ArchiveWriteResult {
  path: string;
  sessions: ArchivedSessionSummary[];
  /** Uncompressed bytes written. */
  bytes: number;
}

/** Every session id of the trees rooted at `rootIds` (roots first, then children), deduplicated. */
export function sessionTrees(open: OpenDatabase, rootIds: readonly string[]): string[] {
  const stmt = open.db.prepare(
    `WITH RECURSIVE tree(id, depth) AS (SELECT id, 0 FROM session WHERE id = ?
       UNION SELECT s.id, tree.depth + 1 FROM session s JOIN tree ON s.parent_id = tree.id)
     SELECT id FROM tree ORDER BY depth, id`,
  );
  const seen = new Set<string>();
  for (const root of rootIds) for (const id of stmt.pluck().all(root) as string[]) seen.add(id);
  return [...seen];
}

async function writeSession(open: OpenDatabase, sink: ArchiveSink, sessionId: string): Promise<ArchivedSessionSummary> {
  const { db } = open;
  const session = statement(db, 'SELECT * FROM session WHERE id = ?').get(sessionId) as (SessionRow & Record<string, unknown>) | undefined;
  if (!session) throw new SkError('not-found', `no session ${sessionId} in ${open.path}`);
  const has = (table: string): boolean => open.schema.tables.has(table);
  const project = (statement(db, 'SELECT * FROM project WHERE id = ?').get(session.project_id) as Record<string, unknown> | undefined) ?? null;
  const todos = has('todo') ? (statement(db, 'SELECT * FROM todo WHERE session_id = ? ORDER BY position').all(sessionId) as Record<string, unknown>[]) : [];
  const share = has('session_share') ? ((statement(db, 'SELECT * FROM session_share WHERE session_id = ?').get(sessionId) as Record<string, unknown> | undefined) ?? null) : null;
  const extras: Omit<SessionExtras, 'diff'> = { format: ARCHIVE_FORMAT, project, session, todos, share };
  const extrasJson = JSON.stringify(extras);
  let diff: Buffer | null = null;
  const diffPath = diffFilePath(open.path, sessionId);
  if (existsSync(diffPath) && statSync(diffPath).size <= MAX_DIFF_FILE) {
    const text = readFileSync(diffPath);
    if (isWellFormedJson(text)) diff = text;
  }
  await sink.write(
    `{${JSON.stringify(EXTRA_KEY)}:`,
    extrasJson.slice(0, -1),
    ',"diff":',
    diff ?? 'null',
    '},"info":',
    JSON.stringify(toSessionInfo(session)),
    ',"messages":[',
  );

  const digest = new SessionDigest();
  const messagePrefix = (id: string): string => idPrefix([id, sessionId], MESSAGE_ID_KEYS);
  const partPrefix = (id: string, messageId: string): string => idPrefix([id, sessionId, messageId], PART_ID_KEYS);
  const columns = `id, time_created AS timeCreated, time_updated AS timeUpdated, octet_length(data) AS bytes,
    CASE WHEN octet_length(data) <= ${INLINE_FETCH_BYTES} THEN CAST(data AS BLOB) END AS data`;
  const firstMessages = statement(db, `SELECT ${columns} FROM message WHERE session_id = ? ORDER BY time_created, id LIMIT ?`);
  const nextMessages = statement(
    db,
    `SELECT ${columns} FROM message WHERE session_id = ? AND (time_created > ? OR (time_created = ? AND id > ?))
     ORDER BY time_created, id LIMIT ?`,
  );

  let last: PayloadRow | undefined;
  let firstMessage = true;
  for (;;) {
    const page = (
      last
        ? nextMessages.all(sessionId, last.timeCreated, last.timeCreated, last.id, PAGE_ROWS)
        : firstMessages.all(sessionId, PAGE_ROWS)
    ) as PayloadRow[];
    // One query for the parts of the whole page of messages; inline data stops after 8 MB.
    const partsByMessage = partsOfMessages(open, page.map((m) => m.id), INLINE_FETCH_BYTES, INLINE_TOTAL_BYTES);
    for (const message of page) {
      const parts = partsByMessage.get(message.id) ?? [];
      const messageExtras: MessageExtras = {
        time: [message.timeCreated, message.timeUpdated],
        parts: parts.map((p) => [p.timeCreated, p.timeUpdated]),
      };
      const info = wrapRowJson(messagePrefix(message.id), payloadOf(open, 'message', message, 'archive'));
      digest.begin('message');
      info.forEach((b) => digest.update(b));
      await sink.write(firstMessage ? '' : ',', `{${JSON.stringify(EXTRA_KEY)}:`, JSON.stringify(messageExtras), ',"info":', ...info, ',"parts":[');
      firstMessage = false;
      for (const [index, part] of parts.entries()) {
        const wrapped = wrapRowJson(partPrefix(part.id, message.id), payloadOf(open, 'part', part, 'archive'), part.valid === null ? undefined : part.valid === 1);
        digest.begin('part');
        wrapped.forEach((b) => digest.update(b));
        await sink.write(index === 0 ? '' : ',', ...wrapped);
      }
      await sink.write(']}');
    }
    if (page.length < PAGE_ROWS) break;
    last = page[page.length - 1];
  }
  await sink.write(']}');
  return digest.finish(sessionId);
}

/**
 * Writes the given sessions (each whole, children included by the caller) to `path` as one JSON
 * array, atomically. Each session is read inside its own read transaction, so it is consistent.
 */
export async function writeArchive(open: OpenDatabase, sessionIds: readonly string[], path: string): Promise<ArchiveWriteResult> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const sink = new ArchiveSink(path);
  const sessions: ArchivedSessionSummary[] = [];
  try {
    await sink.write('[');
    for (const [index, id] of sessionIds.entries()) {
      if (index > 0) await sink.write(',\n');
      open.db.exec('BEGIN');
      try {
        sessions.push(await writeSession(open, sink, id));
      } finally {
        open.db.exec('COMMIT');
      }
    }
    await sink.write(']\n');
    await sink.commit();
  } catch (error) {
    sink.abort();
    throw error instanceof SkError ? error : mapSqliteError(error, open.path);
  }
  return { path, sessions, bytes: sink.bytes };
}

export interface RestoreResult {
  restored: string[];
  skipped: string[];
}

/** Columns of `table` in this database, to insert only what exists here. */
function columnsOf(open: OpenDatabase, table: string): Set<string> {
  return new Set(open.db.prepare('SELECT name FROM pragma_table_info(?)').pluck().all(table) as string[]);
}

function insertRow(open: OpenDatabase, table: string, row: Record<string, unknown>, orIgnore = false): void {
  const present = columnsOf(open, table);
  const keys = Object.keys(row).filter((k) => present.has(k));
  if (keys.length === 0) return;
  open.db
    .prepare(`INSERT ${orIgnore ? 'OR IGNORE ' : ''}INTO "${table}" (${keys.map((k) => `"${k}"`).join(', ')}) VALUES (${keys.map(() => '?').join(', ')})`)
    .run(...keys.map((k) => row[k] as string | number | null));
}

/** The session row an `opencode export` object implies, for archives made without our extras. */
function rowFromInfo(info: Record<string, unknown>): Record<string, unknown> {
  const time = (info['time'] ?? {}) as Record<string, number | undefined>;
  const summary = info['summary'] as Record<string, unknown> | undefined;
  const tokens = (info['tokens'] ?? {}) as Record<string, unknown>;
  const cache = (tokens['cache'] ?? {}) as Record<string, unknown>;
  const json = (v: unknown): string | null => (v === undefined ? null : JSON.stringify(v));
  return {
    id: info['id'],
    project_id: info['projectID'] ?? 'global',
    workspace_id: info['workspaceID'] ?? null,
    parent_id: info['parentID'] ?? null,
    slug: info['slug'] ?? String(info['id']),
    directory: info['directory'] ?? '/',
    path: info['path'] ?? null,
    title: info['title'] ?? '',
    version: info['version'] ?? '',
    share_url: (info['share'] as { url?: string } | undefined)?.url ?? null,
    summary_additions: summary?.['additions'] ?? null,
    summary_deletions: summary?.['deletions'] ?? null,
    summary_files: summary?.['files'] ?? null,
    summary_diffs: json(summary?.['diffs']),
    cost: info['cost'] ?? 0,
    tokens_input: tokens['input'] ?? 0,
    tokens_output: tokens['output'] ?? 0,
    tokens_reasoning: tokens['reasoning'] ?? 0,
    tokens_cache_read: cache['read'] ?? 0,
    tokens_cache_write: cache['write'] ?? 0,
    revert: json(info['revert']),
    permission: json(info['permission']),
    agent: info['agent'] ?? null,
    model: json(info['model']),
    time_created: time['created'] ?? 0,
    time_updated: time['updated'] ?? time['created'] ?? 0,
    time_compacting: time['compacting'] ?? null,
    time_archived: time['archived'] ?? null,
  };
}

/** A wrapped object's own row text, from our prefix or (foreign archives) by dropping the id keys. */
function rowText(prefixFor: (id: string) => string, raw: Buffer, dropKeys: readonly string[]): { id: string; data: Buffer } {
  const id = /^\{"id":("(?:[^"\\]|\\.)*")/.exec(raw.toString('utf8', 0, 300))?.[1];
  const parsedId = id ? (JSON.parse(id) as string) : undefined;
  if (parsedId) {
    const exact = unwrapRowJson(prefixFor(parsedId), raw);
    if (exact) return { id: parsedId, data: exact };
  }
  // Not written by us: parse (bounded by V8's limit) and drop the ids the export form added.
  const object = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
  const rowId = String(object['id'] ?? '');
  for (const key of dropKeys) delete object[key];
  return { id: rowId, data: Buffer.from(JSON.stringify(object)) };
}

/**
 * Puts an archive's sessions back. Idempotent: a session already present is skipped whole. Each
 * session goes in inside one short write transaction, with foreign keys on.
 */
export async function restoreArchive(open: OpenDatabase, archivePath: string): Promise<RestoreResult> {
  const { db } = open;
  const result: RestoreResult = { restored: [], skipped: [] };
  const exists = db.prepare('SELECT 1 FROM session WHERE id = ?').pluck();
  const insertMessage = db.prepare(
    'INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?, ?, ?, ?, CAST(? AS TEXT))',
  );
  const insertPart = db.prepare(
    'INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?, ?, ?, ?, ?, CAST(? AS TEXT))',
  );
  let sessionId = '';
  let skipping = false;
  let inTransaction = false;
  let messageId = '';
  let messageTimes: MessageExtras | null = null;
  let partIndex = 0;
  const pendingDiffs: [string, Buffer][] = [];

  const begin = (): void => {
    db.exec('BEGIN IMMEDIATE');
    inTransaction = true;
  };
  const commit = (): void => {
    if (inTransaction) db.exec('COMMIT');
    inTransaction = false;
  };

  try {
    await readArchive(archivePath, {
      wantParts: true,
      session: (_index, extras, info) => {
        commit();
        const row = extras?.session ?? (info ? rowFromInfo(info) : null);
        if (!row || typeof row['id'] !== 'string') throw new SkError('archive', `${archivePath}: a session without an id`);
        sessionId = row['id'];
        skipping = exists.get(sessionId) !== undefined;
        if (skipping) {
          result.skipped.push(sessionId);
          return;
        }
        begin();
        const project = extras?.project ?? { id: row['project_id'], worktree: '/', time_created: 0, time_updated: 0, sandboxes: '[]' };
        insertRow(open, 'project', project, true);
        insertRow(open, 'session', row);
        for (const todo of extras?.todos ?? []) insertRow(open, 'todo', todo);
        if (extras?.share) insertRow(open, 'session_share', extras.share);
        if (extras?.diff !== undefined && extras.diff !== null) pendingDiffs.push([sessionId, Buffer.from(JSON.stringify(extras.diff))]);
        result.restored.push(sessionId);
      },
      message: (extras, rawInfo) => {
        if (skipping) return;
        const { id, data } = rowText((id) => idPrefix([id, sessionId], MESSAGE_ID_KEYS), rawInfo, MESSAGE_ID_KEYS);
        messageId = id;
        messageTimes = extras;
        partIndex = 0;
        const created = extras?.time[0] ?? Number((JSON.parse(data.toString('utf8')) as { time?: { created?: number } }).time?.created ?? 0);
        insertMessage.run(id, sessionId, created, extras?.time[1] ?? created, data);
      },
      part: (rawPart) => {
        if (skipping) return;
        const { id, data } = rowText((id) => idPrefix([id, sessionId, messageId], PART_ID_KEYS), rawPart, PART_ID_KEYS);
        const times = messageTimes?.parts[partIndex] ?? messageTimes?.time ?? [0, 0];
        partIndex++;
        insertPart.run(id, messageId, sessionId, times[0], times[1], data);
      },
      sessionEnd: () => commit(),
    });
    commit();
  } catch (error) {
    if (inTransaction) db.exec('ROLLBACK');
    throw error instanceof SkError ? error : mapSqliteError(error, open.path);
  }
  for (const [id, text] of pendingDiffs) {
    const target = diffFilePath(open.path, id);
    if (existsSync(target)) continue;
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(`${target}.tmp`, text, { mode: 0o600 });
    renameSync(`${target}.tmp`, target);
  }
  return result;
}
