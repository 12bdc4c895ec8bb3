/**
 * The thread of a verification behind its writer (verify-behind.ts): reads the temporary archive
 * as it grows, only bytes the writer has reported written, and at the end (the file sealed) on to
 * the file's end, scanning them as verifyArchive does; posts the summaries it found.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { getHeapStatistics } from 'node:v8';
import { parentPort, workerData } from 'node:worker_threads';
import { SkError } from '../../core/errors.js';
import { readArchiveSummaries } from './archive-read.js';
import { VERIFY_SHARED, type VerifyBehindData, type VerifyBehindReply } from './verify-behind-protocol.js';

const READ_BYTES = 1024 * 1024;
const data = workerData as VerifyBehindData;
const written = new BigInt64Array(data.shared, 0, 1);
const endAt = new BigInt64Array(data.shared, VERIFY_SHARED.endOffset, 1);
const state = new Int32Array(data.shared, VERIFY_SHARED.stateOffset, 2);
let heapPeak = 0;
/** Node 20 has Atomics.waitAsync; the project's ES lib target does not name it yet. */
const waitAsync = (Atomics as unknown as { waitAsync: (array: Int32Array, index: number, value: number, timeoutMs: number) => { async: boolean; value: Promise<string> | string } }).waitAsync;

function post(reply: VerifyBehindReply): void {
  parentPort?.postMessage(reply);
}

/**
 * The file's bytes in order, never past what the writer reported until it has sealed the file.
 * When the writer names where this thread's part ends (another thread verifies the rest), the
 * bytes stop there and the array is closed (`]`) as the whole file's would be.
 */
async function* grownBytes(path: string, refill: boolean): AsyncGenerator<Buffer> {
  const fd = openSync(path, 'r');
  // A plain file's chunks are scanned before the next is read: one buffer, refilled, spares the
  // thread a megabyte of garbage per megabyte read (freed only when its GC runs, ~64 MB later).
  const reused = refill ? Buffer.allocUnsafe(READ_BYTES) : null;
  let at = 0;
  try {
    for (;;) {
      const generation = Atomics.load(state, VERIFY_SHARED.generation);
      const sealed = Atomics.load(state, VERIFY_SHARED.sealed) === 1;
      const end = Number(Atomics.load(endAt, 0));
      if (end >= 0 && at > end) throw new SkError('internal', `the verification of ${data.name} read past its part of the file`);
      if (end >= 0 && at === end) {
        yield Buffer.from(']');
        return;
      }
      // Sealed: read on to the end of the file, so bytes beyond what was reported fail the check too.
      const reported = sealed ? Number.MAX_SAFE_INTEGER : Number(Atomics.load(written, 0));
      const limit = end >= 0 ? Math.min(end, reported) : reported;
      if (at < limit) {
        const bytes = reused ?? Buffer.allocUnsafe(READ_BYTES);
        const n = readSync(fd, bytes, 0, Math.min(READ_BYTES, limit - at), at);
        // Shorter than reported (truncated under us) or, sealed, its end: the scanner judges what it got.
        if (n === 0) return;
        at += n;
        heapPeak = Math.max(heapPeak, getHeapStatistics().used_heap_size);
        yield bytes.subarray(0, n);
        continue;
      }
      // Nothing new yet: sleep until the writer reports more (the timeout only re-checks).
      const wait = waitAsync(state, VERIFY_SHARED.generation, generation, 1000);
      if (wait.async) await wait.value;
    }
  } finally {
    closeSync(fd);
  }
}

// A pending Atomics.waitAsync does not keep a thread's event loop alive: this timer does, till the end.
const keepAlive = setInterval(() => undefined, 60_000);
try {
  const found = await readArchiveSummaries(data.path, {
    gzip: data.gzip,
    name: data.name,
    source: grownBytes(data.path, !data.gzip),
    onSessionRead: (sessions) => post({ kind: 'progress', sessions }),
  });
  post({ kind: 'done', found, heapPeak: Math.max(heapPeak, getHeapStatistics().used_heap_size) });
} catch (error) {
  const code = error instanceof SkError ? error.code : 'archive';
  post({ kind: 'failed', code, message: (error as Error).message });
} finally {
  clearInterval(keepAlive);
}
