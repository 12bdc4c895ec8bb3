/** The plugin report's words: which one fix a size warning names, and the report schema's bounds. */
import { describe, expect, it } from 'vitest';
import { fixFor, pluginReportSchema, targetMB } from '../../src/core/plugin-report.js';

const MB = 1024 * 1024;

describe('fixFor', () => {
  it('names a VACUUM when only free pages keep the file over the threshold', () => {
    const fix = fixFor({ thresholdMB: 500, fileBytes: 620 * MB, liveBytes: 300 * MB });
    expect(fix).toMatch(/^close OpenCode and run: session-keeper vacuum \(320 MB/);
  });

  it('names a size limit, as a command and as the setting, when the rows themselves are over it', () => {
    expect(fixFor({ thresholdMB: 500, fileBytes: 620 * MB, liveBytes: 610 * MB })).toBe(
      'run: session-keeper retention --max-size-mb 400 --apply (or set "session": { "maxSizeMB": 400 } in opencode.json to keep it there)',
    );
    expect(fixFor({ thresholdMB: 1024, fileBytes: 2000 * MB, liveBytes: null })).toContain('--max-size-mb 819 ');
    expect(targetMB(1)).toBe(1);
  });

  it('the schema refuses a report of another version or shape', () => {
    expect(pluginReportSchema.safeParse({ version: 2, ok: false, mode: 'startup', error: 'x' }).success).toBe(false);
    expect(pluginReportSchema.safeParse({ version: 1, ok: true, mode: 'startup', db: 'x' }).success).toBe(false);
    expect(pluginReportSchema.safeParse({ version: 1, ok: false, mode: 'warnings', error: 'locked' }).success).toBe(true);
  });
});
