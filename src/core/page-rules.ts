/**
 * How every backend keeps a page small: the limits the neutral page builder applies to whatever
 * a backend's rows hold. Pure numbers and arithmetic, shared by the SQLite and external stores.
 */
/** V8's string limit, which better-sqlite3 and the server drivers also impose on every value they read. */
export const V8_STRING_LIMIT = 536_870_888;

export const DEFAULT_SESSION_PAGE = 50;
export const DEFAULT_MESSAGE_PAGE = 20;

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

export type SessionPayloadColumn = (typeof PAGE_RULES.sessionPayloadColumns)[number];

/**
 * String limits for the next row of a page with `budget` bytes left: as the page fills up, long
 * strings are cut shorter, down to 1 KB strings with 256-byte previews once the budget is spent.
 */
export function stringLimits(budget: number): { maxInlineString: number; previewBytes: number } {
  const maxInlineString = Math.max(1024, Math.min(PAGE_RULES.maxInlineString, Math.floor(budget / 4)));
  return { maxInlineString, previewBytes: Math.min(4096, Math.floor(maxInlineString / 4)) };
}

/** What a session payload column too big for a page shows instead (a JSON string, as the column holds JSON). */
export function cutSessionPayload(bytes: number): string {
  return JSON.stringify(`[session-keeper: cut, ${bytes} bytes in all]`);
}
