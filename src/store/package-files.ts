/**
 * Files of this installation (worker entries, the native extension, the renderer, package.json),
 * found from the package's own folder rather than from the module asking: the CLI runs as one
 * bundle (dist/bin/), where every module's `import.meta.url` is its chunk's, not its source file's.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const PACKAGE_NAME = 'session-keeper';

interface Manifest {
  dir: string;
  version: string;
}

let found: Manifest | undefined;

/**
 * The nearest package.json above this module that is ours (name session-keeper), read once; failing
 * that (an app that bundled this code into its own file), the one Node resolves for our name.
 */
function manifest(): Manifest {
  if (found) return found;
  const start = dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; dir = dirname(dir)) {
    const parsed = ours(join(dir, 'package.json'));
    if (parsed) return (found = { dir, version: parsed.version });
    if (dirname(dir) === dir) break;
  }
  let resolved: string;
  try {
    resolved = createRequire(import.meta.url).resolve(`${PACKAGE_NAME}/package.json`);
  } catch {
    throw new Error(`no ${PACKAGE_NAME} package.json above ${start}, and Node resolves none`);
  }
  return (found = { dir: dirname(resolved), version: ours(resolved)?.version ?? 'unknown' });
}

/** The manifest at `path` when it is this package's. */
function ours(path: string): { version: string } | undefined {
  const parsed = existsSync(path) ? readManifest(path) : undefined;
  if (parsed?.name !== PACKAGE_NAME) return undefined;
  return { version: typeof parsed.version === 'string' ? parsed.version : 'unknown' };
}

function readManifest(path: string): { name?: unknown; version?: unknown } | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as { name?: unknown; version?: unknown };
  } catch {
    return undefined; // unreadable or not JSON: not ours
  }
}

/** The folder holding this package's package.json. */
export function packageRoot(): string {
  return manifest().dir;
}

/** A path inside this installation, e.g. `packagePath('dist', 'renderer')`. */
export function packagePath(...segments: string[]): string {
  return join(packageRoot(), ...segments);
}

/** The built module at `dist/<path>` (a worker thread's or child process's entry), as a file URL. */
export function builtModule(path: string): URL {
  return pathToFileURL(packagePath('dist', ...path.split('/')));
}

/** A library scripts/build-native.mjs built (`native/build/<name>.so`, `.dylib` or `.dll`). */
export function nativeLibrary(name: string): string {
  const ext = process.platform === 'darwin' ? 'dylib' : process.platform === 'win32' ? 'dll' : 'so';
  return packagePath('native', 'build', `${name}.${ext}`);
}

/** This package's version, from its package.json. */
export function packageVersion(): string {
  return manifest().version;
}
