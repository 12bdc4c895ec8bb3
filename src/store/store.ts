/**
 * The one interface every backend implements. Reads are paged and sized without loading
 * payloads; attachments leave as files in the attachment cache, never as strings.
 */
import type { AttachmentResult, ListResult, PageOptions, ShowResult, StatsOptions, StatsResult } from '../core/api.js';

export interface SessionStore {
  readonly kind: 'sqlite' | 'postgres' | 'mysql' | 'sqlserver';
  /** A number that changes whenever another connection commits: cached pages are stale then. */
  dataVersion(): Promise<number>;
  stats(options?: StatsOptions): Promise<StatsResult>;
  listSessions(options?: PageOptions): Promise<ListResult>;
  showSession(sessionId: string, options?: PageOptions): Promise<ShowResult>;
  /** Decodes one attachment into the cache directory; copies it to `out` when given. */
  extractAttachment(ref: string, cacheDir: string, out?: string): Promise<AttachmentResult>;
  close(): Promise<void>;
}

export const DEFAULT_SESSION_PAGE = 50;
export const DEFAULT_MESSAGE_PAGE = 20;

/** How every backend keeps a page of messages small. */
export const PAGE_RULES = {
  /** Values up to this size come back inside the page query; larger ones are fetched one at a time. */
  inlineFetchBytes: 64 * 1024,
  /** At most this much inline data in one result. */
  inlineTotalBytes: 4 * 1024 * 1024,
  /** Rough ceiling on what one page of messages may hold once reduced. */
  budgetBytes: 8 * 1024 * 1024,
  /** Longest string kept whole in a page; longer ones are cut to a preview. */
  maxInlineString: 256 * 1024,
  /** Session columns that may hold payloads: sized first, included only when small. */
  sessionPayloadColumns: ['summary_diffs', 'revert', 'permission'] as const,
  sessionPayloadLimit: 1024 * 1024,
} as const;

/**
 * String limits for the next row of a page with `budget` bytes left: as the page fills up, long
 * strings are cut shorter, down to 1 KB strings with 256-byte previews once the budget is spent.
 */
export function stringLimits(budget: number): { maxInlineString: number; previewBytes: number } {
  const maxInlineString = Math.max(1024, Math.min(PAGE_RULES.maxInlineString, Math.floor(budget / 4)));
  return { maxInlineString, previewBytes: Math.min(4096, Math.floor(maxInlineString / 4)) };
}
