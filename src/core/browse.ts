/**
 * The session browser's pages: root sessions with their size (what removing each frees, its
 * subtasks counted in), filtered by title and project, sorted, paged, with totals per project.
 * Pure: the utility gathers the facts from the store and hands back one page, so the renderer
 * never holds the whole table.
 */
import type { SessionFacts } from './planner.js';

export const BROWSE_SORTS = ['size', 'created', 'updated'] as const;
export type BrowseSort = (typeof BROWSE_SORTS)[number];

export interface BrowseQuery {
  search?: string | undefined;
  sort?: BrowseSort | undefined;
  /** A project id: only its sessions. */
  project?: string | undefined;
  offset?: number | undefined;
  limit?: number | undefined;
}

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
  /** Per project, over the sessions matching the search (whatever project is chosen), largest first. */
  projects: ProjectTotal[];
}

export interface BrowseInput {
  facts: readonly SessionFacts[];
  rootProject: ReadonlyMap<string, string>;
  projects: readonly { id: string; name: string | null; worktree: string }[];
  pinned: ReadonlySet<string>;
}

/** A project as a person knows it: its name, else its folder's last part. */
export function projectLabel(project: { id: string; name: string | null; worktree: string } | undefined, id: string | null): string {
  if (!project) return id === null ? 'No project' : id === 'global' ? 'Global (no project)' : id;
  if (project.name) return project.name;
  if (project.id === 'global' || project.worktree === '/') return 'Global (no project)';
  return project.worktree.split('/').filter(Boolean).pop() ?? project.worktree;
}

export function browseSessions(input: BrowseInput, query: BrowseQuery): BrowseResult {
  const byId = new Map(input.projects.map((p) => [p.id, p]));
  const needle = (query.search ?? '').trim().toLowerCase();
  const rows: BrowseRow[] = [];
  for (const f of input.facts) {
    if (needle && !f.title.toLowerCase().includes(needle)) continue;
    const projectId = input.rootProject.get(f.id) ?? null;
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
  const key = (r: BrowseRow): number => (sort === 'size' ? r.bytes : sort === 'created' ? r.timeCreated : r.timeUpdated);
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
