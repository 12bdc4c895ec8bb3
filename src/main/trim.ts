/**
 * `trim`: shrinking sessions without deleting them. Sessions are chosen by ids or selectors, the
 * plan is shown (a dry run by default), and applying it archives the rows about to be trimmed
 * first (named per session in the archive, so `restore` puts exactly those back), copies trimmed
 * attachments into the attachment cache, trims, and reclaims the space.
 */
import { rmSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { SkError } from '../core/errors.js';
import { selectorNarrows, type SessionSelector } from '../core/selectors.js';
import { attachmentPlaceholder, trimmedRowsBySession, type TrimMode, type TrimOutcome, type TrimPlan } from '../core/trim.js';
import { writeArchive } from '../store/archive/archive-write.js';
import { fileBytes, openReader, openWriter } from '../store/open-store.js';
import type { SessionReader } from '../store/reader.js';
import { archiveName } from './retention.js';

export interface TrimRunOptions {
  db: string;
  cacheDir: string;
  modes: TrimMode[];
  /** Explicit sessions (each with its child sessions); else the selector chooses. */
  sessions?: readonly string[];
  selector: SessionSelector;
  /** Attachments: only those older than this. */
  attachmentsOlderThanMs?: number;
  archive: boolean;
  archiveDir: string;
  now?: number;
  /** OpenCode is using the file: the VACUUM after the trim waits. */
  besideWriter?: boolean;
  /** The plan the user saw: only its rows are trimmed (one changed or added since waits for the next run). */
  seen?: TrimPlan;
}

/** The sessions a trim looks into: the given ones or the selected ones, each with its child sessions. */
async function chosenSessions(reader: SessionReader, options: TrimRunOptions, now: number): Promise<string[]> {
  if (options.sessions && options.sessions.length > 0) {
    const missing = await reader.missingSessions(options.sessions);
    if (missing[0] !== undefined) throw new SkError('not-found', `no session ${missing[0]} in ${options.db}`);
    if (selectorNarrows(options.selector)) throw new SkError('usage', 'give session ids or selectors, not both');
    return reader.sessionTrees(options.sessions);
  }
  const selected = await reader.selectSessions(options.selector, now);
  return reader.sessionTrees(selected.map((s) => s.id));
}

async function planWith(reader: SessionReader, options: TrimRunOptions, now: number): Promise<TrimPlan> {
  if (options.modes.length === 0) throw new SkError('usage', 'trim what? give --reasoning, --compacted-outputs and/or --attachments');
  const sessions = await chosenSessions(reader, options, now);
  return reader.trimPlan({
    sessions,
    modes: options.modes,
    ...(options.attachmentsOlderThanMs !== undefined ? { attachmentsBefore: now - options.attachmentsOlderThanMs } : {}),
  });
}

/** The plan, changing nothing. */
export async function planTrimRun(options: TrimRunOptions): Promise<TrimPlan> {
  const reader = await openReader(options.db);
  try {
    return await planWith(reader, options, options.now ?? Date.now());
  } finally {
    await reader.close();
  }
}

/** Archives (verified), keeps attachments in the cache, trims, reclaims. */
export async function applyTrimRun(options: TrimRunOptions): Promise<TrimOutcome> {
  const now = options.now ?? Date.now();
  const bytesBefore = fileBytes(options.db);
  // The writer first: it takes the run lock, so nothing else changes the file between plan and trim.
  const writer = await openWriter(options.db);
  try {
    const reader = await openReader(options.db);
    try {
      await writer.assertIntact();
      // The plan the user saw is applied as it is: each row is archived as it is now and trimmed
      // only while its size and time_updated are what the plan says; one added since waits.
      const plan = options.seen ?? (await planWith(reader, options, now));
      const outcome: TrimOutcome = { modes: plan.modes, archive: null, sessions: plan.sessions, rows: {}, changed: 0, freesBytes: plan.freesBytes, bytesBefore, bytesAfter: bytesBefore, reclaim: 'none' };
      if (plan.targets.length === 0) return outcome;
      if (options.archive) {
        const path = archiveName(resolve(options.archiveDir), now, 'opencode-trim');
        await writeArchive(reader.exportTrimmedRows(trimmedRowsBySession(plan.targets)), path, { verify: true });
        outcome.archive = path;
      }
      // The originals of trimmed attachments stay readable from the cache too (a session_input
      // prompt carries the same files as its message, which is cached under the message's id).
      for (const target of plan.targets) {
        if (target.mode !== 'attachments' || target.table === 'session_input') continue;
        for (const url of target.urls ?? []) await reader.extractAttachment(`${target.id}.${url.index}`, options.cacheDir);
      }
      const applied = await writer.applyTrim(plan, attachmentPlaceholder(outcome.archive ? basename(outcome.archive) : null));
      outcome.rows = applied.rows;
      outcome.changed = applied.changed;
      // Every row changed since it was planned: the archive holds nothing that left the file.
      if (Object.keys(applied.rows).length === 0 && outcome.archive) {
        rmSync(outcome.archive, { force: true });
        outcome.archive = null;
      }
      const reclaimed = await writer.reclaim({ onlyWhenWorthIt: true, besideWriter: options.besideWriter === true });
      outcome.bytesAfter = reclaimed.bytesAfter;
      outcome.reclaim = reclaimed.mode;
      return outcome;
    } finally {
      await reader.close();
    }
  } finally {
    await writer.close();
  }
}
