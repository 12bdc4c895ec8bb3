// Preloaded with `node --import ./bench/heap-probe.mjs`: at exit, prints the main thread's V8
// heap figures as one line on stderr, tagged HEAP-PROBE. For a loader that keeps everything it
// read until exit (the naive loader), the used heap at exit is its peak; total_heap_size is
// the heap V8 had committed (it rarely shrinks), a high-water mark for the others.
import { getHeapStatistics } from 'node:v8';

let peakUsed = 0;
const sample = () => {
  peakUsed = Math.max(peakUsed, getHeapStatistics().used_heap_size);
};
setInterval(sample, 10).unref();
process.on('exit', () => {
  sample();
  const h = getHeapStatistics();
  process.stderr.write(
    `HEAP-PROBE ${JSON.stringify({ usedAtExit: h.used_heap_size, peakUsedSampled: peakUsed, totalHeap: h.total_heap_size, heapLimit: h.heap_size_limit, mallocedPeak: h.peak_malloced_memory })}\n`,
  );
});
