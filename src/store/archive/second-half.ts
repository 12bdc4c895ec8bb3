/**
 * An archive's second half on a second thread: its sessions are read from the SQLite file on
 * another connection and written as archive text into a segment file, while the main thread
 * writes the first half; the main thread then copies the segment in through its own sink, so the
 * archive is byte for byte what one thread writes. A plain node:worker_threads Worker, not the
 * piscina pool: one long task with its own connection and file, started and ended with its archive.
 */
import { randomUUID } from 'node:crypto';
import { closeSync, existsSync, openSync, readSync, rmSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { SkError } from '../../core/errors.js';
import { builtModule } from '../package-files.js';
import { tempNameFor, trackTempFile, untrackTempFile } from '../temp-files.js';
import type { ArchivedSessionSummary, ArchiveSink } from './archive-sink.js';
import type { SecondHalfData, SecondHalfReply, SecondHalfVerify } from './second-half-protocol.js';
import { abortable, ARCHIVE_THREAD_LIMITS, threadOutcome } from './thread-outcome.js';

const WORKER_FILE = builtModule('store/archive/second-half-worker.js');
const COPY_BYTES = 1024 * 1024;

/** False where the thread's compiled file is absent (sources run as TypeScript): one thread writes it all. */
export function canWriteSecondHalf(): boolean {
  return existsSync(fileURLToPath(WORKER_FILE));
}

export interface SecondHalfResult {
  sessions: ArchivedSessionSummary[];
  bytes: number;
  /** The segment's bytes after each session. */
  ends: number[];
  /** The thread's peak V8 heap (sampled after each session). */
  heapPeak: number;
}

export class SecondHalf {
  /** Sessions and uncompressed bytes the thread has written so far. */
  sessions = 0;
  bytes = 0;
  private readonly segment: string;
  private readonly worker: Worker;
  private readonly result: Promise<SecondHalfResult>;

  constructor(db: string, ids: readonly string[], archivePath: string, onProgress?: () => void) {
    this.segment = tempNameFor(dirname(archivePath), `${basename(archivePath)}.second`, randomUUID().slice(0, 8));
    // Tracked here: an interrupt removes it with this process's other temp files.
    trackTempFile(this.segment);
    const data: SecondHalfData = { db, ids, segment: this.segment, name: archivePath };
    this.worker = new Worker(WORKER_FILE, { workerData: data, resourceLimits: ARCHIVE_THREAD_LIMITS });
    this.archivePath = archivePath;
    this.result = threadOutcome<SecondHalfReply, SecondHalfResult>(this.worker, `the second half of ${archivePath}`, (reply) => {
      if (reply.kind !== 'progress' && reply.kind !== 'done') return undefined;
      this.sessions = reply.kind === 'done' ? reply.sessions.length : reply.sessions;
      this.bytes = reply.bytes;
      onProgress?.();
      return reply.kind === 'done' ? { sessions: reply.sessions, bytes: reply.bytes, ends: reply.ends, heapPeak: reply.heapPeak } : undefined;
    });
  }

  private readonly archivePath: string;

  /** The thread's sessions, once it has written them all. */
  finished(signal?: AbortSignal): Promise<SecondHalfResult> {
    return abortable(this.result, signal);
  }

  /**
   * Has the thread read the sealed archive at `path` back from `from` (where `separator` starts,
   * before one of its sessions) to the end: the sessions it found there, with its peak heap.
   */
  verify(path: string, from: number, separator: string, onSessionRead?: (sessions: number) => void): Promise<{ found: ArchivedSessionSummary[]; heapPeak: number }> {
    const outcome = threadOutcome<SecondHalfReply, { found: ArchivedSessionSummary[]; heapPeak: number }>(this.worker, `the verification of the second half of ${this.archivePath}`, (reply) => {
      if (reply.kind === 'verifyProgress') onSessionRead?.(reply.sessions);
      return reply.kind === 'verified' ? { found: reply.found, heapPeak: reply.heapPeak } : undefined;
    });
    const request: SecondHalfVerify = { kind: 'verify', path, from, separator };
    this.worker.postMessage(request);
    return outcome;
  }

  /** Waits for the thread, then writes its segment into `sink` (after `separator` when it holds sessions). */
  async copyInto(sink: ArchiveSink, separator: string, signal?: AbortSignal): Promise<SecondHalfResult> {
    const done = await this.finished(signal);
    if (done.sessions.length === 0) return done;
    await sink.write(separator);
    const fd = openSync(this.segment, 'r');
    try {
      let copied = 0;
      for (;;) {
        // A fresh buffer each time: the sink holds it until its write is done.
        const bytes = Buffer.allocUnsafe(COPY_BYTES);
        const n = readSync(fd, bytes, 0, COPY_BYTES, null);
        if (n === 0) break;
        copied += n;
        const writing = sink.write(bytes.subarray(0, n));
        if (writing) await writing;
        signal?.throwIfAborted();
      }
      if (copied !== done.bytes) throw new SkError('archive', `the second half of ${sink.path} is ${copied} bytes, ${done.bytes} were written`);
    } finally {
      closeSync(fd);
    }
    return done;
  }

  /** Ends the thread and removes the segment (done, failed or no longer wanted). */
  async stop(): Promise<void> {
    await this.worker.terminate();
    rmSync(this.segment, { force: true });
    untrackTempFile(this.segment);
  }
}
