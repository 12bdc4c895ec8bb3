// Runs event compaction in its own process (the built code in dist/), for the crash, concurrency
// and memory tests: node compact-child.mjs <db> [--orphans] [--reclaim]
// Prints one JSON line per event: {ready}, {progress}, then {done, result, reclaim, heapPeak, vmHwm}.
import { readFileSync } from 'node:fs';
import { compactEvents } from '../../dist/store/sqlite/event-compaction.js';
import { SqliteWriter } from '../../dist/store/sqlite/sqlite-writer.js';

const [db, ...flags] = process.argv.slice(2);
if (!db) {
  process.stderr.write('usage: compact-child.mjs <db> [--orphans] [--reclaim]\n');
  process.exit(2);
}
let heapPeak = process.memoryUsage().heapUsed;
const sampleHeap = () => {
  heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed);
};
/** Peak resident set size of this process (Linux), in bytes. */
const vmHwm = () => {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    return match ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
};

const writer = SqliteWriter.open(db);
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
const result = compactEvents(writer.conn, {
  orphans: flags.includes('--orphans'),
  onProgress: (progress) => {
    sampleHeap();
    process.stdout.write(`${JSON.stringify({ progress })}\n`);
  },
});
sampleHeap();
const reclaim = flags.includes('--reclaim') ? await writer.reclaim() : null;
sampleHeap();
await writer.close();
process.stdout.write(`${JSON.stringify({ done: true, result, reclaim, heapPeak, vmHwm: vmHwm() })}\n`);
