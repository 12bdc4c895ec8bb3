// Serves one large attachment the two ways a shell does, in this process, and reports memory:
//   web     : web mode (startWebServer, which forks the utility). Prints its port on the first line;
//             the caller fetches over HTTP, then writes "report" on stdin.
//   utility : the Electron path's stand-in. The utility is forked (child_process.fork, as Electron's
//             utilityProcess.fork would start it) and the attachment is read through the very
//             function Electron's protocol.handle calls (attachmentResponse), once per range given.
// The last line of stdout is JSON: this process's peak heap and RSS, the utility's peak RSS and its
// reported heaps, and (utility mode) the sha256 of each range read.
// Usage: node serve-attachment.mjs <web|utility> <db> <cacheDir> <partId> [ranges as JSON, utility mode]
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { getHeapStatistics } from 'node:v8';
import { attachmentResponse } from '../../dist/main/attachment-http.js';
import { nodeSpawner, UtilityClient } from '../../dist/main/client.js';
import { startWebServer } from '../../dist/web/server.js';

const [mode, db, cacheDir, partId, rangesArg] = process.argv.slice(2);
let heapPeak = 0;
const sample = () => {
  heapPeak = Math.max(heapPeak, getHeapStatistics().used_heap_size);
};
const timer = setInterval(sample, 10);
/** Peak resident memory of a process, from the kernel (VmHWM), in bytes. */
const peakRss = (pid) => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
const quiet = { onStderr: () => undefined };

async function report(client, extra) {
  const health = await client.request('health');
  clearInterval(timer);
  sample();
  const summary = { mode, heapPeak, rssPeak: peakRss(process.pid), utility: { rssPeak: peakRss(health.pid), heapPeak: health.heapPeak, workerHeapPeak: health.workerHeapPeak, attachmentHandles: health.attachmentHandles }, ...extra };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

if (mode === 'web') {
  const server = await startWebServer({ db, cacheDir, token: 'memory', env: process.env, client: { timeoutMs: 0 } });
  process.stdout.write(`${server.port}\n`);
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() !== 'report') continue;
    await report(server.client, {});
    await server.close();
    break;
  }
} else {
  const client = new UtilityClient(nodeSpawner({ db, cacheDir, env: process.env, ...quiet }), { timeoutMs: 0 }).start();
  const attachment = await client.request('attachment', { ref: partId });
  const reads = [];
  for (const range of JSON.parse(rangesArg ?? '[null]')) {
    const headers = range ? { range } : {};
    const response = await attachmentResponse(client, new Request(`sk-attachment://cache/${attachment.relPath}`, { headers }));
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of response.body) {
      hash.update(chunk);
      bytes += chunk.length;
      sample();
    }
    reads.push({ range, status: response.status, bytes, sha256: hash.digest('hex') });
  }
  await report(client, { attachment: { bytes: attachment.bytes, sha256: attachment.sha256 }, reads });
  await client.close();
}
