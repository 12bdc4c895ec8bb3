/**
 * Session selectors shared by `retention`, `archive`, `delete` and `trim`, and the human sizes
 * and durations they take (`50M`, `1.5G`, `14d`, `12h`). Pure: flags in, a checked selector out;
 * the store floor turns a selector into session ids.
 */
import { z } from 'zod';
import { SkError } from './errors.js';
import { GB, KB, MB } from './bytes.js';

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: KB, kb: KB, kib: KB, m: MB, mb: MB, mib: MB, g: GB, gb: GB, gib: GB, t: GB * 1024, tb: GB * 1024, tib: GB * 1024 };
const HOUR_MS = 60 * 60 * 1000;
const DAY_MS = 24 * HOUR_MS;
const DURATION_UNITS: Record<string, number> = { s: 1000, m: 60 * 1000, min: 60 * 1000, h: HOUR_MS, d: DAY_MS, w: 7 * 24 * HOUR_MS };

/** `50M`, `1.5G`, `700k`, `4096`: bytes, units of 1024 as everywhere in this tool (case-insensitive). */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = match ? SIZE_UNITS[(match[2] ?? '').toLowerCase()] : undefined;
  if (!match || unit === undefined) throw new SkError('usage', `not a size: ${JSON.stringify(text)} (expected e.g. 50M, 1.5G, 700K or a number of bytes)`);
  return Math.round(Number(match[1]) * unit);
}

/** `14d`, `12h`, `2w`, `90m`, `30s`: milliseconds; a bare number is days. */
export function parseDuration(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = match ? DURATION_UNITS[(match[2] || 'd').toLowerCase()] : undefined;
  if (!match || unit === undefined) throw new SkError('usage', `not a duration: ${JSON.stringify(text)} (expected e.g. 14d, 12h, 2w, 90m)`);
  return Math.round(Number(match[1]) * unit);
}

/**
 * Which sessions a command works on. Candidates are root sessions, or with `subagents` child
 * sessions only; `project` narrows them to one project; `keepLatest` spares the N most recently
 * active candidates; then `largerThan` (the session's own bytes, as `list` shows them) and
 * `olderThan` (created before now minus it) narrow what is left.
 */
export const sessionSelectorSchema = z
  .object({
    subagents: z.boolean().default(false),
    largerThan: z.number().int().nonnegative().optional(),
    keepLatest: z.number().int().nonnegative().optional(),
    /** A project id, or a directory (its worktree, or a session's directory). */
    project: z.string().min(1).optional(),
    olderThanMs: z.number().int().nonnegative().optional(),
  })
  .strict();
export type SessionSelector = z.infer<typeof sessionSelectorSchema>;

/** The flags as commander hands them over (strings, unparsed). */
export interface SelectorFlags {
  subagents?: boolean;
  largerThan?: string;
  keepLatest?: string;
  project?: string;
  olderThan?: string;
  olderThanDays?: number;
}

/** Flags -> a checked selector; a bad value is one usage line naming the flag. */
export function selectorFromFlags(flags: SelectorFlags): SessionSelector {
  const keepLatest = flags.keepLatest;
  if (keepLatest !== undefined && !/^\d+$/.test(keepLatest)) throw new SkError('usage', `--keep-latest: expected a whole number, got ${JSON.stringify(keepLatest)}`);
  if (flags.olderThan !== undefined && flags.olderThanDays !== undefined) throw new SkError('usage', '--older-than and --older-than-days say the same thing: give one');
  const olderThanMs = flags.olderThan !== undefined ? parseDuration(flags.olderThan) : flags.olderThanDays !== undefined ? flags.olderThanDays * DAY_MS : undefined;
  return sessionSelectorSchema.parse({
    subagents: flags.subagents ?? false,
    largerThan: flags.largerThan === undefined ? undefined : parseSize(flags.largerThan),
    keepLatest: keepLatest === undefined ? undefined : Number(keepLatest),
    project: flags.project,
    olderThanMs,
  });
}

/** True when the selector narrows anything (a bare command then means "every candidate"). */
export function selectorNarrows(selector: SessionSelector): boolean {
  return selector.subagents || selector.largerThan !== undefined || selector.keepLatest !== undefined || selector.project !== undefined || selector.olderThanMs !== undefined;
}

/** A session a selector chose. */
export interface SelectedSession {
  id: string;
  parentId: string | null;
  title: string;
  projectId: string;
  timeCreated: number;
  /** Latest activity: the session row, or for the newer layout its newest message or prompt. */
  timeActive: number;
  /** Its own rows' bytes, as `list` shows them. */
  bytes: number;
}
