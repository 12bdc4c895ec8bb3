/**
 * What `session-keeper startup --report FILE` leaves for the OpenCode plugin: the size warnings
 * crossed since the last one (each with the one command that fixes it), what retention and
 * compaction did, or the one line saying why the check failed. The plugin validates it with
 * these schemas before it shows anything.
 */
import { z } from 'zod';
import { formatBytes, MB } from './bytes.js';

export const PLUGIN_REPORT_VERSION = 1;

export const pluginWarningSchema = z.object({
  thresholdMB: z.number(),
  message: z.string(),
  /** The one command (or setting) that would bring the database back under the threshold. */
  fix: z.string(),
});
export type PluginWarning = z.infer<typeof pluginWarningSchema>;

export const pluginReportSchema = z.discriminatedUnion('ok', [
  z.object({
    version: z.literal(PLUGIN_REPORT_VERSION),
    ok: z.literal(true),
    mode: z.enum(['startup', 'warnings']),
    db: z.string(),
    bytes: z.number(),
    newWarnings: z.array(pluginWarningSchema),
    /** Lines worth OpenCode's log besides the warnings: what was evicted and where it was archived, compaction. */
    notes: z.array(z.string()),
    evicted: z.number(),
    archive: z.string().nullable(),
    elapsedMs: z.number(),
  }),
  z.object({
    version: z.literal(PLUGIN_REPORT_VERSION),
    ok: z.literal(false),
    mode: z.enum(['startup', 'warnings']),
    /** One line, passwords masked. */
    error: z.string(),
  }),
]);
export type PluginReport = z.infer<typeof pluginReportSchema>;

export interface FixFacts {
  thresholdMB: number;
  fileBytes: number;
  /** Bytes the file would keep after a full VACUUM (pages in use); unknown when the store was not opened. */
  liveBytes: number | null;
}

/** The size a fix aims for: a fifth under the threshold, so the next session does not cross it again at once. */
export function targetMB(thresholdMB: number): number {
  return Math.max(1, Math.floor(thresholdMB * 0.8));
}

/**
 * The one command or setting that would bring the file under `thresholdMB`. When the rows already
 * fit and only free pages keep the file large (deletes beside OpenCode leave the VACUUM for later),
 * that is a VACUUM with OpenCode closed; otherwise a size limit, as a command or as the setting.
 */
export function fixFor(facts: FixFacts): string {
  const threshold = facts.thresholdMB * MB;
  if (facts.liveBytes !== null && facts.liveBytes < threshold && facts.fileBytes >= threshold) {
    return `close OpenCode and run: session-keeper vacuum (${formatBytes(facts.fileBytes - facts.liveBytes)} of free pages go back to the disk)`;
  }
  const target = targetMB(facts.thresholdMB);
  return `run: session-keeper retention --max-size-mb ${target} --apply (or set "session": { "maxSizeMB": ${target} } in opencode.json to keep it there)`;
}

