/**
 * The `session` block of OpenCode's config (DESIGN.md section 4): schema, defaults, one-line errors.
 * Pure: no file I/O here (that is src/main/config-file.ts); the environment only supplies defaults.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { SkError, redactSecrets } from './errors.js';
import { STORAGE_KINDS } from './storage.js';
import { ORDER_BY, sessionDefaults, type OrderBy } from './session-defaults.js';

type Env = Record<string, string | undefined>;

export { ORDER_BY, type OrderBy };

/** Keys whose values may carry a password: their values never appear in an error. */
const SECRET_KEYS: ReadonlySet<string> = new Set(['connectionString', 'offload']);

// Zero is rejected for every limit: "0 means unlimited" and "0 means evict everything" are both common readings.
const positiveNumber = z
  .number({ error: 'expected a positive number' })
  .positive({ error: 'expected a positive number' });
const positiveInt = z
  .number({ error: 'expected a whole number of at least 1' })
  .int({ error: 'expected a whole number of at least 1' })
  .min(1, { error: 'expected a whole number of at least 1' });
const nonEmpty = (what: string) => z.string({ error: `expected ${what}` }).min(1, { error: `expected ${what}` });

/** `~/x` in a JSON file means the home folder, as it does in a shell. */
const expandHome = (path: string, env: Env): string =>
  path === '~' || path.startsWith('~/') ? join(env['HOME'] ?? homedir(), path.slice(1)) : path;

/** The schema with its environment-dependent default (`archiveDir`) taken from `env`. */
export function sessionConfigSchemaFor(env: Env = process.env) {
  const defaults = sessionDefaults(env);
  return z
    .object({
      maxSizeMB: positiveNumber.optional(),
      maxAgeDays: positiveNumber.optional(),
      maxSessions: positiveInt.optional(),
      orderBy: z.enum(ORDER_BY, { error: 'expected "created" or "updated"' }).default(defaults.orderBy),
      keep: z
        .array(nonEmpty('a session id (a string)'), { error: 'expected a list of session ids' })
        .default(() => sessionDefaults(env).keep),
      archive: z.boolean({ error: 'expected true or false' }).default(defaults.archive),
      archiveDir: nonEmpty('a folder path')
        .transform((dir) => expandHome(dir, env))
        .default(() => sessionDefaults(env).archiveDir),
      warnAtMB: z
        .array(positiveNumber, { error: 'expected a list of sizes in MB' })
        .default(() => sessionDefaults(env).warnAtMB),
      storage: z.enum(STORAGE_KINDS, { error: 'expected one of "sqlite", "postgres", "mysql", "sqlserver"' }).default(defaults.storage),
      connectionString: nonEmpty('a connection string').optional(),
      offload: nonEmpty('a connection string').optional(),
      // Opt-in: it rewrites OpenCode's event log (only snapshots a newer, equal one supersedes).
      compactEvents: z.boolean({ error: 'expected true or false' }).optional(),
    })
    .superRefine((config, ctx) => {
      if (config.storage !== 'sqlite' && config.connectionString === undefined) {
        ctx.addIssue({ code: 'custom', path: ['connectionString'], message: `required when storage is "${config.storage}"` });
      }
    });
}

/** The `session` block; unknown keys inside it are accepted and dropped from the result (the file keeps them). */
export const sessionConfigSchema = sessionConfigSchemaFor();

/** The resolved configuration: every default filled in. */
export type SessionConfig = z.output<typeof sessionConfigSchema>;
/** What a user may write (and what `saveSessionBlock` accepts): every key optional. */
export type SessionConfigInput = z.input<typeof sessionConfigSchema>;
/** Command-line flags: a key left undefined means "not given", so the file's value stays. */
export type SessionOverrides = { [K in keyof SessionConfig]?: SessionConfig[K] | undefined };

export const SESSION_KEYS: readonly string[] = Object.keys(sessionConfigSchema.shape);

/** A validation failure, before it is worded: where (`session.maxSizeMB`) and what. */
export interface ConfigIssue {
  path: (string | number)[];
  message: string;
}

