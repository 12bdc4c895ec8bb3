/**
 * A replay of OpenCode's event log into rows, for tests: what OpenCode 1.18.33's projectors
 * (read from its bundle) make of `session.created.1`, `session.updated.1`, `session.deleted.1`,
 * `message.updated.1`, `message.removed.1`, `message.part.updated.1` and `message.part.removed.1`
 * events, applied in seq order per aggregate. Other types project nothing here.
 *
 * - message: upsert; the insert takes `time_created` from `info.time.created`, a conflict
 *   replaces `data` only. `data` is `info` without `id`/`sessionID`.
 * - part: upsert; the insert takes `time_created` from the event's `time`, a conflict replaces
 *   `data` only. A step-finish part moves its session's cost and tokens by (new - old).
 * - session: created inserts every column; updated sets the columns whose mapped value is
 *   defined (OpenCode's `l0`: an absent key leaves its column alone).
 *
 * Values are JSON texts in the key order the events carry; compare with `canonicalJson` when
 * key order may differ. Holds whole rows in memory: small test databases only.
 */
import type Database from 'better-sqlite3';

export type SqlValue = string | number | null;

export interface MessageRow {
  id: string;
  sessionId: string;
  timeCreated: number;
  data: string;
}

export interface PartRow {
  id: string;
  messageId: string;
  sessionId: string;
  timeCreated: number;
  data: string;
}

/** Session columns as OpenCode's projector writes them (time_updated included). */
export type SessionRow = Record<string, SqlValue>;

export interface Projection {
  sessions: Map<string, SessionRow>;
  messages: Map<string, MessageRow>;
  parts: Map<string, PartRow>;
}

export interface LogEvent {
  aggregateId: string;
  seq: number;
  type: string;
  /** the event's `data`, parsed */
  data: unknown;
}

type Json = Record<string, unknown>;

const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);

/** JSON text with object keys sorted: equal for values that differ only in key order. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (isObject(value)) {
    return `{${Object.keys(value)
      .sort()
      .filter((k) => value[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

const jsonColumn = (value: unknown): SqlValue | undefined => (value === undefined ? undefined : value === null ? null : JSON.stringify(value));
const scalar = (value: unknown): SqlValue | undefined =>
  value === undefined ? undefined : typeof value === 'string' || typeof value === 'number' ? value : value === null ? null : JSON.stringify(value);

/** OpenCode 1.18.33's `l0`: session info to row columns; `undefined` means "leave the column". */
export function sessionColumnsOf(info: Json): Record<string, SqlValue | undefined> {
  const time = isObject(info['time']) ? info['time'] : {};
  const summary = isObject(info['summary']) ? info['summary'] : undefined;
  const share = isObject(info['share']) ? info['share'] : undefined;
  const tokens = isObject(info['tokens']) ? info['tokens'] : undefined;
  const cache = tokens && isObject(tokens['cache']) ? tokens['cache'] : undefined;
  const revert = info['revert'];
  const permission = info['permission'];
  const diffs = summary?.['diffs'];
  return {
    id: scalar(info['id']),
    project_id: scalar(info['projectID']),
    workspace_id: scalar(info['workspaceID']) ?? null,
    parent_id: scalar(info['parentID']),
    slug: scalar(info['slug']),
    directory: scalar(info['directory']),
    path: scalar(info['path']),
    title: scalar(info['title']),
    agent: scalar(info['agent']),
    model: jsonColumn(info['model']),
    version: scalar(info['version']),
    share_url: scalar(share?.['url']),
    summary_additions: scalar(summary?.['additions']),
    summary_deletions: scalar(summary?.['deletions']),
    summary_files: scalar(summary?.['files']),
    summary_diffs: diffs ? jsonColumn(diffs) : undefined,
    metadata: jsonColumn(info['metadata']),
    cost: scalar(info['cost']) ?? 0,
    tokens_input: scalar(tokens?.['input']) ?? 0,
    tokens_output: scalar(tokens?.['output']) ?? 0,
    tokens_reasoning: scalar(tokens?.['reasoning']) ?? 0,
    tokens_cache_read: scalar(cache?.['read']) ?? 0,
    tokens_cache_write: scalar(cache?.['write']) ?? 0,
    revert: revert ? jsonColumn(revert) : null,
    permission: permission ? jsonColumn(permission) : undefined,
    time_created: scalar(time['created']),
    time_updated: scalar(time['updated']),
    time_compacting: scalar(time['compacting']),
    time_archived: scalar(time['archived']),
  };
}

/** The session columns the projector writes; a row read back from SQLite is compared on these. */
export const PROJECTED_SESSION_COLUMNS = Object.keys(sessionColumnsOf({}));

interface Usage {
  cost: number;
  input: number;
  output: number;
  reasoning: number;
  read: number;
  write: number;
}

