/**
 * The session service: what the utility process, the CLI and web mode all call. It reads through
 * one PageReader chosen once at open (a pool of worker threads, this thread for one-shot
 * commands, or a server) and keeps an LRU cache of small pages bounded in bytes, emptied whenever
 * the reader's data version says another process (OpenCode) committed, so no stale page is served.
 */
import { resolve } from 'node:path';
import { LRUCache } from 'lru-cache';
import type { AttachmentResult, ListResult, PageOptions, ShowResult, StatsOptions, StatsResult } from '../core/api.js';
import { approximateBytes } from '../core/approx-size.js';
import { defaultCacheDir } from '../core/paths.js';
import { isConnectionString } from '../core/storage.js';
import { AttachmentCache } from '../store/attachment-cache.js';
import { openFileReader, openReader } from '../store/open-store.js';
import type { PageReader } from '../store/reader.js';
import type { PooledReader } from '../worker/pool.js';
import { AttachmentHandles, type HandleCacheOptions, type HandleLease } from './attachment-handles.js';

export interface ServiceOptions {
  db: string;
  cacheDir?: string;
  /** Worker threads; default min(2, cores). */
  threads?: number;
  /**
   * Read on this thread instead of a pool: for one-shot CLI commands, where starting a worker
   * costs more than the query. Same code, same memory rules.
   */
  inline?: boolean;
  /** With `inline`: read the file through a memory map (a command that reads one bounded page). */
  mapped?: boolean;
  /** Approximate heap bytes of pages the LRU cache may hold; default 12 MB. */
  cacheBytes?: number;
  /** How many attachment files stay open, and for how long unused (see AttachmentHandles). */
  handles?: HandleCacheOptions;
}

type CachedValue = ListResult | ShowResult | StatsResult | AttachmentResult;

export class SessionService {
  readonly db: string;
  readonly cacheDir: string;
  private readonly reader: PageReader;
  /** The reader when it is a pool of worker threads, for the pool's own figures and test seam. */
  private readonly pool: PooledReader | null;
  private readonly cache: LRUCache<string, CachedValue>;
  /** Open files of decoded attachments, by content: what streams read, beside the page cache. */
  readonly handles: AttachmentHandles;
  private seenVersion: number | undefined;

  private constructor(db: string, reader: PageReader, options: ServiceOptions, pool: PooledReader | null = null) {
    this.db = db;
    this.reader = reader;
    this.pool = pool;
    this.cacheDir = resolve(options.cacheDir ?? defaultCacheDir());
    this.cache = new LRUCache<string, CachedValue>({
      maxSize: options.cacheBytes ?? 12 * 1024 * 1024,
      // Sized by walking the page: no string of it is ever built.
      sizeCalculation: (value) => Math.max(1, approximateBytes(value)),
    });
    this.handles = new AttachmentHandles(options.handles);
  }

  /** Opens the reader once, so a bad file or an unreachable server fails here with one line. */
  static async open(options: ServiceOptions): Promise<SessionService> {
    if (isConnectionString(options.db)) return new SessionService(options.db, await openReader(options.db), options);
    const db = resolve(options.db);
    // A pool (its module and piscina) loads only when wanted: one-shot CLI commands start faster without it.
    const pool = options.inline ? null : await (await import('../worker/pool.js')).PooledReader.open(db, options.threads);
    const service = new SessionService(db, pool ?? openFileReader(db, { mapped: options.mapped ?? false }), options, pool);
    // Temporary files of processes that died while decoding (a crash, a kill) go now.
    new AttachmentCache(service.cacheDir).sweepTemporary(() => true);
    return service;
  }

  /** Drops every cached page when another connection has committed since we last looked. */
  private async fresh(): Promise<void> {
    const version = await this.reader.dataVersion();
    if (this.seenVersion !== undefined && version !== this.seenVersion) this.cache.clear();
    this.seenVersion = version;
  }

