/** Where OpenCode and session-keeper keep things by default (XDG), from an environment. */
import { homedir } from 'node:os';
import { join } from 'node:path';

type Env = Record<string, string | undefined>;

const xdg = (env: Env, name: string, fallback: string[]): string =>
  env[name] && env[name] !== '' ? (env[name] as string) : join(env['HOME'] ?? homedir(), ...fallback);

export const dataHome = (env: Env = process.env): string => xdg(env, 'XDG_DATA_HOME', ['.local', 'share']);
export const configHome = (env: Env = process.env): string => xdg(env, 'XDG_CONFIG_HOME', ['.config']);
export const cacheHome = (env: Env = process.env): string => xdg(env, 'XDG_CACHE_HOME', ['.cache']);

/** `$OPENCODE_DB`, else `$XDG_DATA_HOME/opencode/opencode.db`. */
export const defaultDbPath = (env: Env = process.env): string =>
  env['OPENCODE_DB'] && env['OPENCODE_DB'] !== '' ? env['OPENCODE_DB'] : join(dataHome(env), 'opencode', 'opencode.db');

export const defaultCacheDir = (env: Env = process.env): string => join(cacheHome(env), 'session-keeper', 'attachments');
export const defaultArchiveDir = (env: Env = process.env): string => join(dataHome(env), 'opencode', 'archive');
