/**
 * The config as a command reads it, loaded no further than it must be: the files found, their
 * `session` blocks parsed, and the schema (config-file.ts) loaded only when a block holds settings.
 */
import type { SessionConfig } from '../core/config.js';
import { sessionDefaults } from '../core/session-defaults.js';
import { configFiles, type LoadedConfig, type LoadOptions } from './config-sources.js';

/** The settings of the config sources it was made for, validated (a LoadedConfig each call). */
export type ConfigReader = () => LoadedConfig;

/**
 * `loadConfig(options)` to call later. The files are found and their `session` blocks read now
 * (the JSONC parser only); config-file.ts and its schema load only when some block holds a key to
 * check. With no file, or files without settings, it answers the defaults, which is what
 * `loadConfig` answers then. A file that cannot be read or parsed fails when the reader is called,
 * where `loadConfig` would have failed: a command that never asks for the config never sees it.
 */
export async function configReader(options: LoadOptions = {}): Promise<ConfigReader> {
  const env = options.env ?? process.env;
  const sources = options.path !== undefined ? [{ path: options.path }] : configFiles(env, options.cwd);
  const files = sources.map((s) => s.path);
  const defaults: ConfigReader = () => {
    const config: SessionConfig = sessionDefaults(env);
    return { config, source: files.at(-1) ?? null, sources: files, warnings: [] };
  };
  if (sources.length === 0) return defaults;
  const { sessionBlocks } = await import('./config-text.js');
  let blocks: ReturnType<typeof sessionBlocks>;
  try {
    blocks = sessionBlocks(sources);
  } catch (error) {
    return () => {
      throw error;
    };
  }
  if (blocks.every(({ block }) => block === undefined || Object.keys(block).length === 0)) return defaults;
  const { loadConfig } = await import('./config-file.js');
  return () => loadConfig(options);
}