/** OpenCode's K2: the usage a step-finish part carries. */
function usageOf(part: Json | undefined): Usage | undefined {
  if (!part || part['type'] !== 'step-finish' || !('cost' in part) || !('tokens' in part)) return undefined;
  const tokens = isObject(part['tokens']) ? part['tokens'] : {};
  const cache = isObject(tokens['cache']) ? tokens['cache'] : {};
  const n = (v: unknown): number => (typeof v === 'number' ? v : 0);
  return { cost: n(part['cost']), input: n(tokens['input']), output: n(tokens['output']), reasoning: n(tokens['reasoning']), read: n(cache['read']), write: n(cache['write']) };
}

const without = (object: Json, keys: readonly string[]): Json => Object.fromEntries(Object.entries(object).filter(([k]) => !keys.includes(k)));

export class EventProjector {
  readonly projection: Projection = { sessions: new Map(), messages: new Map(), parts: new Map() };

  apply(event: LogEvent): void {
    const data = isObject(event.data) ? event.data : {};
    const { sessions, messages, parts } = this.projection;
    switch (event.type) {
      case 'session.created.1': {
        const info = isObject(data['info']) ? data['info'] : {};
        const row: SessionRow = {};
        for (const [column, value] of Object.entries(sessionColumnsOf(info))) row[column] = value ?? null;
        sessions.set(String(info['id']), row);
        return;
      }
      case 'session.updated.1': {
        const row = sessions.get(String(data['sessionID']));
        if (!row) return; // OpenCode throws NotFound; the event never committed
        const info = isObject(data['info']) ? data['info'] : {};
        for (const [column, value] of Object.entries(sessionColumnsOf(info))) if (value !== undefined) row[column] = value;
        return;
      }
      case 'session.deleted.1': {
        const id = String(data['sessionID']);
        sessions.delete(id);
        for (const [key, m] of messages) if (m.sessionId === id) messages.delete(key);
        for (const [key, p] of parts) if (p.sessionId === id) parts.delete(key);
        return;
      }
      case 'message.updated.1': {
        const info = isObject(data['info']) ? data['info'] : {};
        const id = String(info['id']);
        const sessionId = String(info['sessionID']);
        if (!sessions.has(sessionId)) return; // a late update: OpenCode ignores the foreign-key failure
        const body = JSON.stringify(without(info, ['id', 'sessionID']));
        const existing = messages.get(id);
        if (existing) existing.data = body;
        else {
          const time = isObject(info['time']) ? info['time'] : {};
          messages.set(id, { id, sessionId, timeCreated: Number(time['created']), data: body });
        }
        return;
      }
      case 'message.removed.1': {
        const id = String(data['messageID']);
        const message = messages.get(id);
        if (!message || message.sessionId !== String(data['sessionID'])) return;
        for (const [key, p] of parts) {
          if (p.messageId !== id) continue;
          this.addUsage(p.sessionId, usageOf(JSON.parse(p.data) as Json), -1);
          parts.delete(key); // the part table's foreign key cascades
        }
        messages.delete(id);
        return;
      }
      case 'message.part.updated.1': {
        const part = isObject(data['part']) ? data['part'] : {};
        const id = String(part['id']);
        const messageId = String(part['messageID']);
        const sessionId = String(part['sessionID']);
        if (!messages.has(messageId)) return; // late update, ignored as OpenCode does
        const body = JSON.stringify(without(part, ['id', 'messageID', 'sessionID']));
        const existing = parts.get(id);
        if (existing) {
          this.addUsage(existing.sessionId, usageOf(JSON.parse(existing.data) as Json), -1);
          existing.data = body;
        } else {
          parts.set(id, { id, messageId, sessionId, timeCreated: Number(data['time']), data: body });
        }
        this.addUsage(sessionId, usageOf(part), 1);
        return;
      }
      case 'message.part.removed.1': {
        const id = String(data['partID']);
        const part = parts.get(id);
        if (!part || part.sessionId !== String(data['sessionID'])) return;
        this.addUsage(part.sessionId, usageOf(JSON.parse(part.data) as Json), -1);
        parts.delete(id);
        return;
      }
      default:
        return;
    }
  }

  /** OpenCode's z2: cost and tokens move, time_updated stays. */
  private addUsage(sessionId: string, usage: Usage | undefined, sign: 1 | -1): void {
    const row = this.projection.sessions.get(sessionId);
    if (!row || !usage) return;
    const add = (column: string, delta: number): void => {
      row[column] = Number(row[column] ?? 0) + delta * sign;
    };
    add('cost', usage.cost);
    add('tokens_input', usage.input);
    add('tokens_output', usage.output);
    add('tokens_reasoning', usage.reasoning);
    add('tokens_cache_read', usage.read);
    add('tokens_cache_write', usage.write);
  }
}

