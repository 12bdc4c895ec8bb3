// A retention plan as the startup check and the dialog make it: a fresh reader, retentionFacts(true)
// and the planner with a size limit of half the store. Prints one JSON line: {factsMs, planMs, evict,
// heapUsed}. Run twice on an unchanged file to see the second answered from our index's memo.
// Usage: node bench/plan-probe.mjs <db> [project root whose dist/ to use, default this one]
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { getHeapStatistics } from 'node:v8';

const [db, root = join(import.meta.dirname, '..')] = process.argv.slice(2);
const dist = (path) => pathToFileURL(join(root, 'dist', path)).href;
const { planRetention } = await import(dist('core/planner.js'));
const { openFileReader } = await import(dist('store/open-store.js'));
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
