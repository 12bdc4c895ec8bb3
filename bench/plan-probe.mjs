// A retention plan as the startup check and the dialog make it: a fresh reader, retentionFacts(true)
// and the planner with a size limit of half the store. Prints one JSON line: {factsMs, planMs, evict,
// heapUsed}. Run twice on an unchanged file to see the second answered from our index's memo.
// Usage: node bench/plan-probe.mjs <db>
import { getHeapStatistics } from 'node:v8';
import { planRetention } from '../dist/core/planner.js';
import { openFileReader } from '../dist/store/open-store.js';

const [db] = process.argv.slice(2);
const reader = openFileReader(db);
let start = performance.now();
const { facts, storeBytes } = await reader.retentionFacts(true);
const factsMs = performance.now() - start;
start = performance.now();
const plan = planRetention({ sessions: facts, storeBytes, now: Date.now(), policy: { maxSizeMB: Math.round(storeBytes / 2 / 1048576), orderBy: 'created', keep: [] } });
const planMs = performance.now() - start;
const heapUsed = getHeapStatistics().used_heap_size;
await reader.close();
process.stdout.write(`${JSON.stringify({ factsMs, planMs, evict: plan.evict.length, heapUsed })}\n`);
