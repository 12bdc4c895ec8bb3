/**
 * Trimming sessions instead of deleting them: what each mode removes, the placeholder an
 * attachment becomes, and the shapes of a trim plan and its outcome. Pure; the store floor finds
 * and changes the rows.
 */

export const TRIM_MODES = ['reasoning', 'compacted-outputs', 'attachments'] as const;
export type TrimMode = (typeof TRIM_MODES)[number];

/** Tables a trim changes rows of; the archive of a trim lists those rows per session under these names. */
export const TRIM_TABLES = ['part', 'session_message', 'session_input'] as const;
export type TrimTable = (typeof TRIM_TABLES)[number];

/** What OpenCode itself sends the model in place of a compacted tool output. */
export const COMPACTED_OUTPUT = '[Old tool result content cleared]';

/** 24 bytes, so its base64 (32 characters) starts every placeholder the same way. */
const PLACEHOLDER_MARK = '[session-keeper trimmed]';
export const PLACEHOLDER_MIME = 'text/plain';
export const PLACEHOLDER_PREFIX = `data:${PLACEHOLDER_MIME};base64,${Buffer.from(PLACEHOLDER_MARK).toString('base64')}`;
/** A data: URL this short is not worth replacing (the placeholder is about as long). */
export const MIN_TRIMMED_URL_BYTES = 1024;

/**
 * The small data: URL an attachment becomes: a plain-text file saying where the original went.
 * OpenCode shows a text/plain file part as a file and leaves it out of what it sends the model.
 */
export function attachmentPlaceholder(archiveName: string | null): string {
  const text = archiveName
    ? `${PLACEHOLDER_MARK} The original attachment was moved to the archive ${archiveName}; \`session-keeper restore\` of that archive puts it back.\n`
    : `${PLACEHOLDER_MARK} The original attachment was removed (archiving was off).\n`;
  return `data:${PLACEHOLDER_MIME};base64,${Buffer.from(text, 'utf8').toString('base64')}`;
}

/** One row a trim changes: deleted (a reasoning part) or rewritten in place. */
export interface TrimTarget {
  table: TrimTable;
  id: string;
  sessionId: string;
  mode: TrimMode;
  action: 'delete' | 'rewrite';
  /** The row's `time_updated` when planned (null for tables without one): a row changed since is left alone. */
  timeUpdated: number | null;
  /** The row's payload bytes when planned. */
  bytes: number;
  /** The value bytes this trim removes from it (about what it frees). */
  freesBytes: number;
  /** Attachments: JSON paths of the data: URLs replaced, and their 0-based attachment index in the row. */
  urls?: { path: string; index: number }[];
  /**
   * Attachments of a row too big for SQLite's JSON functions: the byte ranges of its data: URLs
   * (inside their JSON strings), cut out by streaming the value instead of parsing it.
   */
  cuts?: { start: number; end: number; index: number }[];
}

export interface TrimPlan {
  modes: TrimMode[];
  /** Sessions with something to trim, in the order they were selected. */
  sessions: string[];
  targets: TrimTarget[];
  freesBytes: number;
  byMode: { mode: TrimMode; rows: number; bytes: number }[];
}

/** What `trim --apply` did. */
export interface TrimOutcome {
  modes: TrimMode[];
  archive: string | null;
  sessions: string[];
  /** Rows changed or removed, per table. */
  rows: Record<string, number>;
  /** Rows left alone because they changed after they were archived. */
  changed: number;
  freesBytes: number;
  bytesBefore: number;
  bytesAfter: number;
  reclaim: string;
}

/** The rows an archive's session had trimmed, by table: restore puts exactly these back (checked by archive-format.ts). */
export type TrimmedRows = Partial<Record<TrimTable, string[]>>;

export function summarizeTargets(modes: TrimMode[], sessions: string[], targets: TrimTarget[]): TrimPlan {
  const byMode = modes.map((mode) => {
    const mine = targets.filter((t) => t.mode === mode);
    return { mode, rows: mine.length, bytes: mine.reduce((n, t) => n + t.freesBytes, 0) };
  });
  return { modes, sessions, targets, freesBytes: targets.reduce((n, t) => n + t.freesBytes, 0), byMode };
}

/** Per session, the rows of each table a plan changes (what the archive records). */
export function trimmedRowsBySession(targets: readonly TrimTarget[]): Map<string, TrimmedRows> {
  const out = new Map<string, TrimmedRows>();
  for (const t of targets) {
    const rows: TrimmedRows = out.get(t.sessionId) ?? {};
    out.set(t.sessionId, rows);
    const list = (rows[t.table] ??= []);
    if (!list.includes(t.id)) list.push(t.id);
  }
  return out;
}
