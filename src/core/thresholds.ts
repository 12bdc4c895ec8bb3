/** Size warnings: which thresholds a database has crossed, and the words for them. */
export const DEFAULT_WARN_AT_MB = [100, 500, 1024] as const;
export const MB = 1024 * 1024;

export interface SizeWarning {
  thresholdMB: number;
  message: string;
}

export function formatMB(bytes: number): string {
  const mb = bytes / MB;
  return mb >= 1024 ? `${(mb / 1024).toFixed(2)} GB` : `${Math.round(mb)} MB`;
}

/** Every threshold at or below the current size, highest first. */
export function crossedThresholds(totalBytes: number, warnAtMB: readonly number[] = DEFAULT_WARN_AT_MB): SizeWarning[] {
  return [...new Set(warnAtMB)]
    .filter((mb) => totalBytes >= mb * MB)
    .sort((a, b) => b - a)
    .map((thresholdMB) => ({
      thresholdMB,
      message: `Warning: OpenCode database is ${formatMB(totalBytes)}. Consider archiving or enabling auto-retention.`,
    }));
}
