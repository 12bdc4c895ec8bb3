import { describe, expect, it } from 'vitest';
import {
  hasRetentionPolicy,
  mergeOverrides,
  parseSessionConfig,
  sessionConfigSchema,
  unknownSessionKeys,
  type SessionConfig,
} from '../../src/core/config.js';
import { SkError } from '../../src/core/errors.js';

const env = { HOME: '/home/u', XDG_DATA_HOME: '/data' };
const SRC = '/cfg/opencode.json';

function errorOf(fn: () => unknown): SkError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(SkError);
    expect((error as SkError).code).toBe('config');
    return error as SkError;
  }
  throw new Error('expected a config error');
}

describe('session config: defaults', () => {
  it('keeps today\'s behaviour: no limits, archiving on', () => {
    const config = parseSessionConfig(undefined, SRC, env);
    expect(config).toEqual({
      orderBy: 'created',
      keep: [],
      archive: true,
      archiveDir: '/data/opencode/archive',
      warnAtMB: [100, 500, 1024],
      storage: 'sqlite',
    });
    expect(hasRetentionPolicy(config)).toBe(false);
    expect(parseSessionConfig({}, SRC, env)).toEqual(config);
  });

  it('fills defaults from the exported schema too', () => {
    const config = sessionConfigSchema.parse({ maxSizeMB: 200 });
    expect(config.orderBy).toBe('created');
    expect(config.archive).toBe(true);
    expect(config.archiveDir).toMatch(/opencode[/\\]archive$/);
    expect(hasRetentionPolicy(config)).toBe(true);
  });

  it('accepts every documented key', () => {
    const config = parseSessionConfig(
      {
        maxSizeMB: 200,
        maxAgeDays: 30,
        maxSessions: 100,
        orderBy: 'updated',
        keep: ['ses_a'],
        archive: false,
        archiveDir: '~/archive',
        warnAtMB: [50],
        storage: 'postgres',
        connectionString: 'postgres://u:pw@h/db',
        offload: 'mysql://root@h/db',
      },
      SRC,
      env,
    );
    expect(config).toMatchObject({ maxSizeMB: 200, maxAgeDays: 30, maxSessions: 100, orderBy: 'updated', archive: false });
    expect(config.archiveDir).toBe('/home/u/archive');
    expect(hasRetentionPolicy({ maxAgeDays: 1 })).toBe(true);
    expect(hasRetentionPolicy({ maxSessions: 1 })).toBe(true);
  });

  it('keeps unknown keys out of the result without rejecting them', () => {
    const raw = { maxSizeMB: 10, futureKey: { x: 1 }, maxSizeMb: 3 };
    expect(parseSessionConfig(raw, SRC, env).maxSizeMB).toBe(10);
    expect(unknownSessionKeys(raw)).toEqual(['futureKey', 'maxSizeMb']);
  });
});

