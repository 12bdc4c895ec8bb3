/**
 * The thread of an archive's second half (second-half.ts): its sessions read from the SQLite file
 * on a connection of its own (one read transaction per session, as on the main thread), written
 * as archive text into a segment file that the main thread copies in after the first half. Then,
 * when asked, it reads that half back out of the sealed archive itself and digests its sessions,
 * while the verification behind the writer finishes the first half on the other core.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { getHeapStatistics } from 'node:v8';
import { parentPort, workerData } from 'node:worker_threads';
import { SkError } from '../../core/errors.js';
import { readArchiveSummaries } from './archive-read.js';
import { openFileReader } from '../open-store.js';
import { ARCHIVE_EXPORT } from '../reader.js';
import { isSyncIterable, type SessionItem } from '../session-items.js';
import { ArchiveSerializer } from './archive-write.js';
import { ArchiveSink, loadSessionDigests } from './archive-sink.js';
import type { SecondHalfData, SecondHalfReply, SecondHalfVerify } from './second-half-protocol.js';

const PROGRESS_MS = 100;
const READ_BYTES = 1024 * 1024;
const data = workerData as SecondHalfData;

function post(reply: SecondHalfReply): void {
  parentPort?.postMessage(reply);
}

const sink = new ArchiveSink(data.name, { tempPath: data.segment });
try {
  const reader = openFileReader(data.db);
  try {
    await loadSessionDigests();
    const serializer = new ArchiveSerializer(sink);
    let reported = performance.now();
    let heapPeak = 0;
    const ends: number[] = [];
    const take = async (item: SessionItem): Promise<void> => {
      await serializer.take(item);
      if (item.kind !== 'end') return;
      ends.push(sink.bytes);
      heapPeak = Math.max(heapPeak, getHeapStatistics().used_heap_size);
      if (performance.now() - reported < PROGRESS_MS) return;
      reported = performance.now();
      post({ kind: 'progress', sessions: serializer.sessions.length, bytes: sink.bytes });
    };
    // A SQLite file's items come synchronously: a plain loop spares a microtask per row.
    const items = reader.exportSessions(data.ids, ARCHIVE_EXPORT);
    if (isSyncIterable(items)) for (const item of items) await take(item);
    else for await (const item of items) await take(item);
    await sink.closeSegment();
    post({ kind: 'done', sessions: serializer.sessions, bytes: sink.bytes, ends, heapPeak });
  } finally {
    await reader.close();
  }
} catch (error) {
  sink.abort();
  post({ kind: 'failed', code: error instanceof SkError ? error.code : 'archive', message: (error as Error).message });
}

/**
 * The sealed archive from `from` to its end: first the separator that joins the halves, exactly,
 * then the rest as an array of its own (`[` before it), so the scanner checks it as a whole file.
 */
async function* secondHalfBytes(request: SecondHalfVerify): AsyncGenerator<Buffer> {
  const fd = openSync(request.path, 'r');
  try {
    const separator = Buffer.from(request.separator);
    const found = Buffer.alloc(separator.length);
    if (readSync(fd, found, 0, found.length, request.from) !== found.length || !found.equals(separator)) {
      throw new SkError('archive', `archive ${data.name} failed verification: the halves are not joined at byte ${request.from}`);
    }
    yield Buffer.from('[');
    // Each chunk is scanned before the next is read: one buffer, refilled.
    const bytes = Buffer.allocUnsafe(READ_BYTES);
    for (let at = request.from + separator.length; ; ) {
      const n = readSync(fd, bytes, 0, READ_BYTES, at);
      if (n === 0) return;
      at += n;
      yield bytes.subarray(0, n);
    }
  } finally {
    closeSync(fd);
  }
}

// Asked once the archive is sealed; never asked (the thread is ended) when nobody verifies it this way.
parentPort?.once('message', (request: SecondHalfVerify) => {
  void (async () => {
    try {
      let heapPeak = 0;
      let reported = performance.now();
      const found = await readArchiveSummaries(request.path, {
        name: data.name,
        source: secondHalfBytes(request),
        onSessionRead: (sessions) => {
          if (performance.now() - reported < PROGRESS_MS) return;
          reported = performance.now();
          heapPeak = Math.max(heapPeak, getHeapStatistics().used_heap_size);
          post({ kind: 'verifyProgress', sessions });
        },
      });
      post({ kind: 'verified', found, heapPeak: Math.max(heapPeak, getHeapStatistics().used_heap_size) });
    } catch (error) {
      post({ kind: 'failed', code: error instanceof SkError ? error.code : 'archive', message: (error as Error).message });
    }
  })();
});
