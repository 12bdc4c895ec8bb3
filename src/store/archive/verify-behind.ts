/**
 * Verification behind the writer: a thread re-reads the temporary archive while it is still being
 * written (bytes already written, from the page cache) and digests every session as verifyArchive
 * does, so the check ends just after the writing instead of taking as long again afterwards. A
 * plain node:worker_threads Worker, not the piscina pool: one long task with its own shared
 * memory, started and ended with its archive. The caller still seals (fsync) and compares before
 * the name is given; a failure or a crash of the thread throws.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { ArchivedSessionSummary } from './archive-sink.js';
import { builtModule } from '../package-files.js';
import { abortable, ARCHIVE_THREAD_LIMITS, threadOutcome } from './thread-outcome.js';
import { VERIFY_SHARED, type VerifyBehindData, type VerifyBehindReply } from './verify-behind-protocol.js';

const WORKER_FILE = builtModule('store/archive/verify-behind-worker.js');
/** Bytes written between two wake-ups of the thread (it reads what has come meanwhile, and at the seal the rest). */
const WAKE_EVERY_BYTES = 8 * 1024 * 1024;

/** False where the thread's compiled file is absent (sources run as TypeScript): verification then runs after the writing. */
export function canVerifyBehind(): boolean {
  return existsSync(fileURLToPath(WORKER_FILE));
}

export class VerifyBehind {
  /** The verifying thread's peak V8 heap, once it has finished. */
  heapPeak = 0;
  private readonly worker: Worker;
  private readonly written: BigInt64Array;
  private readonly endAt: BigInt64Array;
  private readonly state: Int32Array;
  private readonly result: Promise<ArchivedSessionSummary[]>;
  /** File bytes at the last wake-up. */
  private wokenAt = 0;

  constructor(tempPath: string, gzip: boolean, name: string, onSessionRead?: (sessions: number) => void, workerFile: URL = WORKER_FILE) {
    const shared = new SharedArrayBuffer(VERIFY_SHARED.bytes);
    this.written = new BigInt64Array(shared, 0, 1);
    this.endAt = new BigInt64Array(shared, VERIFY_SHARED.endOffset, 1);
    this.endAt[0] = -1n;
    this.state = new Int32Array(shared, VERIFY_SHARED.stateOffset, 2);
    const data: VerifyBehindData = { path: tempPath, gzip, name, shared };
    this.worker = new Worker(workerFile, { workerData: data, resourceLimits: ARCHIVE_THREAD_LIMITS });
    this.result = threadOutcome<VerifyBehindReply, ArchivedSessionSummary[]>(this.worker, `the verification of ${name}`, (reply) => {
      if (reply.kind === 'progress') {
        onSessionRead?.(reply.sessions);
        return undefined;
      }
      this.heapPeak = reply.heapPeak;
      return reply.found;
    });
  }

  /** The file now holds `bytes` bytes, all of them readable by the thread. */
  reportWritten(bytes: number): void {
    Atomics.store(this.written, 0, BigInt(bytes));
    // Waking the thread costs the writer about a millisecond (it gives up its core): once per 8 MB, not per write.
    if (bytes - this.wokenAt < WAKE_EVERY_BYTES) return;
    this.wokenAt = bytes;
    this.wake();
  }

  /**
   * The thread's part of the file ends at `offset` (another verifies the rest): it reads up to
   * there and no further. Given before any byte past `offset` is written.
   */
  reportEnd(offset: number): void {
    Atomics.store(this.endAt, 0, BigInt(offset));
    this.wake();
  }

  /** The file is whole and fsynced: the thread reads it to its end (or the end reported). */
  reportSealed(): void {
    Atomics.store(this.state, VERIFY_SHARED.sealed, 1);
    this.wake();
  }

  private wake(): void {
    Atomics.add(this.state, VERIFY_SHARED.generation, 1);
    Atomics.notify(this.state, VERIFY_SHARED.generation);
  }

  /** The sessions the thread read back (after reportSealed), or its failure; rejects early when `signal` aborts. */
  found(signal?: AbortSignal): Promise<ArchivedSessionSummary[]> {
    return abortable(this.result, signal);
  }

  /** Ends the thread (done, failed or no longer wanted). */
  async stop(): Promise<void> {
    await this.worker.terminate();
  }
}
