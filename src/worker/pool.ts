/**
 * The pool of worker threads as one PageReader: each request runs on a worker's own read
 * connection, so a slow page never blocks the utility's main thread. A watcher connection on this
 * thread answers `dataVersion` (it is per connection) and opens the file first, so a bad file
 * fails here with one line.
 */
import { availableParallelism } from 'node:os';
import type { Piscina } from 'piscina';
import type { AttachmentResult, ListResult, PageOptions, ShowResult, StatsOptions, StatsResult } from '../core/api.js';
import { SkError } from '../core/errors.js';
import { openFileReader } from '../store/open-store.js';
import { AttachmentCache } from '../store/attachment-cache.js';
import { builtModule } from '../store/package-files.js';
import type { OpenedAttachment, PageReader } from '../store/reader.js';
import type { WorkerReply, WorkerTask } from './task-protocol.js';

const WORKER_FILE = builtModule('worker/tasks.js').href;

export class PooledReader implements PageReader {
  readonly kind = 'sqlite' as const;
  readonly pagesCacheable = true;
  /** Largest V8 heap any worker reported after a task: the memory ceiling, watched. */
  workerHeapPeak = 0;

  private constructor(
    private readonly watcher: PageReader,
    private readonly pool: Piscina,
  ) {}

  static async open(db: string, threads = Math.max(1, Math.min(2, availableParallelism()))): Promise<PooledReader> {
    const watcher = openFileReader(db);
    try {
      const { Piscina } = await import('piscina');
      return new PooledReader(watcher, new Piscina({ filename: WORKER_FILE, minThreads: 1, maxThreads: threads, idleTimeout: 30_000 }));
    } catch (error) {
      await watcher.close();
      throw error;
    }
  }

  get location(): string {
    return this.watcher.location;
  }

  private async reply<T>(task: WorkerTask): Promise<WorkerReply<T> & { ok: true }> {
    let reply: WorkerReply<T>;
    try {
      reply = (await this.pool.run(task)) as WorkerReply<T>;
    } catch (error) {
      // A worker that died (crash, abort) is replaced by piscina; this request fails cleanly. Node
      // closed the handles it held; the temporary files it was writing are removed here.
      if ('cacheDir' in task) this.sweep(task.cacheDir);
      throw new SkError('internal', `worker failed: ${(error as Error).message}`);
    }
    this.workerHeapPeak = Math.max(this.workerHeapPeak, reply.heapUsed);
    if (!reply.ok) throw new SkError(reply.code, reply.message);
    return reply;
  }

  private async run<T>(task: WorkerTask): Promise<T> {
    return (await this.reply<T>(task)).value;
  }

  /** Temporary files of threads of this process that are gone (and of processes that are). */
  private sweep(cacheDir: string): void {
    const live = new Set(this.pool.threads.map((thread) => thread.threadId));
    new AttachmentCache(cacheDir).sweepTemporary((pid, threadId) => pid !== process.pid || live.has(threadId));
  }

  dataVersion(): Promise<number> {
    return this.watcher.dataVersion();
  }

  stats(options: StatsOptions = {}): Promise<StatsResult> {
    return this.run({ op: 'stats', db: this.location, options });
  }

  listSessions(options: PageOptions = {}): Promise<ListResult> {
    return this.run({ op: 'list', db: this.location, options });
  }

  showSession(sessionId: string, options: PageOptions = {}): Promise<ShowResult> {
    return this.run({ op: 'show', db: this.location, sessionId, options });
  }

  extractAttachment(ref: string, cacheDir: string, out?: string): Promise<AttachmentResult> {
    return this.run(out ? { op: 'attachment', db: this.location, ref, cacheDir, out } : { op: 'attachment', db: this.location, ref, cacheDir });
  }

  /** Decoded by a worker into the cache; its FileHandle arrives moved through the transfer list. */
  async openAttachment(ref: string, cacheDir: string): Promise<OpenedAttachment> {
    const reply = await this.reply<OpenedAttachment['result']>({ op: 'attachment-handle', db: this.location, ref, cacheDir });
    if (!reply.handle) throw new SkError('internal', `worker sent attachment ${ref} without its handle`);
    return { result: reply.value, handle: reply.handle };
  }

  /** Worker threads alive. */
  threads(): number {
    return this.pool.threads.length;
  }

  /** Test seam: ends one thread, as a crash would; piscina starts a replacement. */
  async terminateWorker(): Promise<boolean> {
    const thread = this.pool.threads[0];
    if (!thread) return false;
    await thread.terminate();
    return true;
  }

  async close(): Promise<void> {
    await this.pool.destroy();
    await this.watcher.close();
  }
}
