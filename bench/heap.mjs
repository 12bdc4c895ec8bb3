// Benchmark 2: peak V8 heap and RSS while browsing everything, against the naive loader, on the
// 1 GB database (BENCH_HEAP_SIZE to change). Each run is a fresh process under /usr/bin/time -v
// (max RSS), preloaded with bench/heap-probe.mjs (main-thread heap at exit / sampled peak).
//   ours  : test/memory/browse-all.mjs — every session page, every message page, every
//           attachment decoded to a file (SessionService, piscina workers); default heap, and
//           again under --max-old-space-size=64
//   naive : test/memory/naive-loader.mjs — the whole part table into memory, then JSON.parse
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT, fixture, fmtBytes, fmtMs, fmtRatio, log, parseSize, run, scratchDir, table } from './lib.mjs';

const PROBE = join(ROOT, 'bench', 'heap-probe.mjs');

function probe(stderr) {
  const line = stderr.split('\n').find((l) => l.startsWith('HEAP-PROBE '));
  return line ? JSON.parse(line.slice('HEAP-PROBE '.length)) : null;
}

function lastJson(stdout) {
  const line = stdout.trim().split('\n').pop();
  try {
    return JSON.parse(line);
  } catch {
    return null;
  }
}

export async function heap({ label = process.env.BENCH_HEAP_SIZE ?? '1GB' } = {}) {
  const fx = await fixture({ label: label.toUpperCase(), targetBytes: parseSize(label) });
  log(`heap: ${fx.key} (${fmtBytes(fx.summary.fileBytes)})`);
  const rows = [];
  for (const [name, flags] of [
    ['ours: browse-all (default heap)', []],
    ['ours: browse-all (--max-old-space-size=64)', ['--max-old-space-size=64']],
  ]) {
    const cacheDir = scratchDir('heap-cache');
    const r = run('node', [...flags, '--import', PROBE, join(ROOT, 'test', 'memory', 'browse-all.mjs'), fx.db, cacheDir]);
    const out = lastJson(r.stdout);
    const p = probe(r.stderr);
    rows.push({
      name,
      ok: r.status === 0 && out !== null,
      ms: r.ms,
      rssKB: r.maxRssKB,
      mainHeapPeak: out?.mainHeapPeak ?? p?.peakUsedSampled,
      workerHeapPeak: out?.workerHeapPeak,
      totalHeap: p?.totalHeap,
      what: out ? `${out.sessions} sessions, ${out.parts} parts, ${out.attachments} attachments (${fmtBytes(out.attachmentBytes)}) decoded` : r.stderr.slice(-300),
    });
    log(`heap: ${name}: ${fmtMs(r.ms)}, RSS ${fmtBytes(r.maxRssKB * 1024)}, main heap ${fmtBytes(rows.at(-1).mainHeapPeak)}, worker ${fmtBytes(out?.workerHeapPeak)}`);
  }
  {
    const r = run('node', ['--import', PROBE, join(ROOT, 'test', 'memory', 'naive-loader.mjs'), fx.db]);
    const out = lastJson(r.stdout);
    const p = probe(r.stderr);
    const died = r.status !== 0;
    rows.push({
      name: 'naive loader (default heap)',
      ok: !died,
      ms: r.ms,
      rssKB: r.maxRssKB,
      mainHeapPeak: p ? Math.max(p.usedAtExit, p.peakUsedSampled) : null,
      workerHeapPeak: null,
      totalHeap: p?.totalHeap,
      what: died
        ? `died: ${/heap out of memory|Reached heap limit|Invalid string length/i.exec(r.stderr)?.[0] ?? `exit ${r.status} signal ${r.signal}`}`
        : `${out?.parts} parts loaded and parsed (nothing decoded)`,
    });
    log(`heap: naive: ${fmtMs(r.ms)}, RSS ${fmtBytes(r.maxRssKB * 1024)}, heap ${fmtBytes(rows.at(-1).mainHeapPeak)}`);
  }
  return { size: label.toUpperCase(), fileBytes: fx.summary.fileBytes, summary: fx.summary, rows };
}

export function heapMarkdown(result) {
  const ours = result.rows[0];
  const naive = result.rows[result.rows.length - 1];
  const t = table(
    ['run', 'wall', 'peak RSS', 'main V8 heap peak', 'worker V8 heap peak', 'main heap committed', 'did'],
    result.rows.map((r) => [
      r.name,
      fmtMs(r.ms),
      fmtBytes(r.rssKB * 1024),
      fmtBytes(r.mainHeapPeak),
      r.workerHeapPeak == null ? '-' : fmtBytes(r.workerHeapPeak),
      fmtBytes(r.totalHeap),
      r.ok ? r.what : `**failed**: ${r.what}`,
    ]),
  );
  const ratios =
    `Naive / ours (default heap): peak RSS ${fmtRatio(naive.rssKB / ours.rssKB)}, ` +
    `peak V8 heap ${fmtRatio(naive.mainHeapPeak / Math.max(ours.mainHeapPeak, ours.workerHeapPeak ?? 0))} ` +
    `(ours: the larger of main and worker heap).`;
  return `Database: ${result.size} target, ${fmtBytes(result.fileBytes)} file, ${result.summary.sessions} sessions, ${result.summary.parts} parts, ` +
    `${result.summary.attachments.count} attachments (${fmtBytes(result.summary.attachments.bytes)} decoded).\n\n${t}\n\n${ratios}`;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${heapMarkdown(await heap())}\n`);
}
