/**
 * The session browser sorted by a kind of bytes (core/browse.ts): each root carries its tree's
 * attachments, event log and text (subtasks counted in), sorted largest first by the kind asked;
 * a server-only session, whose kinds the file cannot give, carries null and sorts last.
 */
import { describe, expect, it } from 'vitest';
import { browseSessions, type BrowseSide, type SessionSpace } from '../../src/core/browse.js';
import type { SessionFacts } from '../../src/core/planner.js';

const fact = (id: string, bytes: number, children: string[] = []): SessionFacts => ({ id, title: id, timeCreated: 1, timeUpdated: 2, timeArchived: null, bytes, children });
const space = (attachments: number, events: number, text: number): SessionSpace => ({ attachments, events, text });

const file: BrowseSide = {
  // ses_a is largest overall; ses_b has the most attachments once its subtask's are counted in.
  facts: [fact('ses_a', 900), fact('ses_b', 500, ['ses_b1']), fact('ses_c', 300)],
  rootProject: new Map(),
  projects: [],
  space: new Map([
    ['ses_a', space(10, 50, 800)],
    ['ses_b', space(100, 5, 20)],
    ['ses_b1', space(200, 5, 20)],
    ['ses_c', space(250, 400, 1)],
  ]),
};
const server: BrowseSide = { facts: [fact('ses_s', 5000)], rootProject: new Map(), projects: [] };

describe('browseSessions by kind of bytes', () => {
  it('sums each tree by kind and sorts largest first by the kind asked', () => {
    const ids = (sort: 'attachments' | 'events' | 'text'): string[] => browseSessions({ ...file, pinned: new Set() }, { sort }).sessions.map((r) => r.id);
    expect(ids('attachments')).toEqual(['ses_b', 'ses_c', 'ses_a']);
    expect(ids('events')).toEqual(['ses_c', 'ses_a', 'ses_b']);
    expect(ids('text')).toEqual(['ses_a', 'ses_b', 'ses_c']);
    const b = browseSessions({ ...file, pinned: new Set() }, { sort: 'attachments' }).sessions[0]!;
    expect(b.space).toEqual({ attachments: 300, events: 10, text: 40 });
    expect(b.bytes).toBe(500);
  });

  it('gives a server-only session no kinds and sorts it after every session the file has', () => {
    const page = browseSessions({ ...file, pinned: new Set(), server }, { sort: 'attachments' });
    expect(page.sessions.map((r) => r.id)).toEqual(['ses_b', 'ses_c', 'ses_a', 'ses_s']);
    expect(page.sessions.at(-1)).toMatchObject({ where: 'server', space: null });
    // By size it is first: only the kinds it lacks put it last.
    expect(browseSessions({ ...file, pinned: new Set(), server }, { sort: 'size' }).sessions[0]!.id).toBe('ses_s');
  });

  it('leaves rows without kinds when the store gives none', () => {
    const { space: _, ...bare } = file;
    const page = browseSessions({ ...bare, pinned: new Set() }, { sort: 'attachments' });
    expect(page.sessions.every((r) => r.space === undefined)).toBe(true);
    expect(page.total).toBe(3);
  });
});
