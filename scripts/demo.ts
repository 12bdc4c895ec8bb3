#!/usr/bin/env node
/**
 * The main job on the embedded default, as the README's first command runs it: OpenCode's own
 * database when there is one (read-only), otherwise a generated demo database in OpenCode's
 * schema. Shows what `session-keeper` sees: size, warnings, the largest and newest sessions.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { defaultDbPath } from '../src/core/paths.js';
import { generateFixture } from '../test/fixtures/generate.js';

// Compiled to build/dev/scripts/: the project root is three folders up.
const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** The shipped CLI (dist/), not a development copy: the demo runs exactly what users run. */
const cli = async (): Promise<(argv: string[]) => Promise<number>> =>
  ((await import(pathToFileURL(join(projectRoot, 'dist', 'cli', 'main.js')).href)) as typeof import('../src/cli/main.js')).main;
const DEMO_BYTES = 120 * 1024 * 1024;

async function run(): Promise<number> {
  let db = defaultDbPath();
  const real = existsSync(db);
  if (real) {
    process.stdout.write(`Using OpenCode's database at ${db} (read-only).\n\n`);
  } else {
    db = join(projectRoot, '.demo', 'opencode.db');
    if (!existsSync(db)) {
      process.stdout.write(`No OpenCode database at ${defaultDbPath()}: generating a ${DEMO_BYTES / 1024 / 1024} MB demo database at ${db} ...\n`);
      mkdirSync(dirname(db), { recursive: true });
      const summary = generateFixture({ path: db, targetBytes: DEMO_BYTES, seed: 1, hugeAttachmentBytes: 24 * 1024 * 1024 });
      process.stdout.write(`  ${summary.sessions} sessions, ${summary.messages} messages, ${summary.parts} parts, ${summary.attachments.count} attachments\n\n`);
    } else {
      process.stdout.write(`No OpenCode database at ${defaultDbPath()}: using the demo database at ${db}.\n\n`);
    }
  }
  // On a real database the plan follows the user's own config; the demo shows an example policy.
  const policy = real ? [] : ['--max-size-mb', '64', '--max-age-days', '90'];
  const steps: [string, string[]][] = [
    ['session-keeper stats', ['stats', '--largest', '5']],
    ['session-keeper list --limit 8', ['list', '--limit', '8']],
    [`session-keeper retention --dry-run ${policy.join(' ')}`.trim(), ['retention', '--dry-run', ...policy]],
  ];
  const main = await cli();
  for (const [title, args] of steps) {
    process.stdout.write(`$ ${title}\n`);
    const code = await main(['--db', db, ...args]);
    if (code !== 0) return code;
    process.stdout.write('\n');
  }
  return 0;
}

run().then((code) => {
  process.exitCode = code;
});