type Checked = { ok: true; config: SessionConfig } | { ok: false; issues: ConfigIssue[] };

/** Validates a `session` block (`undefined` when the file has none) without throwing. */
export function checkSessionConfig(raw: unknown, env: Env = process.env): Checked {
  const result = sessionConfigSchemaFor(env).safeParse(raw === undefined ? {} : raw);
  if (result.success) return { ok: true, config: result.data };
  return {
    ok: false,
    issues: result.error.issues.map((issue) => ({
      path: issue.path.filter((p): p is string | number => typeof p !== 'symbol'),
      message: issue.path.length === 0 ? 'expected an object' : issue.message,
    })),
  };
}

/** `"big"`, `-5`, `an object`: the offending value as a user would recognise it, short and password-free. */
function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (value !== null && typeof value === 'object') return 'an object';
  const text = typeof value === 'string' ? JSON.stringify(value) : String(value);
  return redactSecrets(text.length > 60 ? `${text.slice(0, 57)}...` : text);
}

function valueAt(raw: unknown, path: readonly (string | number)[]): unknown {
  let value = raw;
  for (const key of path) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<string | number, unknown>)[key];
  }
  return value;
}

/** `session.keep[2]` */
export function issuePath(prefix: string, path: readonly (string | number)[]): string {
  return path.reduce<string>((out, p) => (typeof p === 'number' ? `${out}[${p}]` : out ? `${out}.${p}` : p), prefix);
}

/**
 * One line: `session.maxSizeMB: expected a positive number, got "big"`. The value is left out for
 * secret keys and missing keys, and any URL password in it is masked.
 */
export function describeIssue(raw: unknown, issue: ConfigIssue, prefix = 'session'): string {
  const where = issuePath(prefix, issue.path);
  const value = valueAt(raw, issue.path);
  const secret = issue.path.some((p) => typeof p === 'string' && SECRET_KEYS.has(p));
  const got = value === undefined || secret || !issue.message.startsWith('expected') ? '' : `, got ${describeValue(value)}`;
  return `${where}: ${issue.message}${got}`;
}

function issuesError(label: string, raw: unknown, issues: readonly ConfigIssue[], prefix: string): SkError {
  const first = issues[0];
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
  const text = first ? describeIssue(raw, first, prefix) : 'invalid';
  return new SkError('config', redactSecrets(`${label}: ${text}${more}`));
}

/**
 * Validates the `session` block read from `source` (a file path, for the message) and fills in defaults.
 * Throws SkError('config') naming the key: `config /p/opencode.json: session.maxSizeMB: expected ...`.
 */
export function parseSessionConfig(raw: unknown, source: string, env: Env = process.env): SessionConfig {
  const checked = checkSessionConfig(raw, env);
  if (checked.ok) return checked.config;
  throw issuesError(`config ${source}`, raw, checked.issues, 'session');
}

/** Keys inside `session` this version does not know (typos, most likely): worth a warning, never an error. */
export function unknownSessionKeys(raw: unknown): string[] {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return [];
  return Object.keys(raw).filter((key) => !SESSION_KEYS.includes(key));
}

/**
 * Command-line flags over the file: every defined override replaces the file's value (lists are
 * replaced, not appended). The result is validated again, so a bad flag fails like a bad file would.
 */
export function mergeOverrides(config: SessionConfig, overrides: SessionOverrides, env: Env = process.env): SessionConfig {
  const merged: Record<string, unknown> = { ...config };
  for (const [key, value] of Object.entries(overrides)) if (value !== undefined) merged[key] = value;
  const checked = checkSessionConfig(merged, env);
  if (checked.ok) return checked.config;
  throw issuesError('command line', merged, checked.issues, '');
}

/** True when some limit is set: without one, retention evicts nothing (today's behaviour). */
export function hasRetentionPolicy(config: Pick<SessionConfig, 'maxSizeMB' | 'maxAgeDays' | 'maxSessions'>): boolean {
  return config.maxSizeMB !== undefined || config.maxAgeDays !== undefined || config.maxSessions !== undefined;
}
