/**
 * The session service: what the utility process, the CLI and web mode all call. It owns the
 * piscina pool (one read connection per worker), an LRU cache of small pages bounded in bytes,
 * and a watcher connection whose `PRAGMA data_version` tells when another process (OpenCode)
 * committed, so that no stale page is served.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { LRUCache } from 'lru-cache';
import type { Piscina } from 'piscina';
import type {
  AttachmentResult,
  ListResult,
  PageOptions,
  ShowResult,
  StatsOptions,
  StatsResult,
} from '../core/api.js';
import { SkError } from '../core/errors.js';
import { defaultCacheDir } from '../core/paths.js';
import { SqliteStore } from '../store/sqlite/sqlite-store.js';
import { isConnectionString } from '../store/external/connection.js';
import type { ExternalStore } from '../store/external/external-store.js';
import { runTask, type WorkerReply, type WorkerTask } from '../worker/protocol.js';

export interface ServiceOptions {
  db: string;
  cacheDir?: string;
  /** Worker threads; default min(2, cores). */
  threads?: number;
  /**
   * Run tasks on this thread instead of a pool: for one-shot CLI commands, where starting a
   * worker costs more than the query. Same code, same memory rules.
   */
  inline?: boolean;
  /** Bytes of pages (as JSON) the LRU cache may hold; default 4 MB, about 3x that as objects on the heap. */
  cacheBytes?: number;
}

type CachedValue = ListResult | ShowResult | StatsResult | AttachmentResult;

const WORKER_FILE = new URL('../worker/tasks.js', import.meta.url).href;

export class SessionService {
  readonly db: string;
  readonly cacheDir: string;
  private readonly pool: Piscina | null;
  private readonly cache: LRUCache<string, CachedValue>;
  private readonly watcher: SqliteStore | null;
  /** An external database (`--db postgres://…`): queried on this thread, async; no pool, no page cache. */
  private readonly external: ExternalStore | null;
  private seenVersion: number | undefined;
  /** Largest V8 heap any worker reported after a task: the memory ceiling, watched. */
  workerHeapPeak = 0;

  private constructor(options: ServiceOptions, watcher: SqliteStore | null, PiscinaClass: typeof Piscina | null, external: ExternalStore | null = null) {
    this.db = external ? options.db : resolve(options.db);
    this.cacheDir = resolve(options.cacheDir ?? defaultCacheDir());
    this.watcher = watcher;
    this.external = external;
    const threads = options.threads ?? Math.max(1, Math.min(2, availableParallelism()));
    this.pool = PiscinaClass ? new PiscinaClass({ filename: WORKER_FILE, minThreads: 1, maxThreads: threads, idleTimeout: 30_000 }) : null;
    this.cache = new LRUCache<string, CachedValue>({
      maxSize: options.cacheBytes ?? 4 * 1024 * 1024,
      // A page is held as parsed objects; its JSON length is a fair, cheap-enough measure of that.
      sizeCalculation: (value) => Math.max(1, JSON.stringify(value).length),
    });
  }

  /** Opens the database once on this thread first, so a bad file fails here with one line. */
  static async open(options: ServiceOptions): Promise<SessionService> {
    if (isConnectionString(options.db)) {
      // Network-bound, not CPU-bound: the pool's threads would only add a connection each.
      const { ExternalStore } = await import('../store/external/external-store.js');
      return new SessionService(options, null, null, await ExternalStore.open(options.db));
    }
    const watcher = new SqliteStore(resolve(options.db), { readonly: true });
    // Loaded only when a pool is wanted: one-shot CLI commands start faster without it.
    const PiscinaClass = options.inline ? null : (await import('piscina')).Piscina;
    return new SessionService(options, watcher, PiscinaClass);
  }

  private async run<T>(task: WorkerTask): Promise<T> {
    if (this.external) return (await runTask(this.external, task)) as T;
    let reply: WorkerReply<T>;
    try {
      reply = (this.pool ? await this.pool.run(task) : await (await import('../worker/tasks.js')).default(task)) as WorkerReply<T>;
    } catch (error) {
      // A worker that died (crash, abort) is replaced by piscina; this request fails cleanly.
      throw new SkError('internal', `worker failed: ${(error as Error).message}`);
    }
    this.workerHeapPeak = Math.max(this.workerHeapPeak, reply.heapUsed);
    if (!reply.ok) throw new SkError(reply.code, reply.message);
    return reply.value;
  }

  /** Drops every cached page when another connection has committed since we last looked. */
  private async fresh(): Promise<void> {
    if (!this.watcher) return;
    const version = await this.watcher.dataVersion();
    if (this.seenVersion !== undefined && version !== this.seenVersion) this.cache.clear();
    this.seenVersion = version;
  }

  private async cached<T extends CachedValue>(key: string, load: () => Promise<T>): Promise<T> {
    // Other writers of an external database leave no cheap version mark: its pages are never cached.
    if (this.external) return load();
    await this.fresh();
    const hit = this.cache.get(key);
    if (hit) return hit as T;
    const value = await load();
    this.cache.set(key, value);
    return value;
  }

  stats(options: StatsOptions = {}): Promise<StatsResult> {
    return this.cached(`stats:${JSON.stringify(options)}`, () => this.run({ op: 'stats', db: this.db, options }));
  }

  listSessions(options: PageOptions = {}): Promise<ListResult> {
    return this.cached(`list:${options.limit ?? ''}:${options.cursor ?? ''}`, () =>
      this.run({ op: 'list', db: this.db, options }),
    );
  }

  showSession(sessionId: string, options: PageOptions = {}): Promise<ShowResult> {
    return this.cached(`show:${sessionId}:${options.limit ?? ''}:${options.cursor ?? ''}`, () =>
      this.run({ op: 'show', db: this.db, sessionId, options }),
    );
  }

  /** Decodes an attachment into the cache (or to `out`); the caller gets a path, never the bytes. */
  attachment(ref: string, out?: string): Promise<AttachmentResult> {
    const task: WorkerTask = { op: 'attachment', db: this.db, ref, cacheDir: this.cacheDir };
    if (out) return this.run({ ...task, out: resolve(out) });
    const key = `attachment:${ref}`;
    const hit = this.cache.get(key) as AttachmentResult | undefined;
    // The cache folder is the user's to clear: a cached answer is only good while its file exists.
    if (hit && !existsSync(hit.path)) this.cache.delete(key);
    return this.cached(key, () => this.run(task));
  }

  /** Worker threads alive in the pool (0 when inline). */
  workerThreads(): number {
    return this.pool?.threads.length ?? 0;
  }

  /** Test seam: ends one pool thread, as a crash would; piscina starts a replacement. */
  async terminateWorker(): Promise<boolean> {
    const thread = this.pool?.threads[0];
    if (!thread) return false;
    await thread.terminate();
    return true;
  }

  async close(): Promise<void> {
    if (this.external) {
      await this.external.close();
      return;
    }
    await this.pool?.destroy();
    if (!this.pool) await (await import('../worker/tasks.js')).closeAll();
    await this.watcher?.close();
  }
}
