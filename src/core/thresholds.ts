/** Size warnings: which thresholds a database has crossed, and the words for them. */
import { formatBytes, MB } from './bytes.js';

export { MB };
export const DEFAULT_WARN_AT_MB = [100, 500, 1024] as const;

export interface SizeWarning {
  thresholdMB: number;
  message: string;
}

/** Every threshold at or below the current size, highest first. */
export function crossedThresholds(totalBytes: number, warnAtMB: readonly number[] = DEFAULT_WARN_AT_MB): SizeWarning[] {
  return [...new Set(warnAtMB)]
    .filter((mb) => totalBytes >= mb * MB)
    .sort((a, b) => b - a)
    .map((thresholdMB) => ({
      thresholdMB,
      message: `Warning: OpenCode database is ${formatBytes(totalBytes)}. Consider archiving or enabling auto-retention.`,
    }));
}
