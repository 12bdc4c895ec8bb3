/**
 * The `session` settings when no config sets any: the defaults config.ts's schema fills in, kept
 * here without the schema so a command that finds no config file never loads the validator.
 */
import type { StorageKind } from './storage.js';
import { defaultArchiveDir } from './paths.js';
import { DEFAULT_WARN_AT_MB } from './thresholds.js';

type Env = Record<string, string | undefined>;

export const ORDER_BY = ['created', 'updated'] as const;
export type OrderBy = (typeof ORDER_BY)[number];

/** The keys that have a default (a `SessionConfig` with no limit, no server, no offload). */
export interface SessionDefaults {
  orderBy: OrderBy;
  keep: string[];
  archive: boolean;
  archiveDir: string;
  warnAtMB: number[];
  storage: StorageKind;
}

/** Every default, fresh lists each call (a caller may change them). */
export function sessionDefaults(env: Env = process.env): SessionDefaults {
  return {
    orderBy: 'created',
    keep: [],
    archive: true,
    archiveDir: defaultArchiveDir(env),
    warnAtMB: [...DEFAULT_WARN_AT_MB],
    storage: 'sqlite',
  };
}
