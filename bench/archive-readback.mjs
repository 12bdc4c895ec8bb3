// Reads an archive back as the verification does (readArchiveSummaries: every session's counts and
// digest) on this thread, and prints {sessions, cpuMs, ms, summaries} as one line; `summaries` is a
// sha256 of every session's id, counts and digest, to compare two builds' read-backs of one file.
import { createHash } from 'node:crypto';
import { readArchiveSummaries } from '../dist/store/archive/archive-read.js';

const [file] = process.argv.slice(2);
if (!file) throw new Error('usage: node bench/archive-readback.mjs <archive.json>');
const cpu = process.cpuUsage();
const started = performance.now();
const found = await readArchiveSummaries(file);
const used = process.cpuUsage(cpu);
const ms = performance.now() - started;
const summaries = createHash('sha256');
for (const s of found) summaries.update(`${s.id} ${JSON.stringify(s.counts)} ${s.digest}\n`);
process.stdout.write(`${JSON.stringify({ sessions: found.length, cpuMs: (used.user + used.system) / 1000, ms, summaries: summaries.digest('hex') })}\n`);
