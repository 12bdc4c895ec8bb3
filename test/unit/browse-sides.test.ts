/**
 * The session browser's one view (core/browse.ts): the server's sessions the file lacks join the
 * file's, each row marked where it lives; a session in both keeps the file's facts; projects only
 * the server knows label its sessions and count in the totals; without a server nothing is marked.
 */
import { describe, expect, it } from 'vitest';
import { browseSessions, type BrowseSide } from '../../src/core/browse.js';
import type { SessionFacts } from '../../src/core/planner.js';

const fact = (id: string, title: string, bytes: number, timeUpdated: number): SessionFacts => ({ id, title, timeCreated: timeUpdated - 10, timeUpdated, timeArchived: null, bytes, children: [] });

const file: BrowseSide = {
  facts: [fact('ses_a', 'alpha here', 100, 5), fact('ses_b', 'beta here', 200, 4)],
  rootProject: new Map([
    ['ses_a', 'prj_web'],
    ['ses_b', 'prj_web'],
  ]),
  projects: [{ id: 'prj_web', name: 'web', worktree: '/w/web' }],
};
const server: BrowseSide = {
  // ses_b as the server holds it (an older copy): the file's facts win.
  facts: [fact('ses_b', 'beta on the server', 150, 3), fact('ses_c', 'gamma gone from the file', 300, 2)],
  rootProject: new Map([
    ['ses_b', 'prj_web'],
    ['ses_c', 'prj_old'],
  ]),
  projects: [
    { id: 'prj_web', name: 'web (server copy)', worktree: '/w/web' },
    { id: 'prj_old', name: null, worktree: '/w/old-project' },
  ],
};

describe('browseSessions with the server side', () => {
  it('marks each row where it lives and keeps the file’s facts for a session in both', () => {
    const page = browseSessions({ ...file, pinned: new Set(), server }, { sort: 'updated' });
    expect(page.total).toBe(3);
    expect(page.sessions.map((r) => [r.id, r.where, r.title, r.bytes])).toEqual([
      ['ses_a', 'local', 'alpha here', 100],
      ['ses_b', 'both', 'beta here', 200],
      ['ses_c', 'server', 'gamma gone from the file', 300],
    ]);
  });

  it('labels server-only sessions with the server’s projects and counts them in the totals; the file names its own projects', () => {
    const page = browseSessions({ ...file, pinned: new Set(), server }, {});
    expect(page.sessions.find((r) => r.id === 'ses_c')?.project).toBe('old-project');
    expect(page.sessions.find((r) => r.id === 'ses_a')?.project).toBe('web');
    // Equal bytes: by name.
    expect(page.projects).toEqual([
      { id: 'prj_old', name: 'old-project', sessions: 1, bytes: 300 },
      { id: 'prj_web', name: 'web', sessions: 2, bytes: 300 },
    ]);
    expect(browseSessions({ ...file, pinned: new Set(), server }, { project: 'prj_old' }).sessions.map((r) => r.id)).toEqual(['ses_c']);
    expect(browseSessions({ ...file, pinned: new Set(), server }, { search: 'GAMMA' }).sessions.map((r) => r.where)).toEqual(['server']);
  });

  it('narrows to where sessions live when asked; without a server every session is the file’s alone', () => {
    const input = { ...file, pinned: new Set<string>(), server };
    expect(browseSessions(input, { where: 'server' }).sessions.map((r) => r.id)).toEqual(['ses_c']);
    expect(browseSessions(input, { where: 'both' }).sessions.map((r) => r.id)).toEqual(['ses_b']);
    expect(browseSessions(input, { where: 'local' }).projects).toEqual([{ id: 'prj_web', name: 'web', sessions: 1, bytes: 100 }]);
    expect(browseSessions({ ...file, pinned: new Set() }, { where: 'server' }).total).toBe(0);
    expect(browseSessions({ ...file, pinned: new Set() }, { where: 'local' }).total).toBe(2);
  });

  it('marks nothing without a server', () => {
    const page = browseSessions({ ...file, pinned: new Set() }, {});
    expect(page.total).toBe(2);
    expect(page.sessions.every((r) => !('where' in r))).toBe(true);
  });
});
