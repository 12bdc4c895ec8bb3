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
