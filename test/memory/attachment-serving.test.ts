/**
 * A 300 MB attachment served with Range the two ways the shells serve it, each shell and the
 * utility process under a 300 MB cap on their memory (RLIMIT_DATA, see test/helpers/memory-limit.ts):
 * through web mode's HTTP response, and through the function Electron's protocol.handle calls, with
 * the utility forked as Electron forks it. The bytes come from the handle the utility's worker
 * decoded into, in bounded chunks: every process stays under 300 MB RSS and 32 MB of heap, and the
 * sha256 is the sqlite3 CLI's. And a worker killed in the middle of a decode leaves no descriptor
 * open and no temporary file behind.
 */
import { spawn, execSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readlinkSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { beforeAll, describe, expect, it } from 'vitest';
import { createHugePartDatabase, type HugePartDatabase } from '../fixtures/huge-part.js';
import { SessionService } from '../../dist/main/service.js';
import { ROOT, tempDir } from '../helpers/env.js';
import { limitedCommand, memoryEnforcement, runUnderMemoryLimit } from '../helpers/memory-limit.js';

const MB = 1024 * 1024;
const RSS_LIMIT = 300 * MB;
const HEAP_LIMIT = 32 * MB;
const HARNESS = join(ROOT, 'test', 'memory', 'serve-attachment.mjs');
const dir = tempDir('sk-serving-');
const env = { ...process.env, XDG_DATA_HOME: join(dir, 'data'), XDG_CONFIG_HOME: join(dir, 'config'), XDG_CACHE_HOME: join(dir, 'xdg-cache') };
let fixture: HugePartDatabase;
let peerSha256: string;

beforeAll(() => {
  fixture = createHugePartDatabase(join(dir, 'opencode.db'), 300 * MB);
  const sql = `SELECT substr(json_extract(data, '$.url'), instr(json_extract(data, '$.url'), ',') + 1) FROM part WHERE id = '${fixture.partId}'`;
  peerSha256 = execSync(`sqlite3 ${JSON.stringify(fixture.path)} ${JSON.stringify(sql)} | base64 -d | sha256sum`, { encoding: 'utf8' }).split(' ')[0] as string;
}, 300_000);

interface Summary {
  heapPeak: number;
  rssPeak: number;
  utility: { rssPeak: number; heapPeak: number; workerHeapPeak: number; attachmentHandles: number };
  attachment?: { bytes: number; sha256: string };
  reads?: { range: string | null; status: number; bytes: number; sha256: string }[];
}

const half = (bytes: number): number => Math.floor(bytes / 2);

function expectWithinLimits(summary: Summary): void {
  expect(summary.rssPeak, 'the shell process').toBeLessThan(RSS_LIMIT);
  expect(summary.heapPeak, 'the shell process').toBeLessThan(HEAP_LIMIT);
  expect(summary.utility.rssPeak, 'the utility process').toBeLessThan(RSS_LIMIT);
  expect(summary.utility.heapPeak, 'the utility main thread').toBeLessThan(HEAP_LIMIT);
  expect(summary.utility.workerHeapPeak, 'the worker that decoded it').toBeLessThan(HEAP_LIMIT);
}

describe.runIf(process.platform === 'linux')('a 300 MB attachment served with Range, every process under 300 MB', () => {
  it('can cap a whole process here', () => {
    expect(memoryEnforcement().enforcement, memoryEnforcement().detail).toBe('rlimit-data');
  });

  it('through the Electron path (protocol handler and utility under child_process.fork)', () => {
    const { decodedBytes } = fixture;
    const ranges = [`bytes=0-${half(decodedBytes) - 1}`, `bytes=${half(decodedBytes)}-`, null];
    const run = runUnderMemoryLimit(process.execPath, [HARNESS, 'utility', fixture.path, join(dir, 'cache-electron'), fixture.partId, JSON.stringify(ranges)], {
      rssBytes: RSS_LIMIT,
      env,
    });
    expect(run.status, run.stderr.slice(-2000)).toBe(0);
    const summary = JSON.parse(run.stdout.trim().split('\n').pop() as string) as Summary;
    expect(summary.attachment).toEqual({ bytes: decodedBytes, sha256: peerSha256 });
    const [first, second, whole] = summary.reads ?? [];
    expect([first?.status, second?.status, whole?.status]).toEqual([206, 206, 200]);
    expect((first?.bytes ?? 0) + (second?.bytes ?? 0)).toBe(decodedBytes);
    expect(whole).toMatchObject({ bytes: decodedBytes, sha256: peerSha256 });
    expectWithinLimits(summary);
    console.log(`electron path: shell ${Math.round(summary.rssPeak / MB)} MB RSS / ${Math.round(summary.heapPeak / MB)} MB heap, utility ${Math.round(summary.utility.rssPeak / MB)} MB RSS / ${Math.round(summary.utility.heapPeak / MB)} MB heap, worker heap ${Math.round(summary.utility.workerHeapPeak / MB)} MB`);
  }, 300_000);

  it('through web mode (HTTP Range requests against `serve`, utility forked by it)', async () => {
    const { file, args } = limitedCommand(process.execPath, [HARNESS, 'web', fixture.path, join(dir, 'cache-web'), fixture.partId], RSS_LIMIT);
    const child = spawn(file, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (text: Buffer) => (stderr += text.toString()));
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    try {
      const port = Number((await lines.next()).value);
      expect(port, stderr).toBeGreaterThan(0);
      const call = (path: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; headers: Record<string, unknown>; sha256: string; bytes: number; text: string }> =>
        new Promise((resolve, reject) => {
          const req = request({ host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: { 'x-session-keeper-token': 'memory', origin: `http://127.0.0.1:${port}`, ...options.headers } }, (res) => {
            const hash = createHash('sha256');
            let bytes = 0;
            let text = '';
            res.on('data', (chunk: Buffer) => {
              hash.update(chunk);
              bytes += chunk.length;
              if (text.length < 4096) text += chunk.toString('utf8', 0, Math.min(chunk.length, 4096));
            });
            res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, sha256: hash.digest('hex'), bytes, text }));
          });
          req.on('error', reject);
          req.end(options.body);
        });
      const reply = await call('/api', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ method: 'attachment', params: { ref: fixture.partId } }) });
      expect(reply.status, reply.text).toBe(200);
      const { relPath, sha256 } = (JSON.parse(reply.text) as { result: { relPath: string; sha256: string } }).result;
      expect(sha256).toBe(peerSha256);
      const { decodedBytes } = fixture;
      const first = await call(`/attachment/${relPath}`, { headers: { range: `bytes=0-${half(decodedBytes) - 1}` } });
      const second = await call(`/attachment/${relPath}`, { headers: { range: `bytes=${half(decodedBytes)}-` } });
      const whole = await call(`/attachment/${relPath}?mime=application/pdf`);
      expect([first.status, second.status, whole.status]).toEqual([206, 206, 200]);
      expect(first.headers['content-range']).toBe(`bytes 0-${half(decodedBytes) - 1}/${decodedBytes}`);
      expect(first.bytes + second.bytes).toBe(decodedBytes);
      expect(whole).toMatchObject({ bytes: decodedBytes, sha256: peerSha256 });
      child.stdin.write('report\n');
      const summary = JSON.parse((await lines.next()).value as string) as Summary;
      expectWithinLimits(summary);
      console.log(`web mode: server ${Math.round(summary.rssPeak / MB)} MB RSS / ${Math.round(summary.heapPeak / MB)} MB heap, utility ${Math.round(summary.utility.rssPeak / MB)} MB RSS / ${Math.round(summary.utility.heapPeak / MB)} MB heap, worker heap ${Math.round(summary.utility.workerHeapPeak / MB)} MB`);
    } finally {
      child.kill();
    }
  }, 300_000);

  it('a worker killed while it decodes leaves no descriptor open and no temporary file', async () => {
    const cacheDir = join(dir, 'cache-crash');
    const tmp = join(cacheDir, 'tmp');
    const inCache = (): number =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`).startsWith(cacheDir);
        } catch {
          return false;
        }
      }).length;
    const service = await SessionService.open({ db: fixture.path, cacheDir, threads: 1 });
    try {
      const pending = service.attachment(fixture.partId).then(
        () => 'finished',
        (error: Error) => error.message,
      );
      // Killed once its temporary file holds a good part of the PDF: in the middle of the decode.
      const size = (): number => {
        try {
          return readdirSync(tmp).length;
        } catch {
          return 0;
        }
      };
      await expect.poll(size, { timeout: 60_000, interval: 20 }).toBeGreaterThan(0);
      expect(await service.terminateWorker()).toBe(true);
      expect(await pending).toMatch(/worker failed/);
      // Closed as the thread's environment is torn down: on a loaded 2-core machine that once took over 5 s.
      await expect.poll(inCache, { timeout: 30_000 }).toBe(0);
      expect(readdirSync(tmp)).toEqual([]);
      // piscina's replacement thread decodes it whole.
      const again = await service.attachment(fixture.partId);
      expect(again.sha256).toBe(peerSha256);
    } finally {
      await service.close();
    }
  }, 300_000);
});
