/** Every failure a user can cause or meet ends as one of these: a code for programs, one line for people. */
export type SkErrorCode =
  | 'usage'
  | 'not-found'
  | 'not-sqlite'
  | 'truncated'
  | 'corrupt'
  | 'foreign-schema'
  | 'unsupported-schema'
  | 'locked'
  | 'read-only'
  | 'disk-full'
  | 'too-big'
  | 'bad-part'
  | 'bad-attachment'
  | 'config'
  | 'archive'
  | 'connection'
  | 'internal';

export class SkError extends Error {
  override readonly name = 'SkError';
  constructor(
    readonly code: SkErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Connection strings may carry passwords; nothing we print may. */
export function redactSecrets(text: string): string {
  return text
    .replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)[^@\s]*@/gi, '$1***@')
    .replace(/\b(password|pwd)=([^;&\s]*)/gi, '$1=***');
}

/** One line, no secrets: what the CLI prints and what crosses a process boundary. */
export function oneLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return redactSecrets(text.split('\n')[0] ?? text).trim() || 'unknown error';
}
