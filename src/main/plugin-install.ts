/**
 * `install-plugin`: a small loader file in OpenCode's plugins folder (`$XDG_CONFIG_HOME/opencode/plugins/`,
 * or `.opencode/plugins/` of a project) that re-exports this package's plugin. Written to a
 * temporary name, fsynced and renamed; a file there that is not ours is never replaced without `force`.
 */
import { closeSync, existsSync, fsyncSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { SkError } from '../core/errors.js';
import { configHome } from '../core/paths.js';
import { packagePath } from '../store/package-files.js';

/** The first line of every loader this command writes: what tells ours from a foreign file. */
export const LOADER_MARK = '// session-keeper OpenCode plugin loader';
export const LOADER_NAME = 'session-keeper.js';

/** dist/plugin/opencode-plugin.js of this installation. */
export const PLUGIN_ENTRY = packagePath('dist', 'plugin', 'opencode-plugin.js');

export interface InstallOptions {
  /** Into `<projectDir>/.opencode/plugins/` instead of the user's global folder. */
  projectDir?: string;
  force?: boolean;
  /** An absolute `node` for the plugin to use (OpenCode started without Node on its PATH). */
  node?: string;
  env?: Record<string, string | undefined>;
}

export interface InstallResult {
  path: string;
  replaced: 'none' | 'ours' | 'foreign';
  entry: string;
  /** The same plugin as an `opencode.json` entry, for those who prefer the config. */
  configEntry: string;
}

/** The loader's text: a re-export, or with `node`, a wrapper that passes it as the plugin's option. */
export function loaderText(entryUrl: string, node?: string): string {
  const lines = [LOADER_MARK, '// Written by `session-keeper install-plugin`; delete this file to uninstall.'];
  if (node === undefined) {
    lines.push(`export { default } from ${JSON.stringify(entryUrl)};`);
  } else {
    lines.push(`import plugin from ${JSON.stringify(entryUrl)};`);
    lines.push(`export default (input, options) => plugin(input, { node: ${JSON.stringify(node)}, ...options });`);
  }
  return `${lines.join('\n')}\n`;
}

export function installPlugin(options: InstallOptions = {}): InstallResult {
  if (!existsSync(PLUGIN_ENTRY)) throw new SkError('not-found', `the plugin is not built (${PLUGIN_ENTRY} is missing): run npm run build`);
  if (options.node !== undefined && (!isAbsolute(options.node) || !existsSync(options.node))) {
    throw new SkError('usage', `--node expects the absolute path of a node executable; ${options.node} is not one`);
  }
  const dir = options.projectDir !== undefined ? join(resolve(options.projectDir), '.opencode', 'plugins') : join(configHome(options.env ?? process.env), 'opencode', 'plugins');
  const path = join(dir, LOADER_NAME);
  let replaced: InstallResult['replaced'] = 'none';
  const existing = lstatOrNull(path);
  if (existing) {
    if (!existing.isFile()) throw new SkError('usage', `${path} exists and is not a regular file: nothing was written`);
    const ours = readFileSync(path, 'utf8').startsWith(LOADER_MARK);
    if (!ours && !options.force) throw new SkError('usage', `${path} exists and was not written by session-keeper: nothing was written (--force replaces it)`);
    replaced = ours ? 'ours' : 'foreign';
  }
  const entryUrl = pathToFileURL(PLUGIN_ENTRY).href;
  mkdirSync(dir, { recursive: true });
  // Not *.js or *.ts: OpenCode loads every such file in the folder, a half-written one included.
  const temp = join(dir, `.${LOADER_NAME}.${process.pid}.tmp`);
  const fd = openSync(temp, 'w', 0o644);
  try {
    writeSync(fd, loaderText(entryUrl, options.node));
    fsyncSync(fd);
    closeSync(fd);
    renameSync(temp, path);
  } catch (error) {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
    rmSync(temp, { force: true });
    throw error;
  }
  const configEntry = options.node === undefined ? JSON.stringify(entryUrl) : `[${JSON.stringify(entryUrl)}, { "node": ${JSON.stringify(options.node)} }]`;
  return { path, replaced, entry: PLUGIN_ENTRY, configEntry };
}

function lstatOrNull(path: string): ReturnType<typeof lstatSync> | null {
  try {
    return lstatSync(path);
  } catch {
    return null;
  }
}