  private async cached<T extends CachedValue>(key: string, load: () => Promise<T>): Promise<T> {
    if (!this.reader.pagesCacheable) return load();
    await this.fresh();
    const hit = this.cache.get(key);
    if (hit) return hit as T;
    const value = await load();
    this.cache.set(key, value);
    return value;
  }

  stats(options: StatsOptions = {}): Promise<StatsResult> {
    return this.cached(`stats:${JSON.stringify(options)}`, () => this.reader.stats(options));
  }

  listSessions(options: PageOptions = {}): Promise<ListResult> {
    return this.cached(`list:${options.limit ?? ''}:${options.cursor ?? ''}`, () => this.reader.listSessions(options));
  }

  showSession(sessionId: string, options: PageOptions = {}): Promise<ShowResult> {
    return this.cached(`show:${sessionId}:${options.limit ?? ''}:${options.cursor ?? ''}`, () => this.reader.showSession(sessionId, options));
  }

  /**
   * Decodes an attachment into the cache; the caller gets its path, bytes and sha256, never the
   * bytes themselves. The decoder's open handle is kept (see `handles`): streams read from it, so
   * nothing opens the cache file by name again. With `out`, the user's file is written from that
   * handle, which is closed after.
   */
  async attachment(ref: string, out?: string): Promise<AttachmentResult> {
    if (out) {
      const { result, handle } = await this.reader.openAttachment(ref, this.cacheDir);
      try {
        return { ...result, path: await AttachmentCache.writeFromHandle(handle, out) };
      } finally {
        await handle.close();
      }
    }
    const key = `attachment:${ref}`;
    // An answer is only as good as the handle behind it: without one, decode again.
    const hit = this.cache.get(key) as AttachmentResult | undefined;
    if (hit && !this.handles.has(hit.sha256)) this.cache.delete(key);
    return this.cached(key, async () => {
      const { result, handle } = await this.reader.openAttachment(ref, this.cacheDir);
      this.handles.adopt(result.sha256, handle, result.bytes);
      return result;
    });
  }

  /**
   * The same from another reader (the configured server, for a part the file no longer holds):
   * decoded chunk by chunk into this service's cache, its handle kept beside the file's. Not in the
   * page cache: a server's pages are never cached (no version mark says when they change).
   */
  async attachmentFrom(reader: PageReader, ref: string, out?: string): Promise<AttachmentResult> {
    const { result, handle } = await reader.openAttachment(ref, this.cacheDir);
    if (out) {
      try {
        return { ...result, path: await AttachmentCache.writeFromHandle(handle, out) };
      } finally {
        await handle.close();
      }
    }
    this.handles.adopt(result.sha256, handle, result.bytes);
    return result;
  }

  /**
   * A lease on the open file of cached content `sha256`: the handle an extraction left, or else the
   * cache file opened once, safely (see AttachmentCache.openEntry). Undefined when neither exists.
   */
  async leaseCached(sha256: string): Promise<HandleLease | undefined> {
    const held = this.handles.lease(sha256);
    if (held) return held;
    const handle = await new AttachmentCache(this.cacheDir).openEntry(sha256);
    if (!handle) return undefined;
    this.handles.adopt(sha256, handle, (await handle.stat()).size);
    return this.handles.lease(sha256);
  }

  /** Largest V8 heap a worker reported (0 without a pool). */
  get workerHeapPeak(): number {
    return this.pool?.workerHeapPeak ?? 0;
  }

  /** Worker threads alive in the pool (0 without one). */
  workerThreads(): number {
    return this.pool?.threads() ?? 0;
  }

  /** Test seam: ends one pool thread, as a crash would; piscina starts a replacement. */
  terminateWorker(): Promise<boolean> {
    return this.pool?.terminateWorker() ?? Promise.resolve(false);
  }

  async close(): Promise<void> {
    this.handles.clear();
    await this.reader.close();
  }
}
