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
  /** The mirror left sessions alone that both sides changed (sync exits non-zero). */
  | 'conflict'
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
  // Greedy up to the last @ of the address: a password with an @ or / of its own, not URL-encoded, is masked whole.
  return text
    .replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)\S*@/gi, '$1***@')
    .replace(/\b(password|pwd)=([^;&\s]*)/gi, '$1=***');
}

interface IssueList {
  issues: { path: PropertyKey[]; message: string }[];
}

/** A zod error's message is a JSON dump of its issues: the first one, in words, reads better. */
function validationLine(error: Error): string | null {
  const issues = (error as Error & Partial<IssueList>).issues;
  if (error.name !== 'ZodError' || !Array.isArray(issues) || issues.length === 0) return null;
  const first = issues[0] as IssueList['issues'][number];
  const where = first.path.filter((p) => typeof p !== 'symbol').join('.');
  return `${where ? `${where}: ` : ''}${first.message.replace(/^Invalid input: /, '')}${issues.length > 1 ? ` (and ${issues.length - 1} more)` : ''}`;
}

/** One line, no secrets: what the CLI prints and what crosses a process boundary. */
export function oneLine(error: unknown): string {
  const text = error instanceof Error ? (validationLine(error) ?? error.message) : String(error);
  return redactSecrets(text.split('\n')[0] ?? text).trim() || 'unknown error';
}
