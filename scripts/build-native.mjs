// Builds the SQLite extensions in native/ with the machine's C compiler against better-sqlite3's own
// SQLite headers, one shared library each:
//   limit_length: raises SQLITE_LIMIT_LENGTH (without it, values over V8's string limit are unreadable);
//   value_chunks: the sk_chunks table-valued function (without it, values are read whole).
// Both are optional: a library that fails to build leaves the fallback in place, with a warning.
import { execFileSync } from 'node:child_process';
import { mkdirSync, existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const ext = process.platform === 'darwin' ? 'dylib' : process.platform === 'win32' ? 'dll' : 'so';
const require = createRequire(import.meta.url);
const headers = join(dirname(require.resolve('better-sqlite3/package.json')), 'deps', 'sqlite3');
const cc = process.env.CC ?? 'cc';

const libraries = [
  { name: 'limit_length', without: 'values over 512 MB will be listed but not readable' },
  { name: 'value_chunks', without: 'large values will be read whole instead of in chunks' },
];

for (const { name, without } of libraries) {
  const source = join(root, 'native', `${name}.c`);
  const output = join(root, 'native', 'build', `${name}.${ext}`);
  if (existsSync(output) && statSync(output).mtimeMs >= statSync(source).mtimeMs) continue;
  mkdirSync(dirname(output), { recursive: true });
  const args = process.platform === 'darwin'
    ? ['-O2', '-fPIC', '-dynamiclib', '-I', headers, source, '-o', output]
    : ['-O2', '-fPIC', '-shared', '-I', headers, source, '-o', output];
  try {
    execFileSync(cc, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (error) {
    console.warn(`session-keeper: could not build ${source} with ${cc} (${error.message.split('\n')[0]}); ${without}`);
  }
}
