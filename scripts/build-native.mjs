// Builds native/limit_length.c with the machine's C compiler against better-sqlite3's own SQLite headers.
// Optional: without it, values over V8's string limit are listed by size but cannot be read.
import { execFileSync } from 'node:child_process';
import { mkdirSync, existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'native', 'limit_length.c');
const ext = process.platform === 'darwin' ? 'dylib' : process.platform === 'win32' ? 'dll' : 'so';
const output = join(root, 'native', 'build', `limit_length.${ext}`);
const require = createRequire(import.meta.url);
const headers = join(dirname(require.resolve('better-sqlite3/package.json')), 'deps', 'sqlite3');

if (existsSync(output) && statSync(output).mtimeMs >= statSync(source).mtimeMs) process.exit(0);
mkdirSync(dirname(output), { recursive: true });
const cc = process.env.CC ?? 'cc';
const args = process.platform === 'darwin'
  ? ['-O2', '-fPIC', '-dynamiclib', '-I', headers, source, '-o', output]
  : ['-O2', '-fPIC', '-shared', '-I', headers, source, '-o', output];
try {
  execFileSync(cc, args, { stdio: ['ignore', 'inherit', 'inherit'] });
} catch (error) {
  console.warn(`session-keeper: could not build ${source} with ${cc} (${error.message.split('\n')[0]}); values over 512 MB will be listed but not readable`);
}
