/**
 * Everything OpenCode keeps in its data folder, as plain data: the places `stats` accounts for
 * (what each is, what removing it costs, which clean-up frees part of it), the clean-up plan
 * shapes, and what was seen of other processes using the database. No I/O here.
 */
/** The places of the data folder, in the order `stats` lists them. */
export const PLACE_NAMES = [
  'database',
  'other-databases',
  'snapshot',
  'session-diffs',
  'legacy-json',
  'storage-other',
  'tool-output',
  'log',
  'repos',
  'archive',
  'other',
  'desktop-state',
] as const;
export type PlaceName = (typeof PLACE_NAMES)[number];

/** One place of the data folder as `stats` reports it (api.ts holds its schema for the `--json` interface). */
export interface FolderPlace {
  name: PlaceName;
  /** The file or folder (for places made of several, the folder that holds them). */
  path: string;
  /** Bytes as `du -sb` counts them: every file, folder and link, hard links once. */
  bytes: number;
  /** Files, folders and links counted. */
  entries: number;
  /** Bytes a session-keeper command frees now without losing anything (0 when none). */
  reclaimable: number;
  /** The command that frees `reclaimable`, or null. */
  reclaim: string | null;
  what: string;
  /** What removing the rest would cost. */
  cost: string;
  /** False for a place outside the data folder (OpenCode Desktop's own state). */
  inDataFolder: boolean;
  /** For OpenCode Desktop's state file: bytes of its largest keys (prompt history holds attachments again). */
  keys?: { key: string; bytes: number }[] | undefined;
}

interface PlaceText {
  what: string;
  cost: string;
  reclaim: string | null;
}

export const PLACE_TEXT: Record<PlaceName, PlaceText> = {
  database: {
    what: "OpenCode's session database (with its -wal and -shm files)",
    cost: "every session lives here (shrink it with retention, delete or compact); its free pages come back with 'session-keeper vacuum', run with OpenCode closed",
    reclaim: 'session-keeper vacuum',
  },
  'other-databases': {
    what: "databases of OpenCode's other release channels (opencode-<channel>.db)",
    cost: 'the sessions of those channels',
    reclaim: null,
  },
  snapshot: {
    what: 'a git repository per project and worktree, for undo/revert',
    cost: "undo/revert for the project's sessions; leftover tmp_pack files older than a day: nothing",
    reclaim: 'session-keeper clean --snapshot-temp',
  },
  'session-diffs': {
    what: 'the files each session changed, in full',
    cost: "the session's view of what it changed; a file whose session is gone (OpenCode's delete leaves it): nothing",
    reclaim: 'session-keeper clean --diffs',
  },
  'legacy-json': {
    what: 'storage/session, message, part, project, todo, permission, session_share: the JSON tree from before OpenCode moved to SQLite',
    cost: 'nothing once every session in it is in the database (it is archived first); OpenCode reads it only to fill a new, empty database',
    reclaim: 'session-keeper clean --legacy-json',
  },
  'storage-other': {
    what: 'the rest of storage/ (OpenCode\'s migration marker)',
    cost: 'OpenCode reads the marker at start: keep it',
    reclaim: null,
  },
  'tool-output': {
    what: 'full outputs of tool calls the model saw truncated',
    cost: 'OpenCode removes them after 7 days itself; until then the model may read them again',
    reclaim: null,
  },
  log: {
    what: "OpenCode's log files",
    cost: 'diagnostics only',
    reclaim: null,
  },
  repos: {
    what: 'clones of repositories the agent fetched',
    cost: 'OpenCode clones them again when asked',
    reclaim: null,
  },
  archive: {
    what: "session-keeper's archives of removed sessions",
    cost: 'the way back for the sessions each one holds',
    reclaim: null,
  },
  other: {
    what: 'everything else in the data folder (auth, binaries, locks, folders themselves)',
    cost: 'OpenCode needs most of it: keep it',
    reclaim: null,
  },
  'desktop-state': {
    what: "OpenCode Desktop's UI state (opencode.global.dat); its prompt history keeps attached files as base64 again",
    cost: "OpenCode Desktop's prompt history (clear it in the app); session-keeper never changes this file",
    reclaim: null,
  },
};