describe('session config: errors name the key and the problem', () => {
  const cases: [string, unknown, string][] = [
    ['maxSizeMB', { maxSizeMB: 'big' }, 'config /cfg/opencode.json: session.maxSizeMB: expected a positive number, got "big"'],
    ['maxSizeMB zero', { maxSizeMB: 0 }, 'session.maxSizeMB: expected a positive number, got 0'],
    ['maxAgeDays', { maxAgeDays: -1 }, 'session.maxAgeDays: expected a positive number, got -1'],
    ['maxSessions', { maxSessions: 2.5 }, 'session.maxSessions: expected a whole number of at least 1, got 2.5'],
    ['orderBy', { orderBy: 'newest' }, 'session.orderBy: expected "created" or "updated", got "newest"'],
    ['keep', { keep: 'ses_a' }, 'session.keep: expected a list of session ids, got "ses_a"'],
    ['keep element', { keep: ['ses_a', 7] }, 'session.keep[1]: expected a session id (a string), got 7'],
    ['archive', { archive: 'yes' }, 'session.archive: expected true or false, got "yes"'],
    ['archiveDir', { archiveDir: '' }, 'session.archiveDir: expected a folder path, got ""'],
    ['warnAtMB', { warnAtMB: [100, 'x'] }, 'session.warnAtMB[1]: expected a positive number, got "x"'],
    ['storage', { storage: 'oracle' }, 'session.storage: expected one of "sqlite", "postgres", "mysql", "sqlserver", got "oracle"'],
    ['session itself', 5, 'session: expected an object, got 5'],
    ['object value', { maxSizeMB: { a: 1 } }, 'session.maxSizeMB: expected a positive number, got an object'],
  ];
  for (const [name, raw, message] of cases) {
    it(name, () => {
      const error = errorOf(() => parseSessionConfig(raw, SRC, env));
      expect(error.message).toContain(message);
      expect(error.message.startsWith('config /cfg/opencode.json: ')).toBe(true);
      expect(error.message).not.toContain('\n');
    });
  }

  it('counts further problems on the same line', () => {
    const error = errorOf(() => parseSessionConfig({ maxSizeMB: 'x', maxAgeDays: 'y' }, SRC, env));
    expect(error.message).toBe('config /cfg/opencode.json: session.maxSizeMB: expected a positive number, got "x" (and 1 more)');
  });

  it('requires a connection string for an external store', () => {
    for (const storage of ['postgres', 'mysql', 'sqlserver']) {
      expect(errorOf(() => parseSessionConfig({ storage }, SRC, env)).message).toBe(
        `config /cfg/opencode.json: session.connectionString: required when storage is "${storage}"`,
      );
    }
    expect(parseSessionConfig({ storage: 'sqlite' }, SRC, env).connectionString).toBeUndefined();
  });

  it('never prints a password', () => {
    const secrets = [
      { storage: 'postgres', connectionString: 42 },
      { storage: 'postgres', connectionString: '' },
      { connectionString: ['postgres://sk:hunter2@db/x'] },
      { offload: { url: 'postgres://sk:hunter2@db/x' } },
      { offload: 'postgres://sk:hunter2@db/x', maxSizeMB: -1 },
      { storage: 'postgres://sk:hunter2@db/x' },
      { archiveDir: 5, connectionString: 'Server=x;Password=hunter2;' },
    ];
    for (const raw of secrets) {
      const error = errorOf(() => parseSessionConfig(raw, SRC, env));
      expect(error.message).not.toContain('hunter2');
      expect(error.message).not.toContain('42');
    }
    expect(errorOf(() => parseSessionConfig({ storage: 'postgres', connectionString: 42 }, SRC, env)).message).toBe(
      'config /cfg/opencode.json: session.connectionString: expected a connection string',
    );
  });
});

describe('mergeOverrides', () => {
  const file: SessionConfig = parseSessionConfig({ maxSizeMB: 200, maxAgeDays: 30, keep: ['ses_a'] }, SRC, env);

  it('lets flags win and leaves the rest', () => {
    const merged = mergeOverrides(file, { maxSizeMB: 50, archive: false, maxSessions: undefined }, env);
    expect(merged).toEqual({ ...file, maxSizeMB: 50, archive: false });
    expect('maxSessions' in merged).toBe(false);
    expect(file.maxSizeMB).toBe(200);
  });

  it('replaces lists rather than appending', () => {
    expect(mergeOverrides(file, { keep: ['ses_b'] }, env).keep).toEqual(['ses_b']);
  });

  it('with no flags gives the file back', () => {
    expect(mergeOverrides(file, {}, env)).toEqual(file);
  });

  it('rejects a bad flag value like a bad file value', () => {
    expect(errorOf(() => mergeOverrides(file, { maxSizeMB: -5 }, env)).message).toBe(
      'command line: maxSizeMB: expected a positive number, got -5',
    );
    expect(errorOf(() => mergeOverrides(file, { storage: 'mysql' }, env)).message).toBe(
      'command line: connectionString: required when storage is "mysql"',
    );
  });
});
