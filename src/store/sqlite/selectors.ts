/**
 * A session selector (core/selectors.ts) as SQL over OpenCode's file: candidates (roots, or child
 * sessions), one project by id or directory, the N most recently active spared, then size and
 * age. Reads only ids, times and sizes (octet_length): no payload is loaded.
 */
import { resolve } from 'node:path';
import { SkError } from '../../core/errors.js';
import type { SelectedSession, SessionSelector } from '../../core/selectors.js';
import type { SqliteConnection } from './connection.js';

/** The project ids a `--project` value names: a project id, else a directory (its worktree or one of its directories). */
function projectIds(conn: SqliteConnection, value: string): { ids: string[]; directory: string | null } {
  const { db, schema } = conn;
  if (db.prepare('SELECT 1 FROM project WHERE id = ?').get(value) !== undefined) return { ids: [value], directory: null };
  const directory = resolve(value).replace(/(.)\/+$/, '$1');
  const ids = new Set(db.prepare('SELECT id FROM project WHERE worktree = ?').pluck().all(directory) as string[]);
  if (schema.tables.has('project_directory')) {
    for (const id of db.prepare('SELECT project_id FROM project_directory WHERE directory = ?').pluck().all(directory) as string[]) ids.add(id);
  }
  const sessionsThere = db.prepare('SELECT 1 FROM session WHERE directory = ? LIMIT 1').get(directory) !== undefined;
  if (ids.size === 0 && !sessionsThere) throw new SkError('not-found', `no project ${JSON.stringify(value)} in ${conn.path} (neither a project id nor a project's or session's directory)`);
  return { ids: [...ids], directory };
}

/**
 * The sessions `selector` chooses, most recently active first. `bytesTerms` sums a session's own
 * rows (the reader's definition, so `--larger-than` agrees with `list`).
 */
export function selectSessions(conn: SqliteConnection, selector: SessionSelector, now: number, bytesTerms: (idExpression: string) => string[]): SelectedSession[] {
  const { db, schema } = conn;
  const where: string[] = [selector.subagents ? 's.parent_id IS NOT NULL' : 's.parent_id IS NULL'];
  const args: unknown[] = [];
  if (selector.project !== undefined) {
    const project = projectIds(conn, selector.project);
    const byProject = 's.project_id IN (SELECT value FROM json_each(?))';
    args.push(JSON.stringify(project.ids));
    if (project.directory === null) where.push(byProject);
    else {
      where.push(`(${byProject} OR s.directory = ?)`);
      args.push(project.directory);
    }
  }
  // Sessions of the newer layout never touch their row again: their activity is in session_message and session_input.
  const activity = ['s.time_updated'];
  if (schema.tables.has('session_message')) activity.push('coalesce((SELECT max(time_updated) FROM session_message WHERE session_id = s.id), 0)');
  if (schema.tables.has('session_input')) activity.push('coalesce((SELECT max(time_created) FROM session_input WHERE session_id = s.id), 0)');
  const active = activity.length > 1 ? `max(${activity.join(', ')})` : activity[0];
  const rows = db
    .prepare(
      `SELECT s.id, s.parent_id AS parentId, s.title, s.project_id AS projectId, s.time_created AS timeCreated, ${active} AS timeActive,
              ${bytesTerms('s.id').join(' + ')} AS bytes
       FROM session s WHERE ${where.join(' AND ')} ORDER BY timeActive DESC, s.id DESC`,
    )
    .all(...args) as SelectedSession[];
  const cutoff = selector.olderThanMs === undefined ? Infinity : now - selector.olderThanMs;
  return rows
    .slice(selector.keepLatest ?? 0)
    .filter((s) => (selector.largerThan === undefined || s.bytes > selector.largerThan) && s.timeCreated < cutoff);
}
