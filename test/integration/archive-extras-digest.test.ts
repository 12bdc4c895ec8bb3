/**
 * Verification covers the values beside a session's rows too: the session's extras (its row, todos,
 * share and diff), its info, and each message's extras (its times). A byte changed on disk in any of
 * them, still valid JSON, fails the archive before it takes its name; before they were digested,
 * each of these passed as long as the value still parsed.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { beforeAll, describe, expect, it } from 'vitest';
import { writeArchive } from '../../dist/store/archive/archive-write.js';
import { openFileReader } from '../../dist/store/open-store.js';
import { generateFixture } from '../fixtures/generate.js';
import { tempDir } from '../helpers/env.js';

const dir = tempDir('sk-archive-extras-');
const db = join(dir, 'opencode.db');
let ids: string[] = [];
let n = 0;

beforeAll(() => {
  generateFixture({ path: db, targetBytes: 2 * 1024 * 1024, rootSessions: 6, seed: 21, diffFiles: false });
  const handle = new Database(db, { readonly: true });
  ids = handle.prepare('SELECT id FROM session ORDER BY time_created').pluck().all() as string[];
  handle.close();
});

/** Archives every session, changing the temporary file with `damage` just before it is read back. */
async function archiveWith(damage: ((text: string) => string) | null): Promise<{ out: string; result: Promise<unknown> }> {
  const out = join(dir, `archive-${n++}.json`);
  const reader = openFileReader(db);
  const result = writeArchive(reader.exportSessions(ids), out, {
    verify: true,
    beforeVerify: (tempPath) => {
      if (!damage) return;
      const before = readFileSync(tempPath, 'latin1');
      const after = damage(before);
      expect(after).not.toBe(before);
      expect(after.length).toBe(before.length);
      writeFileSync(tempPath, after, 'latin1');
    },
  }).finally(() => reader.close());
  return { out, result };
}

/** The text with the last digit of the first match of `pattern` (which ends on a digit) changed. */
const bumpDigit = (pattern: RegExp) => (text: string): string => {
  const match = pattern.exec(text);
  if (!match) throw new Error(`no ${pattern} in the archive`);
  const at = match.index + match[0].length - 1;
  const digit = text[at] as string;
  return text.slice(0, at) + (digit === '9' ? '8' : String(Number(digit) + 1)) + text.slice(at + 1);
};

describe('the values beside the rows are verified', () => {
  it('untouched, the archive verifies and takes its name', async () => {
    const { out, result } = await archiveWith(null);
    await expect(result).resolves.toBeDefined();
    expect(existsSync(out)).toBe(true);
  });

  it('a session row value inside its extras', async () => {
    const { out, result } = await archiveWith(bumpDigit(/"session":\{"id":"ses_[^]*?"time_created":\d+/));
    await expect(result).rejects.toThrow(/failed verification: session .* differs/);
    expect(existsSync(out)).toBe(false);
  });

  it("a session's info", async () => {
    const { out, result } = await archiveWith(bumpDigit(/\},"info":\{"id":"ses_[^]*?"tokens":\{"input":\d+/));
    await expect(result).rejects.toThrow(/failed verification: session .* differs/);
    expect(existsSync(out)).toBe(false);
  });

  it("a message's times in its extras", async () => {
    const { out, result } = await archiveWith(bumpDigit(/\{"sessionKeeper":\{"time":\[\d+/));
    await expect(result).rejects.toThrow(/failed verification: session .* differs/);
    expect(existsSync(out)).toBe(false);
  });
});
