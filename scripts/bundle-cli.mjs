// Bundles the CLI (dist/cli/main.js and what it imports) into dist/bin/: one file for what every
// command runs, one chunk per lazily loaded part (each command's module, the schema, the config
// parser), with the pure-JavaScript libraries inside. Node 20 loads an ES module graph file by file
// with no compile cache, and the schema library alone is dozens of files: a bundle starts in less
// time. Native and server packages (better-sqlite3, the drivers, piscina) stay in node_modules, and
// worker threads run the unbundled dist/ files (src/store/package-files.ts finds them).
import { chmodSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'rolldown';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'dist', 'bin');
/** Packages copied into the bundle: plain JavaScript, loaded on the CLI's start or its lazy paths. */
const BUNDLED = new Set(['commander', 'zod', 'jsonc-parser', 'lru-cache']);

const packageName = (specifier) => (specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]);
const isBare = (specifier) => !specifier.startsWith('.') && !specifier.startsWith('/') && !specifier.startsWith('\0');

rmSync(outDir, { recursive: true, force: true });
await build({
  input: join(root, 'dist', 'cli', 'main.js'),
  platform: 'node',
  // Built-ins and every package not listed above are imported at run time, as from dist/.
  external: (specifier) => specifier.startsWith('node:') || (isBare(specifier) && !BUNDLED.has(packageName(specifier))),
  // jsonc-parser's `main` is a UMD build that requires its parts by computed names: take its ES build.
  resolve: { mainFields: ['module', 'main'] },
  logLevel: 'warn',
  output: {
    dir: outDir,
    format: 'esm',
    entryFileNames: 'session-keeper.js',
    chunkFileNames: '[name]-[hash].js',
    // Source maps: stack traces name our files, and the start test maps each chunk back to its modules.
    sourcemap: true,
  },
});
chmodSync(join(outDir, 'session-keeper.js'), 0o755);
