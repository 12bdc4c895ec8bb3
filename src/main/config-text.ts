/**
 * The text of OpenCode's config files: read, parsed as JSONC, and their `session` blocks taken out,
 * with one-line errors (line:column for a syntax error). No schema here: config-file.ts validates.
 */
import { readFileSync } from 'node:fs';
import { parse, printParseErrorCode, type ParseError } from 'jsonc-parser';
import { redactSecrets, SkError } from '../core/errors.js';
import type { ConfigSource } from './config-sources.js';

// 1-based line:column, as editors show them.
function position(text: string, offset: number): string {
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) {
    line += 1;
    lineStart = i + 1;
  }
  return `${line}:${offset - lineStart + 1}`;
}

const words = (code: string): string => code.replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();

/** The document's root object, or a one-line SkError with line:column for the first syntax error. */
export function parseDocument(file: string, text: string): Record<string, unknown> {
  if (text.trim() === '') return {};
  const errors: ParseError[] = [];
  const root: unknown = parse(text, errors, { allowTrailingComma: true, disallowComments: false, allowEmptyContent: true });
  const first = errors[0];
  if (first) {
    throw new SkError('config', `config ${file}:${position(text, first.offset)}: syntax error: ${words(printParseErrorCode(first.error))}`);
  }
  if (root === null || typeof root !== 'object' || Array.isArray(root)) {
    throw new SkError('config', `config ${file}: expected a JSON object at the top level`);
  }
  return root as Record<string, unknown>;
}

export function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new SkError('config', `config ${file}: file not found`);
    if (code === 'EISDIR') throw new SkError('config', `config ${file}: is a folder, not a file`);
    throw new SkError('config', `config ${file}: cannot read (${code ?? 'error'})`);
  }
}

export function sessionBlock(file: string, root: Record<string, unknown>): Record<string, unknown> | undefined {
  const block = root['session'];
  if (block === undefined) return undefined;
  if (block === null || typeof block !== 'object' || Array.isArray(block)) {
    throw new SkError('config', redactSecrets(`config ${file}: session: expected an object, got ${JSON.stringify(block)}`));
  }
  return block as Record<string, unknown>;
}

/** Each source's `session` block in merge order (undefined where it has none); an unreadable or malformed file throws SkError('config'). */
export function sessionBlocks(sources: readonly ConfigSource[]): { file: string; block: Record<string, unknown> | undefined }[] {
  return sources.map(({ path: file, text }) => ({ file, block: sessionBlock(file, parseDocument(file, text ?? readText(file))) }));
}
