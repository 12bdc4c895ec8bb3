// Extracts attachment 0 of one part to a file, in one of three ways, and prints a JSON summary
// (sha256, bytes, peak heap and Buffer memory seen between chunks, peak RSS) as its last line:
//   chunked : valueChunks through the sk_chunks extension (a few MB at a time, in SQLite too)
//   whole   : the same code on a connection without the extension (one whole BLOB read)
//   store   : the reader's extractAttachment (through sk_chunks when the extension is loaded, whole
//             without it: run with SESSION_KEEPER_NO_CHUNK_EXTENSION=1 for the whole-value path)
// Usage: node extract-value.mjs <db> <partId> <out> <chunked|whole|store> [chunkBytes]
import Database from 'better-sqlite3';
import { closeSync, openSync, rmSync } from 'node:fs';
import { getHeapStatistics } from 'node:v8';
import { openFileReader } from '../../dist/store/open-store.js';
import { chunkedReadPath, decodeStoredAttachment, fdSink, loadValueChunks } from '../../dist/store/sqlite/value-chunks.js';

const [db, partId, out, mode, chunkArg] = process.argv.slice(2);
let heapPeak = 0;
let buffersPeak = 0;
const sample = () => {
  heapPeak = Math.max(heapPeak, getHeapStatistics().used_heap_size);
  buffersPeak = Math.max(buffersPeak, process.memoryUsage().arrayBuffers);
};
const start = performance.now();
let result;
if (mode === 'store') {
  const store = openFileReader(db);
  const cacheDir = `${out}.cache`;
  const extracted = await store.extractAttachment(partId, cacheDir, out);
  await store.close();
  rmSync(cacheDir, { recursive: true, force: true });
  sample();
  result = { path: 'store', sha256: extracted.sha256, bytes: extracted.bytes };
} else {
  const connection = new Database(db, { readonly: true });
  if (mode === 'chunked' && !loadValueChunks(connection)) throw new Error('the value_chunks extension is not built (npm run build)');
  const fd = openSync(out, 'w');
  const sink = fdSink(fd);
  // Sampled at every decoded piece: the read is synchronous, a timer would never fire.
  const sampled = { write: (bytes) => (sample(), sink.write(bytes)), discard: () => sink.discard() };
  const options = chunkArg ? { chunkBytes: Number(chunkArg) } : {};
  const decoded = decodeStoredAttachment(connection, 'part', 'data', { id: partId }, { partId, index: 0, sink: sampled }, options);
  closeSync(fd);
  result = { path: chunkedReadPath(connection), sha256: sink.sha256(), bytes: decoded.bytes };
  connection.close();
}
sample();
const ms = Math.round(performance.now() - start);
process.stdout.write(`${JSON.stringify({ mode, ...result, ms, heapPeak, buffersPeak, maxRssBytes: process.resourceUsage().maxRSS * 1024 })}\n`);
