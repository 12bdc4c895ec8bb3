// Extraction of one 300 MB PDF (stored as a base64 data URL in one part, 400 MiB of JSON), each run
// a fresh process under /usr/bin/time, median of BENCH_N rounds (default 3, methods interleaved):
//   chunked : sk_chunks, 1 MiB at a time (valueChunks + the streaming decoder)
//   store   : the reader's extractAttachment with the extension (the product's path: chunked too)
//   store-whole: the same without it (SESSION_KEEPER_NO_CHUNK_EXTENSION=1, CAST(data AS BLOB): the path before sk_chunks)
//   fallback: valueChunks on a connection without the extension (one whole BLOB read, then chunks)
//   peer    : sqlite3 CLI, json_extract + substr of the URL, piped through `base64 -d` to a file
// Ours run with --max-old-space-size=64, as the memory tests do. Every output is checked against
// the peer's sha256. Prints a markdown table with ratios; data goes to bench/.data/ (BENCH_HUGE_MB
// sets the PDF size). Needs `npm run build` (dist/ and native/build/value_chunks).
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DATA, MB, ROOT, fmtBytes, fmtMs, fmtRatio, log, machine, median, run, scratchDir, table } from './lib.mjs';

const HUGE_MB = Number(process.env.BENCH_HUGE_MB ?? 300);
const N = Number(process.env.BENCH_N ?? 3);
const CHILD = join(ROOT, 'test', 'memory', 'extract-value.mjs'); // shared with the memory test

async function sha256(path) {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk);
  return hash.digest('hex');
}

/** The one-part database, made once and cached under bench/.data/. */
async function hugePartDb() {
  const dir = join(DATA, `extract-chunked-${HUGE_MB}MB`);
  const summaryFile = join(dir, 'summary.json');
  if (existsSync(summaryFile)) return JSON.parse(readFileSync(summaryFile, 'utf8'));
  const { createHugePartDatabase } = await import('../build/dev/test/fixtures/huge-part.js');
  mkdirSync(dir, { recursive: true });
  log(`generating a ${HUGE_MB} MB PDF part in ${dir} ...`);
  const made = createHugePartDatabase(join(dir, 'opencode.db'), HUGE_MB * MB);
  const summary = { ...made, fileBytes: statSync(made.path).size };
  writeFileSync(summaryFile, `${JSON.stringify(summary, null, 2)}\n`);
  return summary;
}

export async function extractChunked() {
  const fx = await hugePartDb();
  const dir = scratchDir('extract-chunked');
  const sql = `SELECT substr(json_extract(data,'$.url'), instr(json_extract(data,'$.url'), ',')+1) FROM part WHERE id='${fx.partId}'`;
  const methods = [
    { name: 'chunked (sk_chunks, 1 MiB)', key: 'chunked' },
    { name: 'reader.extractAttachment (chunked)', key: 'store' },
    { name: 'reader.extractAttachment, no extension (whole value)', key: 'store-whole', mode: 'store' },
    { name: 'valueChunks fallback (whole value)', key: 'whole' },
    { name: 'sqlite3 | base64 -d', key: 'peer' },
  ].map((m) => ({ ...m, out: join(dir, `${m.key}.pdf`), times: [], rss: [], heap: [] }));
  const once = (m) => {
    rmSync(m.out, { force: true });
    if (m.key === 'peer') {
      return run(`set -o pipefail; /usr/bin/sqlite3 '${fx.path}' "${sql}" | base64 -d > '${m.out}'`, [], { shell: true });
    }
    return run(process.execPath, ['--max-old-space-size=64', CHILD, fx.path, fx.partId, m.out, m.mode ?? m.key], {
      env: m.key === 'whole' || m.key === 'store-whole' ? { SESSION_KEEPER_NO_CHUNK_EXTENSION: '1' } : {},
    });
  };
  // Warm the page cache with the peer, then take its output as the reference.
  const peerMethod = methods.find((m) => m.key === 'peer');
  const warm = once(peerMethod);
  if (warm.status !== 0) throw new Error(`peer pipeline failed: ${warm.stderr.slice(-300)}`);
  const expected = await sha256(peerMethod.out);
  for (let round = 0; round < N; round++) {
    for (const m of methods) {
      const r = once(m);
      if (r.status !== 0) throw new Error(`${m.name} failed (${r.status}): ${r.stderr.slice(-300)}`);
      m.times.push(r.ms);
      m.rss.push(r.maxRssKB * 1024);
      if (m.key !== 'peer') {
        const summary = JSON.parse(r.stdout.trim().split('\n').pop());
        if (summary.sha256 !== expected) throw new Error(`${m.name}: sha256 ${summary.sha256}, expected ${expected}`);
        m.heap.push(summary.heapPeak);
      } else if ((await sha256(m.out)) !== expected) {
        throw new Error('peer output changed between runs');
      }
      rmSync(m.out, { force: true });
    }
    log(`round ${round + 1}/${N}: ${methods.map((m) => `${m.key} ${fmtMs(m.times.at(-1))} ${fmtBytes(m.rss.at(-1))}`).join(', ')}`);
  }
  for (const m of methods) {
    m.ms = median(m.times);
    m.peakRss = Math.max(...m.rss);
    m.heapPeak = m.heap.length ? Math.max(...m.heap) : null;
  }
  return { fx, expected, methods };
}

export function extractChunkedMarkdown({ fx, expected, methods }) {
  const peer = methods.find((m) => m.key === 'peer');
  const chunked = methods.find((m) => m.key === 'chunked');
  const rows = methods.map((m) => [
    m.name,
    fmtMs(m.ms),
    ((fx.decodedBytes / MB) / (m.ms / 1000)).toFixed(0),
    fmtRatio(peer.ms / m.ms),
    fmtBytes(m.peakRss),
    fmtRatio(m.peakRss / chunked.peakRss),
    m.heapPeak === null ? '-' : fmtBytes(m.heapPeak),
  ]);
  const { cpu, nproc, node } = machine();
  return (
    `One part: a ${fmtBytes(fx.decodedBytes)} PDF as a ${fmtBytes(fx.valueBytes)} JSON value (sha256 ${expected.slice(0, 16)}…, ` +
    `identical for every run); ${fmtBytes(fx.fileBytes)} database. Each run a new process, median wall of ${N}, ` +
    `peak RSS the largest of the runs (of the largest process, for the pipeline); ${cpu}, ${nproc} cores, Node ${node}.\n\n` +
    table(['run', 'median wall', 'MB/s', 'speed vs peer', 'peak RSS', 'RSS vs chunked', 'peak heap'], rows)
  );
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${extractChunkedMarkdown(await extractChunked())}\n`);
}
