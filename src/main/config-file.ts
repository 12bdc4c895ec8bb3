/**
 * Reading and writing the `session` block of OpenCode's config file (JSON or JSONC) without
 * disturbing anything else in it: OpenCode's own keys, the user's comments and formatting.
 */
import { closeSync, existsSync, fsyncSync, lstatSync, mkdirSync, openSync, realpathSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { applyEdits, modify, type FormattingOptions } from 'jsonc-parser';
import { checkSessionConfig, describeIssue, parseSessionConfig, unknownSessionKeys, type SessionConfigInput } from '../core/config.js';
import { SkError, redactSecrets } from '../core/errors.js';
import { configHome } from '../core/paths.js';
import { configFiles, globalConfigFiles, type LoadedConfig, type LoadOptions } from './config-sources.js';
import { parseDocument, readText, sessionBlock, sessionBlocks } from './config-text.js';

export { configFiles, globalConfigFiles, type ConfigSource, type LoadedConfig, type LoadOptions } from './config-sources.js';

type Env = Record<string, string | undefined>;

/** The global config file that wins (`opencode.jsonc` when both exist), or null when there is none. */
export function findGlobalConfig(env: Env = process.env): string | null {
  return globalConfigFiles(env).at(-1) ?? null;
}

/** Where settings are saved: the winning global file, else a new `$XDG_CONFIG_HOME/opencode/opencode.json`. */
export function configSaveTarget(env: Env = process.env): string {
  return findGlobalConfig(env) ?? join(configHome(env), 'opencode', 'opencode.json');
}

/**
 * The `session` settings: from `options.path` alone, else merged from the global files. No global
 * file means defaults (source null); an unreadable or invalid file throws SkError('config').
 */
export function loadConfig(options: LoadOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const sources = options.path !== undefined ? [{ path: options.path }] : configFiles(env, options.cwd);
  const files = sources.map((s) => s.path);
  const merged: Record<string, unknown> = {};
  const origin = new Map<string, string>();
  const warnings: string[] = [];
  for (const { file, block } of sessionBlocks(sources)) {
    if (!block) continue;
    for (const key of unknownSessionKeys(block)) warnings.push(`config ${file}: session.${key}: unknown key, ignored`);
    for (const [key, value] of Object.entries(block)) {
      merged[key] = value;
      origin.set(key, file);
    }
  }
  const source = files.at(-1) ?? null;
  const checked = checkSessionConfig(merged, env);
  if (!checked.ok) {
    const first = checked.issues[0];
    const key = first?.path[0];
    // Name the file the bad value came from; a missing key (connectionString) is the winning file's to fix.
    const file = (typeof key === 'string' ? origin.get(key) : undefined) ?? source ?? 'defaults';
    const more = checked.issues.length > 1 ? ` (and ${checked.issues.length - 1} more)` : '';
    throw new SkError('config', redactSecrets(`config ${file}: ${first ? describeIssue(merged, first) : 'invalid'}${more}`));
  }
  return { config: checked.config, source, sources: files, warnings };
}

// Match the file's own indentation and line endings, so an edit looks as if the user made it.
function formattingOf(text: string): FormattingOptions {
  const indent = /^([ \t]+)\S/m.exec(text)?.[1] ?? '  ';
  return {
    insertSpaces: !indent.startsWith('\t'),
    tabSize: indent.startsWith('\t') ? 1 : indent.length,
    eol: text.includes('\r\n') ? '\r\n' : '\n',
  };
}

/** Temp file beside the target, fsynced, renamed over it: a crash leaves the old file or the new one. */
function writeAtomically(file: string, text: string): void {
  // Write through a symlink (dotfiles repos) rather than replacing the link with a plain file.
  const target = existsSync(file) && lstatSync(file).isSymbolicLink() ? realpathSync(file) : file;
  const dir = dirname(target);
  mkdirSync(dir, { recursive: true });
  // The file may hold a connection string with a password: new files are private; existing ones keep their mode.
  const mode = existsSync(target) ? statSync(target).mode & 0o7777 : 0o600;
  const temp = join(dir, `.${basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const fd = openSync(temp, 'wx', mode);
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, target);
  } catch (error) {
    rmSync(temp, { force: true });
    const code = (error as NodeJS.ErrnoException).code;
    throw new SkError('config', `config ${file}: cannot write (${code ?? (error instanceof Error ? error.message : 'error')})`);
  }
  try {
    const dirFd = openSync(dir, 'r');
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  } catch {
    // Some filesystems refuse fsync on a folder; the rename itself already happened.
  }
}

/**
 * Sets keys inside `session` and nothing else: each key given is written (a key given as `undefined`
 * is removed), keys not given, unknown keys, comments and formatting stay as they were. Creates the
 * file and its folder when missing. The result is validated first: an invalid value writes nothing.
 */
export function saveSessionBlock(path: string, session: Partial<SessionConfigInput>): void {
  const original = existsSync(path) ? readText(path) : '';
  let text = original;
  const root = parseDocument(path, text);
  sessionBlock(path, root);

  const formattingOptions = formattingOf(text);
  for (const key of Object.keys(session)) {
    const value: unknown = session[key as keyof SessionConfigInput];
    text = applyEdits(text, modify(text, ['session', key], value, { formattingOptions }));
  }
  if (original.trim() === '') text += formattingOptions.eol ?? '\n';

  parseSessionConfig(sessionBlock(path, parseDocument(path, text)), path);
  writeAtomically(path, text);
}
