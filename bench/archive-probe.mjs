// Archives the sessions listed in a file (one id a line) and verifies the archive (unless the
// fourth argument is `write-only`), sampling the
// V8 heap every 5 ms. Prints {ms, heapPeak, bytes} as its last line.
import { readFileSync } from 'node:fs';
import { getHeapStatistics } from 'node:v8';
import { verifyArchive } from '../dist/store/archive/archive-read.js';
import { writeArchive } from '../dist/store/archive/archive-write.js';
import { openFileReader } from '../dist/store/open-store.js';

const [db, out, list, mode = 'verify'] = process.argv.slice(2);
const ids = readFileSync(list, 'utf8').split('\n').filter(Boolean);
let heapPeak = 0;
const timer = setInterval(() => (heapPeak = Math.max(heapPeak, getHeapStatistics().used_heap_size)), 5);
const started = performance.now();
const reader = openFileReader(db);
const written = await writeArchive(reader.exportSessions(ids), out);
if (mode === 'verify') await verifyArchive(out, written.sessions);
const ms = performance.now() - started;
clearInterval(timer);
heapPeak = Math.max(heapPeak, getHeapStatistics().used_heap_size);
await reader.close();
process.stdout.write(`${JSON.stringify({ ms, heapPeak, bytes: written.bytes })}\n`);
