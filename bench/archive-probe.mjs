// Archives the sessions listed in a file (one id a line): `verify` (default) verifies the archive
// as writeArchive does before it takes its name (behind the writer, on another thread, when large),
// `verify-after` on this thread once it is written, `write-only` not at all; sampling the V8 heap
// every 5 ms. A fifth argument `one-exporter` reads every session on this thread (else a second
// thread may read the second half of the rest, as writeArchive decides). Prints {ms, writtenMs (sealed), heapPeak, verifierHeapPeak, secondHalfSessions, secondHalfHeapPeak, bytes} as its last line.
import { readFileSync } from 'node:fs';
import { getHeapStatistics } from 'node:v8';
import { archiveSource, writeArchive } from '../dist/store/archive/archive-write.js';
import { openFileReader } from '../dist/store/open-store.js';
import { ARCHIVE_EXPORT } from '../dist/store/reader.js';

const [db, out, list, mode = 'verify', exporters = 'two-exporters'] = process.argv.slice(2);
if (!['verify', 'verify-after', 'write-only'].includes(mode)) throw new Error(`unknown mode ${mode}`);
const ids = readFileSync(list, 'utf8').split('\n').filter(Boolean);
let heapPeak = 0;
const timer = setInterval(() => (heapPeak = Math.max(heapPeak, getHeapStatistics().used_heap_size)), 5);
const started = performance.now();
const reader = openFileReader(db);
let writtenMs = 0;
const { items, secondHalf } = exporters === 'one-exporter' ? { items: reader.exportSessions(ids, ARCHIVE_EXPORT) } : archiveSource(reader, ids, out);
const written = await writeArchive(items, out, {
  secondHalf,
  verify: mode !== 'write-only',
  verifyBehind: mode === 'verify',
  afterWrite: () => (writtenMs = performance.now() - started),
});
const ms = performance.now() - started;
clearInterval(timer);
heapPeak = Math.max(heapPeak, getHeapStatistics().used_heap_size);
await reader.close();
process.stdout.write(`${JSON.stringify({ ms, writtenMs: writtenMs || ms, heapPeak, verifierHeapPeak: written.verifierHeapPeak ?? 0, secondHalfSessions: written.secondHalfSessions ?? 0, secondHalfHeapPeak: written.secondHalfHeapPeak ?? 0, bytes: written.bytes })}\n`);
