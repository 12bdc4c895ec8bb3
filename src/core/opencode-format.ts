/**
 * OpenCode's API forms of its rows (what `opencode export` prints and `opencode import` reads),
 * built from row values. Pure: the store decides which columns are safe to read.
 */

/**
 * OpenCode's event log: every update as a durable snapshot, keyed by aggregate (= session) id. It
 * belongs to its sessions (archived and deleted with them) but is not their content: a session's
 * `bytes` in lists count what it holds now, the log is sized apart (stats, compaction).
 */
export const EVENT_LOG_TABLES: readonly string[] = ['event_sequence', 'event'];

/** A `session` row as far as our reads take it; columns missing in older installs are undefined. */
export interface SessionRow {
  id: string;
  project_id: string;
  workspace_id?: string | null;
  parent_id: string | null;
  slug: string;
  directory: string;
  path?: string | null;
  title: string;
  version: string;
  share_url?: string | null;
  summary_additions?: number | null;
  summary_deletions?: number | null;
  summary_files?: number | null;
  summary_diffs?: string | null;
  cost?: number | null;
  tokens_input?: number | null;
  tokens_output?: number | null;
  tokens_reasoning?: number | null;
  tokens_cache_read?: number | null;
  tokens_cache_write?: number | null;
  revert?: string | null;
  permission?: string | null;
  agent?: string | null;
  model?: string | null;
  time_created: number;
  time_updated: number;
  time_compacting?: number | null;
  time_archived?: number | null;
}

export interface SessionInfo {
  id: string;
  slug: string;
  projectID: string;
  workspaceID?: string;
  directory: string;
  path?: string;
  parentID?: string;
  title: string;
  agent?: string;
  model?: unknown;
  version: string;
  summary?: { additions: number; deletions: number; files: number; diffs?: unknown };
  cost: number;
  tokens: { input: number; output: number; reasoning: number; cache: { read: number; write: number } };
  share?: { url: string };
  revert?: unknown;
  permission?: unknown;
  time: { created: number; updated: number; compacting?: number; archived?: number };
}

function parseJsonColumn(value: string | null | undefined): unknown {
  if (value === null || value === undefined) return undefined;
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}

/** The API form of a session row (OpenCode's `Session.Info`). */
export function toSessionInfo(row: SessionRow): SessionInfo {
  const info: SessionInfo = {
    id: row.id,
    slug: row.slug,
    projectID: row.project_id,
    directory: row.directory,
    title: row.title,
    version: row.version,
    cost: row.cost ?? 0,
    tokens: {
      input: row.tokens_input ?? 0,
      output: row.tokens_output ?? 0,
      reasoning: row.tokens_reasoning ?? 0,
      cache: { read: row.tokens_cache_read ?? 0, write: row.tokens_cache_write ?? 0 },
    },
    time: { created: row.time_created, updated: row.time_updated },
  };
  if (row.workspace_id) info.workspaceID = row.workspace_id;
  if (row.path) info.path = row.path;
  if (row.parent_id) info.parentID = row.parent_id;
  if (row.agent) info.agent = row.agent;
  if (row.model) info.model = parseJsonColumn(row.model);
  if (row.summary_additions !== null && row.summary_additions !== undefined) {
    info.summary = {
      additions: row.summary_additions,
      deletions: row.summary_deletions ?? 0,
      files: row.summary_files ?? 0,
    };
    const diffs = parseJsonColumn(row.summary_diffs);
    if (diffs !== undefined) info.summary.diffs = diffs;
  }
  if (row.share_url) info.share = { url: row.share_url };
  const revert = parseJsonColumn(row.revert);
  if (revert !== undefined) info.revert = revert;
  const permission = parseJsonColumn(row.permission);
  if (permission !== undefined) info.permission = permission;
  if (row.time_compacting) info.time.compacting = row.time_compacting;
  if (row.time_archived) info.time.archived = row.time_archived;
  return info;
}

/** The API form of a message: `message.data` plus its ids. */
export function toMessageInfo(id: string, sessionID: string, data: unknown): Record<string, unknown> {
  const base = data && typeof data === 'object' && !Array.isArray(data) ? (data as Record<string, unknown>) : { data };
  return { ...base, id, sessionID };
}

/** The API form of a part: `part.data` plus its ids. */
export function toPartInfo(id: string, sessionID: string, messageID: string, data: unknown): Record<string, unknown> {
  const base = data && typeof data === 'object' && !Array.isArray(data) ? (data as Record<string, unknown>) : { data };
  return { ...base, id, sessionID, messageID };
}

/** The `project` row a session implies when none came with it (OpenCode's own global project shape). */
export function defaultProjectRow(projectId: unknown): { id: string; worktree: string; time_created: number; time_updated: number; sandboxes: string } {
  return { id: typeof projectId === 'string' && projectId !== '' ? projectId : 'global', worktree: '/', time_created: 0, time_updated: 0, sandboxes: '[]' };
}
