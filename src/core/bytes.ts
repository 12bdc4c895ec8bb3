/** The one way sizes are written for people, in the CLI, the warnings and the UI alike. */
export const KB = 1024;
export const MB = 1024 * KB;
export const GB = 1024 * MB;

/** `512 B`, `40 KB`, `263 MB`, `1.16 GB`: whole units below a gigabyte, two decimals above. */
export function formatBytes(n: number): string {
  if (n < KB) return `${Math.round(n)} B`;
  if (n < MB) return `${Math.round(n / KB)} KB`;
  if (n < GB) return `${Math.round(n / MB)} MB`;
  return `${(n / GB).toFixed(2)} GB`;
}
