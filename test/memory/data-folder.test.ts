/**
 * The data folder under a 64 MB V8 heap: `stats` walks it and `clean --legacy-json --apply`
 * archives (and reads back) a pre-SQLite tree whose one part file holds a 150 MB attachment as
 * base64 (200 MB), in 1 MB pieces, its whole process held under 200 MB of memory (RLIMIT_DATA);
 * the archive holds the file byte for byte.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { CleanResult } from '../../src/core/data-folder.js';
import { generateFixture } from '../fixtures/generate.js';
import { writeLegacyJsonTree, type LegacyTree } from '../fixtures/legacy-json.js';
import { CLI, runCli, tempDir } from '../helpers/env.js';
import { runUnderMemoryLimit } from '../helpers/memory-limit.js';

const MB = 1024 * 1024;
const HEAP = ['--max-old-space-size=64'];
/** Peak resident memory allowed for the clean: the legacy part file alone is 200 MB. */
const RSS_BOUND = 200 * MB;
const dir = tempDir('sk-memory-folder-');
const folder = join(dir, 'opencode');
const db = join(folder, 'opencode.db');
const env = { XDG_DATA_HOME: dir, XDG_CONFIG_HOME: join(dir, 'config'), HOME: dir };
let tree: LegacyTree;
let hugeFile = '';

beforeAll(() => {
  mkdirSync(folder, { recursive: true });
  const fixture = generateFixture({ path: db, targetBytes: 170 * MB, hugeAttachmentBytes: 150 * MB, seed: 5, diffFiles: false });
  tree = writeLegacyJsonTree(db);
  hugeFile = tree.files.find((f) => f.endsWith(`${fixture.hugePartId}.json`)) as string;
}, 300_000);

describe('the data folder under --max-old-space-size=64', () => {
  it('stats walks it and clean archives a 200 MB legacy part file, verified, then removes the tree', () => {
    expect(statSync(hugeFile).size).toBeGreaterThan(RSS_BOUND);
    const digest = createHash('sha256').update(readFileSync(hugeFile)).digest('hex');
    const stats = runCli(['--db', db, '--json', 'stats'], { env, nodeArgs: HEAP });
    expect(stats.stderr).not.toMatch(/heap out of memory/);
    expect(stats.status).toBe(0);

    // Bounded below the file's own size: reading it whole (even into a Buffer, outside the heap) cannot fit.
    const run = runUnderMemoryLimit(process.execPath, [CLI, '--db', db, '--json', 'clean', '--legacy-json', '--apply', '--yes'], { rssBytes: RSS_BOUND, heapMB: 64, env: { ...process.env, ...env } });
    expect(run.stderr).toBe('');
    expect(run.withinLimit, `peak RSS ${run.peakRssBytes} (${run.enforcement})`).toBe(true);
    const result = JSON.parse(run.stdout) as CleanResult;
    expect(result.removed.legacyJson).toBe(tree.files.length);
    expect(existsSync(hugeFile)).toBe(false);
    const name = relative(folder, hugeFile);
    const out = join(dir, 'out');
    mkdirSync(out);
    expect(spawnSync('tar', ['-xzf', result.archive as string, '-C', out, name]).status).toBe(0);
    expect(createHash('sha256').update(readFileSync(join(out, name))).digest('hex')).toBe(digest);
  }, 300_000);
});
