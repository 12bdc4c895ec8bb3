/**
 * The settings form's check (one schema for the renderer and the utility) says what to type, and
 * the renderer's rules for a second yes and for the suggested target.
 */
import { describe, expect, it } from 'vitest';
import { checkSettingsForm } from '../../src/core/settings-form.js';
import { confirmationText, needsConfirmation } from '../../src/renderer/confirm.js';
import { parseTargetMB, suggestedTarget } from '../../src/renderer/size-check.js';

describe('settings form check', () => {
  it('passes good values and null (remove the key)', () => {
    expect(checkSettingsForm({ maxSizeMB: 500, maxAgeDays: null, maxSessions: 200, warnAtMB: [100, 500], archive: true, storage: 'sqlite', keep: ['ses_a'] })).toEqual([]);
  });
  it.each([
    [{ maxSizeMB: 'lots' }, 'maxSizeMB', '"lots" is not a number. Enter a size in MB, for example 500.'],
    [{ maxSizeMB: -5 }, 'maxSizeMB', 'Enter a size in MB greater than 0 (leave it empty for no size limit).'],
    [{ maxSizeMB: 0 }, 'maxSizeMB', 'Enter a size in MB greater than 0 (leave it empty for no size limit).'],
    [{ maxSessions: 2.5 }, 'maxSessions', '2.5 is not a whole number. Enter a whole number of sessions, for example 200 (leave it empty for no count limit).'],
    [{ warnAtMB: [100, 'lots'] }, 'warnAtMB[1]', '"lots" is not a number. Enter sizes in MB separated by commas, for example 100, 500, 1024.'],
    [{ storage: 'mysql' }, 'connectionString', 'Enter the connection string for MySQL or MariaDB, for example mysql://user@localhost/opencode.'],
  ])('%j', (values, field, message) => {
    expect(checkSettingsForm(values)).toEqual([{ field, message }]);
  });
  it('never words a message for developers', () => {
    for (const e of checkSettingsForm({ maxSizeMB: 'x', maxAgeDays: {}, maxSessions: -1, warnAtMB: 'a', archive: 'yes', orderBy: 'newest' })) {
      expect(e.message).not.toMatch(/expected|got|invalid_type|NaN/);
    }
  });
});

describe('confirmation and the suggested target', () => {
  const plan = (evict: number, rootSessions: number, archive = true) => ({ evict: Array.from({ length: evict }, () => ({}) as never), rootSessions, archive });
  it('asks for more than half the sessions, or any removal without an archive', () => {
    expect(needsConfirmation(plan(1311, 2622))).toBe(false);
    expect(needsConfirmation(plan(1312, 2622))).toBe(true);
    expect(needsConfirmation(plan(1, 2622, false))).toBe(true);
    expect(needsConfirmation(plan(0, 2622, false))).toBe(false);
    expect(confirmationText(plan(2382, 2622))).toBe('This removes 2,382 sessions of 2,622 (91%), with their subtasks. They are archived first and can be restored from the archive.');
    expect(confirmationText(plan(3, 10, false))).toContain('cannot be restored');
  });
  it('suggests just below the threshold that fired, not a fraction of the smallest', () => {
    expect(suggestedTarget(1024, 1.16 * 1024 ** 3)).toBe(921);
    expect(suggestedTarget(20, 45 * 1024 ** 2)).toBe(18);
    expect(suggestedTarget(null, 200 * 1024 ** 2)).toBe(180);
  });
  it('reads the size field as typed', () => {
    expect(parseTargetMB(' 500 MB')).toEqual({ ok: true, value: 500 });
    expect(parseTargetMB('lots')).toEqual({ ok: false, message: '"lots" is not a number: enter a size in MB, for example 500.' });
    expect(parseTargetMB('0')).toEqual({ ok: false, message: 'Enter a size greater than 0 MB.' });
  });
});
