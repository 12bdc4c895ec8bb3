/**
 * The session browser's pages: root sessions with their size (what removing each frees, its
 * subtasks counted in), filtered by title and project, sorted, paged, with totals per project.
 * Pure: the utility gathers the facts from the store and hands back one page, so the renderer
 * never holds the whole table.
 */
import type { SessionFacts } from './planner.js';

/** The kinds of a session's bytes the size check's chart shows per session: its slices that open the browser. */
export const SPACE_KINDS = ['attachments', 'events', 'text'] as const;
export type SpaceKind = (typeof SPACE_KINDS)[number];
/** A session's bytes by kind: attachments as stored (base64), its event log, the rest of its rows. */
export type SessionSpace = Record<SpaceKind, number>;

export const BROWSE_SORTS = ['size', 'created', 'updated', ...SPACE_KINDS] as const;
export const SESSION_WHERE = ['local', 'both', 'server'] as const;
export type BrowseSort = (typeof BROWSE_SORTS)[number];

export interface BrowseQuery {
  search?: string | undefined;
  sort?: BrowseSort | undefined;
  /** A project id: only its sessions. */
  project?: string | undefined;
  /** With a server configured: only sessions that live there (`server`: the server only). */
  where?: SessionWhere | undefined;
  offset?: number | undefined;
  limit?: number | undefined;
}

/** Where a session lives when a server is configured: the file only, both, or the server only. */
export type SessionWhere = (typeof SESSION_WHERE)[number];

export interface BrowseRow {
  id: string;
  title: string;
  projectId: string | null;
  project: string;
  timeCreated: number;
  timeUpdated: number;
  bytes: number;
  subtasks: number;
  pinned: boolean;
  /** Set when a server is configured (`storage`): where the session lives. */
  where?: SessionWhere;
  /** Its tree's bytes by kind (subtasks counted in); null when its store does not give them (a server-only session). */
  space?: SessionSpace | null;
}

export interface ProjectTotal {
  id: string;
  name: string;
  sessions: number;
  bytes: number;
}

export interface BrowseResult {
  /** Sessions matching the search and project. */
  total: number;
  offset: number;
  sessions: BrowseRow[];
  /** Per project, over the sessions matching the search and `where` (whatever project is chosen), largest first. */
  projects: ProjectTotal[];
  /** With a server configured: which one (password masked), and why its sessions are missing when it could not be read. */
  server?: { target: string; error: string | null };
}

/** One store's side of the browser's facts. */
export interface BrowseSide {
  facts: readonly SessionFacts[];
  rootProject: ReadonlyMap<string, string>;
  projects: readonly { id: string; name: string | null; worktree: string }[];
  /** Per session (subtasks apart), its bytes by kind, when the store gives them. */
  space?: ReadonlyMap<string, SessionSpace> | undefined;
}

export interface BrowseInput extends BrowseSide {
  pinned: ReadonlySet<string>;
  /** The configured server's side: its sessions join the file's, each row marked where it lives. */
  server?: BrowseSide | undefined;
}

/**
 * The file's facts with the server's sessions the file lacks added: where each lives, and projects
 * known on either side (the file's word first). Facts of a session in both are the file's.
 */
function mergeSides(input: BrowseInput): { facts: SessionFacts[]; where: Map<string, SessionWhere> | null; rootProject: ReadonlyMap<string, string>; projects: BrowseSide['projects'] } {
  const server = input.server;
  if (!server) return { facts: [...input.facts], where: null, rootProject: input.rootProject, projects: input.projects };
  // A session in both takes the file's facts, its space included; the server's space is not asked.
  const onServer = new Set(server.facts.map((f) => f.id));
  const inFile = new Set(input.facts.map((f) => f.id));
  const where = new Map<string, SessionWhere>(input.facts.map((f) => [f.id, onServer.has(f.id) ? 'both' : 'local']));
  const facts = [...input.facts];
  for (const f of server.facts) {
    if (inFile.has(f.id)) continue;
    facts.push(f);
    where.set(f.id, 'server');
  }
  const rootProject = new Map(server.rootProject);
  for (const [id, project] of input.rootProject) rootProject.set(id, project);
  const known = new Set(input.projects.map((p) => p.id));
  return { facts, where, rootProject, projects: [...input.projects, ...server.projects.filter((p) => !known.has(p.id))] };
}

