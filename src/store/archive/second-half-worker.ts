/**
 * The thread of an archive's second half (second-half.ts): its sessions read from the SQLite file
 * on a connection of its own (one read transaction per session, as on the main thread), written
 * as archive text into a segment file that the main thread copies in after the first half.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SkError } from '../../core/errors.js';
import { SqliteReader } from '../sqlite/sqlite-reader.js';
import { ArchiveSerializer } from './archive-write.js';
import { ArchiveSink } from './archive-sink.js';
import type { SecondHalfData, SecondHalfReply } from './second-half-protocol.js';

/** Its rows are read once, in order: a small page cache, not the default 64 MB, beside the main thread's. */
const CACHE_KB = 8_000;
const PROGRESS_MS = 100;
const data = workerData as SecondHalfData;

function post(reply: SecondHalfReply): void {
  parentPort?.postMessage(reply);
}

const sink = new ArchiveSink(data.name, { tempPath: data.segment });
try {
  const reader = SqliteReader.open(data.db, { cacheKb: CACHE_KB, indexDir: null });
  try {
    const serializer = new ArchiveSerializer(sink);
    let reported = performance.now();
    for (const item of reader.exportSessions(data.ids)) {
      await serializer.take(item);
      if (item.kind !== 'end' || performance.now() - reported < PROGRESS_MS) continue;
      reported = performance.now();
      post({ kind: 'progress', sessions: serializer.sessions.length, bytes: sink.bytes });
    }
    await sink.closeSegment();
    post({ kind: 'done', sessions: serializer.sessions, bytes: sink.bytes });
  } finally {
    await reader.close();
  }
} catch (error) {
  sink.abort();
  post({ kind: 'failed', code: error instanceof SkError ? error.code : 'archive', message: (error as Error).message });
}
