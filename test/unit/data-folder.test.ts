/** The data folder's pure parts: who is named as using the database, what a plan frees, the chart's folder slices. */
import { describe, expect, it } from 'vitest';
import type { StatsResult } from '../../src/core/api.js';
import { describeWriters, planFrees, PLACE_TEXT, type FolderPlace, type WriterPresence } from '../../src/core/data-folder.js';
import { folderSlices } from '../../src/renderer/size-check.js';

const presence = (over: Partial<WriterPresence>): WriterPresence => ({ processes: [], committing: false, processesChecked: true, watchedMs: 250, ...over });

describe('describeWriters', () => {
  it('is null when nobody was seen, and names OpenCode apart from other processes', () => {
    expect(describeWriters(presence({}), '/d/opencode.db')).toBeNull();
    const line = describeWriters(
      presence({
        committing: true,
        processes: [
          { pid: 7, name: 'opencode', command: 'opencode serve', isOpenCode: true },
          { pid: 9, name: 'node', command: 'node x.js', isOpenCode: false },
        ],
      }),
      '/d/opencode.db',
    );
    expect(line).toBe('OpenCode (pid 7 opencode) and another process (pid 9 node) have /d/opencode.db open and is writing to it');
    expect(describeWriters(presence({ committing: true }), '/d/opencode.db')).toMatch(/committed to \/d\/opencode.db while session-keeper watched it for 250 ms/);
  });
});

describe('planFrees', () => {
  it('counts the legacy tree only when every session in it is in a database', () => {
    const legacy = { root: '/s', present: true, sessions: 1, messages: 1, parts: 1, entries: 4, bytes: 1000, unowned: 0, missing: { sessions: [], messages: [], parts: [], count: 0 }, ready: true };
    const files = { files: [], bytes: 10 };
    expect(planFrees({ targets: ['diffs', 'legacy-json'], diffs: files, snapshotTemp: null, legacyJson: legacy })).toBe(1010);
    expect(planFrees({ targets: ['diffs', 'legacy-json'], diffs: files, snapshotTemp: null, legacyJson: { ...legacy, ready: false } })).toBe(10);
  });
});

describe('folderSlices', () => {
  const place = (name: FolderPlace['name'], bytes: number, reclaimable = 0, inDataFolder = true): FolderPlace => ({
    name, path: `/d/${name}`, bytes, entries: 1, reclaimable, reclaim: PLACE_TEXT[name].reclaim, what: PLACE_TEXT[name].what, cost: PLACE_TEXT[name].cost, inDataFolder,
  });
  it('shows each place of the folder beside the database that holds anything, and what of it is unused', () => {
    const stats = { files: [place('database', 500), place('snapshot', 3_000_000, 1_048_576), place('log', 0), place('other', 10), place('desktop-state', 99, 0, false)] } as unknown as StatsResult;
    expect(folderSlices(stats)).toEqual([{ key: 'folder', label: 'Snapshots (undo/revert history) (1 MB unused)', bytes: 3_000_000 }]);
    expect(folderSlices({} as StatsResult)).toEqual([]);
  });
});
