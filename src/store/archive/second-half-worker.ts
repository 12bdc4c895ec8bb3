/**
 * The thread of an archive's second half (second-half.ts): its sessions read from the SQLite file
 * on a connection of its own (one read transaction per session, as on the main thread), written
 * as archive text into a segment file that the main thread copies in after the first half.
 */
import { getHeapStatistics } from 'node:v8';
import { parentPort, workerData } from 'node:worker_threads';
import { SkError } from '../../core/errors.js';
import { openFileReader } from '../open-store.js';
import { ARCHIVE_EXPORT } from '../reader.js';
import { isSyncIterable, type SessionItem } from '../session-items.js';
import { ArchiveSerializer } from './archive-write.js';
import { ArchiveSink } from './archive-sink.js';
import type { SecondHalfData, SecondHalfReply } from './second-half-protocol.js';

const PROGRESS_MS = 100;
const data = workerData as SecondHalfData;

function post(reply: SecondHalfReply): void {
  parentPort?.postMessage(reply);
}

const sink = new ArchiveSink(data.name, { tempPath: data.segment });
try {
  const reader = openFileReader(data.db);
  try {
    const serializer = new ArchiveSerializer(sink);
    let reported = performance.now();
    let heapPeak = 0;
    const take = async (item: SessionItem): Promise<void> => {
      await serializer.take(item);
      if (item.kind !== 'end') return;
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
    post({ kind: 'done', sessions: serializer.sessions, bytes: sink.bytes, heapPeak });
  } finally {
    await reader.close();
  }
} catch (error) {
  sink.abort();
  post({ kind: 'failed', code: error instanceof SkError ? error.code : 'archive', message: (error as Error).message });
}