/** Replays a database's whole event log (each aggregate in seq order); events that are not JSON are skipped. */
export function replayDatabase(db: Database.Database): Projection {
  const projector = new EventProjector();
  const rows = db.prepare('SELECT aggregate_id, seq, type, data FROM event ORDER BY aggregate_id, seq').iterate() as IterableIterator<{
    aggregate_id: string;
    seq: number;
    type: string;
    data: string;
  }>;
  for (const row of rows) {
    let data: unknown;
    try {
      data = JSON.parse(row.data) as unknown;
    } catch {
      continue; // unreadable data projects nothing (OpenCode's decode would refuse it)
    }
    projector.apply({ aggregateId: row.aggregate_id, seq: row.seq, type: row.type, data });
  }
  return projector.projection;
}

/** The projection tables as rows of the same shape (data canonicalised only if asked). */
export function projectionTables(db: Database.Database): Projection {
  const projection: Projection = { sessions: new Map(), messages: new Map(), parts: new Map() };
  const present = new Set(db.prepare("SELECT name FROM pragma_table_info('session')").pluck().all() as string[]);
  const columns = PROJECTED_SESSION_COLUMNS.filter((c) => present.has(c));
  for (const row of db.prepare(`SELECT ${columns.join(', ')} FROM session`).iterate() as IterableIterator<SessionRow>) {
    const full: SessionRow = {};
    for (const column of PROJECTED_SESSION_COLUMNS) full[column] = row[column] ?? null;
    projection.sessions.set(String(row['id']), full);
  }
  for (const row of db.prepare('SELECT id, session_id, time_created, data FROM message').iterate() as IterableIterator<{ id: string; session_id: string; time_created: number; data: string }>) {
    projection.messages.set(row.id, { id: row.id, sessionId: row.session_id, timeCreated: row.time_created, data: row.data });
  }
  for (const row of db.prepare('SELECT id, message_id, session_id, time_created, data FROM part').iterate() as IterableIterator<{
    id: string;
    message_id: string;
    session_id: string;
    time_created: number;
    data: string;
  }>) {
    projection.parts.set(row.id, { id: row.id, messageId: row.message_id, sessionId: row.session_id, timeCreated: row.time_created, data: row.data });
  }
  return projection;
}

export interface ProjectionDifference {
  kind: 'session' | 'message' | 'part';
  id: string;
  what: string;
}

/**
 * Entities whose rows differ between two projections. `canonical` compares JSON values without
 * regard to key order (a row and an event may order keys differently); JSON columns of sessions
 * are compared the same way. Session columns missing from `b`'s table are left out.
 */
export function diffProjections(a: Projection, b: Projection, options: { canonical?: boolean; sessionColumns?: readonly string[] } = {}): ProjectionDifference[] {
  const norm = (text: string): string => (options.canonical ? canonicalJson(JSON.parse(text) as unknown) : text);
  const normValue = (value: SqlValue): SqlValue => {
    if (!options.canonical || typeof value !== 'string' || !/^[[{]/.test(value)) return value;
    try {
      return canonicalJson(JSON.parse(value) as unknown);
    } catch {
      return value;
    }
  };
  const out: ProjectionDifference[] = [];
  const columns = options.sessionColumns ?? PROJECTED_SESSION_COLUMNS;
  for (const id of new Set([...a.sessions.keys(), ...b.sessions.keys()])) {
    const x = a.sessions.get(id);
    const y = b.sessions.get(id);
    if (!x || !y) {
      out.push({ kind: 'session', id, what: x ? 'only in a' : 'only in b' });
      continue;
    }
    for (const column of columns) {
      const vx = normValue(x[column] ?? null);
      const vy = normValue(y[column] ?? null);
      // REAL cost sums may differ in the last bit between SQL and JS arithmetic
      const same = typeof vx === 'number' && typeof vy === 'number' ? Math.abs(vx - vy) <= 1e-9 * Math.max(1, Math.abs(vx)) : vx === vy;
      if (!same) out.push({ kind: 'session', id, what: `${column}: ${String(vx).slice(0, 60)} vs ${String(vy).slice(0, 60)}` });
    }
  }
  const rows = <R extends { data: string; timeCreated: number }>(kind: 'message' | 'part', ma: Map<string, R>, mb: Map<string, R>, extra: (r: R) => string): void => {
    for (const id of new Set([...ma.keys(), ...mb.keys()])) {
      const x = ma.get(id);
      const y = mb.get(id);
      if (!x || !y) out.push({ kind, id, what: x ? 'only in a' : 'only in b' });
      else if (x.timeCreated !== y.timeCreated) out.push({ kind, id, what: `time_created ${x.timeCreated} vs ${y.timeCreated}` });
      else if (extra(x) !== extra(y)) out.push({ kind, id, what: `owner ${extra(x)} vs ${extra(y)}` });
      else if (norm(x.data) !== norm(y.data)) out.push({ kind, id, what: 'data' });
    }
  };
  rows('message', a.messages, b.messages, (m) => m.sessionId);
  rows('part', a.parts, b.parts, (p) => `${p.sessionId}/${p.messageId}`);
  return out;
}