/** The clean-ups of what nothing references. */
export const CLEAN_TARGETS = ['diffs', 'snapshot-temp', 'legacy-json'] as const;
export type CleanTarget = (typeof CLEAN_TARGETS)[number];

/** Leftover pack files younger than this may belong to a git process still running. */
export const SNAPSHOT_TEMP_MIN_AGE_MS = 24 * 60 * 60 * 1000;

export interface CleanFile {
  path: string;
  bytes: number;
  /** mtime in ms when planned: a file that changed since is left alone. */
  mtimeMs: number;
}

export interface FileSet {
  files: CleanFile[];
  bytes: number;
}

export interface LegacyJsonSurvey {
  /** storage/ beside the database. */
  root: string;
  present: boolean;
  sessions: number;
  messages: number;
  parts: number;
  /** Every file and folder of the tree, and their bytes (du -sb). */
  entries: number;
  bytes: number;
  /** Files of the tree that no session file leads to (the migration skipped them too). */
  unowned: number;
  /** What the tree has that no OpenCode database in the folder has: by kind, the first few ids. */
  missing: { sessions: string[]; messages: string[]; parts: string[]; count: number };
  /** True when every session of the tree, with its messages and parts, is in a database. */
  ready: boolean;
}

export interface CleanPlan {
  targets: CleanTarget[];
  diffs: FileSet | null;
  snapshotTemp: (FileSet & { heldOpen: number; younger: number }) | null;
  legacyJson: LegacyJsonSurvey | null;
  /** Bytes the plan frees (the legacy tree counts only when ready). */
  freesBytes: number;
}

export function planFrees(plan: Omit<CleanPlan, 'freesBytes'>): number {
  return (plan.diffs?.bytes ?? 0) + (plan.snapshotTemp?.bytes ?? 0) + (plan.legacyJson?.ready ? plan.legacyJson.bytes : 0);
}

export interface CleanResult {
  /** The verified archive of what was removed (orphan diffs, the legacy tree), or null. */
  archive: string | null;
  removed: { diffs: number; snapshotTemp: number; legacyJson: number };
  /** Files left because they changed (or came to be referenced) after the plan. */
  skipped: number;
  freedBytes: number;
}

/** A process other than this one that has the database (or its -wal/-shm) open. */
export interface HoldingProcess {
  pid: number;
  /** The program, e.g. `opencode` or `node`. */
  name: string;
  /** Its command line, cut short. */
  command: string;
  isOpenCode: boolean;
}

export interface WriterPresence {
  processes: HoldingProcess[];
  /** Another connection committed while we watched (PRAGMA data_version moved, or the WAL grew). */
  committing: boolean;
  /** Whether /proc could be read (Linux); elsewhere only commits seen while watching count. */
  processesChecked: boolean;
  watchedMs: number;
}

export const isWriterPresent = (presence: WriterPresence): boolean => presence.committing || presence.processes.length > 0;

/** One line naming who uses the database, or null when nobody was seen. */
export function describeWriters(presence: WriterPresence, db: string): string | null {
  if (!isWriterPresent(presence)) return null;
  const opencode = presence.processes.filter((p) => p.isOpenCode);
  const others = presence.processes.filter((p) => !p.isOpenCode);
  const named = (list: HoldingProcess[]): string => list.slice(0, 3).map((p) => `pid ${p.pid} ${p.name}`).join(', ') + (list.length > 3 ? ` and ${list.length - 3} more` : '');
  const who = [opencode.length ? `OpenCode (${named(opencode)})` : '', others.length ? `another process (${named(others)})` : ''].filter(Boolean).join(' and ');
  if (who) return `${who} ${opencode.length && others.length ? 'have' : 'has'} ${db} open${presence.committing ? ' and is writing to it' : ''}`;
  return `another program committed to ${db} while session-keeper watched it for ${presence.watchedMs} ms (OpenCode running?)`;
}