/** A project as a person knows it: its name, else its folder's last part. */
export function projectLabel(project: { id: string; name: string | null; worktree: string } | undefined, id: string | null): string {
  if (!project) return id === null ? 'No project' : id === 'global' ? 'Global (no project)' : id;
  if (project.name) return project.name;
  if (project.id === 'global' || project.worktree === '/') return 'Global (no project)';
  return project.worktree.split('/').filter(Boolean).pop() ?? project.worktree;
}

/** A root's tree's bytes by kind, from the file's per-session space; null when the file lacks the root. */
function treeSpace(space: ReadonlyMap<string, SessionSpace>, f: SessionFacts): SessionSpace | null {
  const own = space.get(f.id);
  if (!own) return null;
  const sum: SessionSpace = { ...own };
  for (const child of f.children) {
    const c = space.get(child);
    if (!c) continue;
    for (const kind of SPACE_KINDS) sum[kind] += c[kind];
  }
  return sum;
}

function isSpaceKind(sort: BrowseSort): sort is SpaceKind {
  return (SPACE_KINDS as readonly string[]).includes(sort);
}

export function browseSessions(input: BrowseInput, query: BrowseQuery): BrowseResult {
  const merged = mergeSides(input);
  const space = input.space;
  const byId = new Map(merged.projects.map((p) => [p.id, p]));
  const needle = (query.search ?? '').trim().toLowerCase();
  const rows: BrowseRow[] = [];
  for (const f of merged.facts) {
    if (needle && !f.title.toLowerCase().includes(needle)) continue;
    const projectId = merged.rootProject.get(f.id) ?? null;
    const where = merged.where?.get(f.id);
    // Without a server every session is the file's alone.
    if (query.where !== undefined && (where ?? 'local') !== query.where) continue;
    rows.push({
      id: f.id,
      title: f.title,
      projectId,
      project: projectLabel(projectId === null ? undefined : byId.get(projectId), projectId),
      timeCreated: f.timeCreated,
      timeUpdated: f.timeUpdated,
      bytes: f.bytes,
      subtasks: f.children.length,
      pinned: input.pinned.has(f.id),
      ...(where ? { where } : {}),
      ...(space ? { space: where === 'server' ? null : treeSpace(space, f) } : {}),
    });
  }
  const totals = new Map<string, ProjectTotal>();
  for (const r of rows) {
    const key = r.projectId ?? '';
    const t = totals.get(key) ?? { id: key, name: r.project, sessions: 0, bytes: 0 };
    t.sessions += 1;
    t.bytes += r.bytes;
    totals.set(key, t);
  }
  const chosen = query.project === undefined ? rows : rows.filter((r) => (r.projectId ?? '') === query.project);
  const sort = query.sort ?? 'updated';
  // By a kind of bytes, a row without those facts (server only) sorts after every row with them.
  const key = (r: BrowseRow): number => (isSpaceKind(sort) ? (r.space?.[sort] ?? -1) : sort === 'size' ? r.bytes : sort === 'created' ? r.timeCreated : r.timeUpdated);
  // Largest or newest first; ties by id, so pages never overlap.
  chosen.sort((a, b) => key(b) - key(a) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const offset = Math.max(0, query.offset ?? 0);
  const limit = query.limit ?? 50;
  return {
    total: chosen.length,
    offset,
    sessions: chosen.slice(offset, offset + limit),
    projects: [...totals.values()].sort((a, b) => b.bytes - a.bytes || a.name.localeCompare(b.name)),
  };
}
