/**
 * Which config files OpenCode would read, found without reading them (config-reader.ts decides
 * whether the schema must load; config-file.ts loads and validates).
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { SessionConfig } from '../core/config.js';
import { configHome } from '../core/paths.js';

type Env = Record<string, string | undefined>;

/** One config to read: a file, or inline text (`$OPENCODE_CONFIG_CONTENT`). */
export interface ConfigSource {
  path: string;
  text?: string;
}

/**
 * The global config files that exist, in the order OpenCode merges them: `opencode.json`, then
 * `opencode.jsonc`. OpenCode deep-merges them with the later file winning, so when both exist a key
 * in `opencode.jsonc` overrides the same key in `opencode.json`; we do the same, key by key in `session`.
 */
export function globalConfigFiles(env: Env = process.env): string[] {
  const dir = join(configHome(env), 'opencode');
  return ['opencode.json', 'opencode.jsonc'].map((name) => join(dir, name)).filter((file) => existsSync(file));
}

/**
 * Every config OpenCode itself would read, in its order (later wins, key by key): the global files,
 * `$OPENCODE_CONFIG`, `opencode.json[c]` in each folder from the nearest git root down to `cwd`, the
 * same inside each `.opencode/`, and `$OPENCODE_CONFIG_CONTENT` (inline JSON, shown as that name).
 */
export function configFiles(env: Env = process.env, cwd: string = process.cwd()): ConfigSource[] {
  const sources: ConfigSource[] = globalConfigFiles(env).map((path) => ({ path }));
  const custom = env['OPENCODE_CONFIG'];
  if (custom) sources.push({ path: resolve(custom) });
  const folders: string[] = [];
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    folders.unshift(dir);
    if (existsSync(join(dir, '.git')) || dirname(dir) === dir) break;
  }
  const names = ['opencode.json', 'opencode.jsonc'];
  for (const dir of folders) for (const name of names) if (existsSync(join(dir, name))) sources.push({ path: join(dir, name) });
  for (const dir of folders) for (const name of names) if (existsSync(join(dir, '.opencode', name))) sources.push({ path: join(dir, '.opencode', name) });
  const inline = env['OPENCODE_CONFIG_CONTENT'];
  if (inline) sources.push({ path: 'OPENCODE_CONFIG_CONTENT', text: inline });
  // A file can come twice (the global folder inside a project): the later place decides.
  const seen = new Set<string>();
  return sources.reverse().filter((s) => (seen.has(s.path) ? false : (seen.add(s.path), true))).reverse();
}

export interface LoadedConfig {
  config: SessionConfig;
  /** The file the settings came from (the winning one when two were merged); null when none exists. */
  source: string | null;
  /** Every file read, in merge order. */
  sources: string[];
  /** One line each, e.g. unknown keys inside `session` (kept in the file, ignored here). */
  warnings: string[];
}

export interface LoadOptions {
  /** `--config PATH`: read this file only. It must exist (a typo should not silently mean "no policy"). */
  path?: string | undefined;
  env?: Env | undefined;
  /** Where project configs are looked for (OpenCode's own rule): default the current folder. */
  cwd?: string | undefined;
}
