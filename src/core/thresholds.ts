/** Size warnings: which thresholds a database has crossed, and the words for them. */
import { formatBytes, MB } from './bytes.js';

export { MB };
export const DEFAULT_WARN_AT_MB = [100, 500, 1024] as const;

export interface SizeWarning {
  thresholdMB: number;
  message: string;
}

/**
 * Every threshold at or below the current size, highest first. With `compactableBytes`, a
 * threshold that compacting the event log alone would bring the file under says so.
 */
export function crossedThresholds(totalBytes: number, warnAtMB: readonly number[] = DEFAULT_WARN_AT_MB, compactableBytes = 0): SizeWarning[] {
  return [...new Set(warnAtMB)]
    .filter((mb) => totalBytes >= mb * MB)
    .sort((a, b) => b - a)
    .map((thresholdMB) => ({
      thresholdMB,
      message:
        totalBytes - compactableBytes < thresholdMB * MB
          ? `Warning: OpenCode database is ${formatBytes(totalBytes)}. Compacting its event log alone would free ${formatBytes(compactableBytes)} and bring it under ${formatBytes(thresholdMB * MB)}, keeping every session: session-keeper compact --apply.`
          : `Warning: OpenCode database is ${formatBytes(totalBytes)}. Consider archiving or enabling auto-retention.`,
    }));
}
