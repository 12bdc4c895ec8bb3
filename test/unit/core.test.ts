import { describe, expect, it } from 'vitest';
import { decodeSessionCursor, encodeCursor } from '../../src/core/cursor.js';
import { oneLine, redactSecrets } from '../../src/core/errors.js';
import { crossedThresholds, MB } from '../../src/core/thresholds.js';
import { defaultDbPath } from '../../src/core/paths.js';

describe('thresholds', () => {
  it('lists crossed thresholds highest first, none below the first', () => {
    expect(crossedThresholds(99 * MB)).toEqual([]);
    expect(crossedThresholds(100 * MB).map((w) => w.thresholdMB)).toEqual([100]);
    expect(crossedThresholds(600 * MB).map((w) => w.thresholdMB)).toEqual([500, 100]);
    expect(crossedThresholds(2048 * MB, [1024, 100, 1024]).map((w) => w.thresholdMB)).toEqual([1024, 100]);
  });
  it('words the warning as users asked', () => {
    expect(crossedThresholds(512 * MB)[0]?.message).toBe(
      'Warning: OpenCode database is 512 MB. Consider archiving or enabling auto-retention.',
    );
  });
});

describe('cursors', () => {
  it('round-trip and reject garbage', () => {
    expect(decodeSessionCursor(encodeCursor([5, 'ses_x']))).toEqual([5, 'ses_x']);
    expect(() => decodeSessionCursor('not-a-cursor')).toThrow(/invalid cursor/);
    expect(() => decodeSessionCursor(Buffer.from('[1]').toString('base64url'))).toThrow(/invalid cursor/);
  });
});

describe('secrets', () => {
  it('never prints a password from a connection string', () => {
    expect(redactSecrets('connect postgres://sk:hunter2@db:5432/x failed')).toBe('connect postgres://sk:***@db:5432/x failed');
    expect(redactSecrets('Server=x;User Id=sa;Password=hunter2;')).toBe('Server=x;User Id=sa;Password=***;');
    expect(oneLine(new Error('mysql://root:pw@h/db\nstack'))).toBe('mysql://root:***@h/db');
  });
});

describe('paths', () => {
  it('prefers OPENCODE_DB, then XDG_DATA_HOME, then HOME', () => {
    expect(defaultDbPath({ OPENCODE_DB: '/x.db', HOME: '/h' })).toBe('/x.db');
    expect(defaultDbPath({ XDG_DATA_HOME: '/d', HOME: '/h' })).toBe('/d/opencode/opencode.db');
    expect(defaultDbPath({ HOME: '/h' })).toBe('/h/.local/share/opencode/opencode.db');
  });
});
