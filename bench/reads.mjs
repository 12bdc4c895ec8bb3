// The read commands on a 1 GB database holding one 300 MB PDF (issue 12), each beside its peer:
//   stats, the first time (our part index built from nothing) and again on the unchanged file;
//   list; show of the PDF's session; attachment --out of the PDF; a retention plan
//   (retentionFacts(true) + the planner, bench/plan-probe.mjs), first and again.
// Ours: fresh `node dist/bin/session-keeper.js` processes under /usr/bin/time (peak RSS of the whole process),
// V8 heap from --trace-gc (the largest heap a collection started from: the peak, to within one
// young generation). Peers: the sqlite3 CLI doing the same job the plain way. Median of BENCH_N
// runs (default 3); the index is removed before every "first" run. BENCH_BEFORE=<checkout> adds a
// column for another build of the project (e.g. the commit before this work), run the same way.
// Prints a markdown section.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CLI, GB, MB, ROOT, fixture, fmtBytes, fmtMs, fmtRatio, log, machine, median, run, scratchDir, table, measure as measureRuns } from './lib.mjs';

const N = Number(process.env.BENCH_N ?? 3);
const measure = (name, once, options = {}) => measureRuns(name, once, { n: N, ...options });
const HUGE = Number(process.env.BENCH_HUGE_MB ?? 300) * MB;
const SQLITE = '/usr/bin/sqlite3';

async function sha256(path) {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk);
  return hash.digest('hex');
}

export async function reads() {
  const fx = await fixture({ label: '1GB', targetBytes: 1 * GB, hugeAttachmentBytes: HUGE });
  const { hugePartId: partId, hugeSessionId: sessionId } = fx.summary;
  const dir = scratchDir('reads');
  const env = { XDG_CACHE_HOME: join(dir, 'xdg-cache') };
  const dropIndex = () => rmSync(join(dir, 'xdg-cache'), { recursive: true, force: true });
  const cacheDir = join(dir, 'attachments');
  const before = process.env.BENCH_BEFORE;
  // A build from before the CLI bundle has only dist/cli/main.js.
  const cliOf = (root) => (root ? [join(root, 'dist', 'bin', 'session-keeper.js'), join(root, 'dist', 'cli', 'main.js')].find((path) => existsSync(path)) : CLI);
  const command = (root) => (args) => () => run(process.execPath, ['--trace-gc', cliOf(root), '--db', fx.db, '--cache-dir', cacheDir, '--json', ...args], { env });
  const ours = command(null);
  const old = command(before);
  // Output to /dev/null: the peer's cost is the query and the printing, not our pipe.
  const peer = (sql, flags = '') => () => run(`${SQLITE} ${flags} '${fx.db}' "${sql}" > /dev/null`, [], { shell: true });
  const out = join(dir, 'ours.pdf');
  const peerOut = join(dir, 'peer.pdf');
  const urlSql = `SELECT substr(json_extract(data,'$.url'), instr(json_extract(data,'$.url'), ',')+1) FROM part WHERE id='${partId}'`;

  // Warm the page cache once, and take the peer's PDF as the reference.
  run(`set -o pipefail; ${SQLITE} '${fx.db}' "${urlSql}" | base64 -d > '${peerOut}'`, [], { shell: true });
  const expected = await sha256(peerOut);

  const rows = [];
  const pair = (what, oursRun, peerRun, note = '', beforeRun = null) => rows.push({ what, ours: oursRun, peer: peerRun, note, before: beforeRun });
  /** The same run on the other build, when one is given. */
  const was = (name, once, options) => (before ? measure(`before: ${name}`, once, options) : null);

  const statsPeer = measure(
    'peer: stats',
    peer(
      `SELECT count(*) FROM session; SELECT count(*) FROM session WHERE parent_id IS NULL; SELECT count(*), sum(length(data)) FROM message;
       SELECT count(*), sum(length(data)) FROM part; SELECT count(*), sum(length(data)) FROM event; SELECT count(*) FROM part WHERE instr(data, '\\"data:') > 0;`,
    ),
  );
  pair('stats (first: index built)', measure('ours: stats first', ours(['stats']), { before: dropIndex }), statsPeer, 'reads every part once', was('stats', old(['stats'])));
  pair('stats (again, file unchanged)', measure('ours: stats again', ours(['stats'])), statsPeer, 'from the index', rows.at(-1).before);
  pair(
    'list --limit 50',
    measure('ours: list', ours(['list', '--limit', '50'])),
    measure('peer: list', peer('SELECT id, parent_id, title, time_created, time_updated FROM session ORDER BY time_updated DESC, id DESC LIMIT 50')),
    'peer: no bytes per session',
    was('list', old(['list', '--limit', '50'])),
  );
  dropIndex();
  pair(
    'show (the PDF session, not indexed)',
    measure('ours: show', ours(['show', sessionId, '--limit', '100']), { before: dropIndex }),
    measure('peer: show', peer(`SELECT m.id, m.data, p.id, p.data FROM message m JOIN part p ON p.message_id = m.id WHERE m.session_id = '${sessionId}' ORDER BY m.time_created, p.time_created`, '-json')),
    'peer: the rows as JSON, PDF included',
    was('show', old(['show', sessionId, '--limit', '100'])),
  );
  run(process.execPath, [CLI, '--db', fx.db, '--cache-dir', cacheDir, '--json', 'stats'], { env });
  pair('show (indexed: read around the PDF)', measure('ours: show indexed', ours(['show', sessionId, '--limit', '100'])), rows.at(-1).peer, '', rows.at(-1).before);
  const attachment = measure('ours: attachment --out', ours(['attachment', partId, '--out', out]), {
    before: () => {
      rmSync(cacheDir, { recursive: true, force: true });
      rmSync(out, { force: true });
    },
  });
  if ((await sha256(out)) !== expected) throw new Error('attachment --out: wrong bytes');
  const attachmentPeer = measure('peer: sqlite3 | base64 -d', () => run(`set -o pipefail; ${SQLITE} '${fx.db}' "${urlSql}" | base64 -d > '${peerOut}'`, [], { shell: true }), {
    before: () => rmSync(peerOut, { force: true }),
  });
  const attachmentBefore = was('attachment --out', old(['attachment', partId, '--out', out]), {
    before: () => {
      rmSync(cacheDir, { recursive: true, force: true });
      rmSync(out, { force: true });
    },
  });
  pair('attachment --out (300 MB PDF)', attachment, attachmentPeer, `sha256 ${expected.slice(0, 12)}… both; --out written from the cache entry's handle`, attachmentBefore);
  const clearCache = () => rmSync(cacheDir, { recursive: true, force: true });
  pair(
    'attachment (300 MB PDF, into the cache)',
    measure('ours: attachment to the cache', ours(['attachment', partId]), { before: clearCache }),
    attachmentPeer,
    'what a shell asks for; its handle is what streams read',
    was('attachment to the cache', old(['attachment', partId]), { before: clearCache }),
  );
  const probeOf = (root) => () => {
    const r = run(process.execPath, [join(ROOT, 'bench', 'plan-probe.mjs'), fx.db, ...(root ? [root] : [])], { env });
    const summary = r.status === 0 ? JSON.parse(r.stdout.trim().split('\n').pop()) : null;
    return { ...r, ms: summary ? summary.factsMs + summary.planMs : r.ms, heap: summary?.heapUsed ?? null };
  };
  const probe = probeOf(null);
  const planPeer = measure(
    'peer: plan sizes',
    peer('SELECT session_id, sum(length(data)) FROM message GROUP BY session_id; SELECT session_id, sum(length(data)) FROM part GROUP BY session_id; SELECT aggregate_id, sum(length(data)) FROM event GROUP BY aggregate_id;'),
  );
  const planBefore = was('plan', probeOf(before));
  pair('retention plan, in-process (first)', measure('ours: plan first', probe, { before: dropIndex }), planPeer, 'retentionFacts(true) + planner; peer: the three sums, whole process', planBefore);
  pair('retention plan, in-process (again)', measure('ours: plan again', probe), planPeer, 'from the index', planBefore);
  return { fx, rows };
}

export function readsMarkdown({ fx, rows }) {
  const { cpu, nproc, node } = machine();
  const withBefore = rows.some((r) => r.before);
  const body = rows.map((r) => [
    r.what,
    `${fmtMs(r.ours.ms)} (${fmtMs(r.ours.cpu)})`,
    fmtBytes(r.ours.rss),
    r.ours.heap === null ? '-' : fmtBytes(r.ours.heap),
    ...(withBefore ? [r.before ? `${fmtMs(r.before.ms)} (${fmtMs(r.before.cpu)}), ${fmtBytes(r.before.rss)}` : '-'] : []),
    `${fmtMs(r.peer.ms)} (${fmtMs(r.peer.cpu)})`,
    fmtBytes(r.peer.rss),
    fmtRatio(r.peer.ms / r.ours.ms),
    r.note,
  ]);
  return (
    `Database ${fx.key}: ${fmtBytes(fx.summary.fileBytes)}, ${fx.summary.sessions} sessions, ${fx.summary.parts} parts, one ${fmtBytes(HUGE)} PDF ` +
    `(a ${fmtBytes((HUGE * 4) / 3)} value). Each run a fresh process; median of ${N}, peak RSS the largest of the runs. ${cpu}, ${nproc} cores ` +
    `(shared with other work, so wall times move with its load; cpu is user + system of the whole process tree), Node ${node}. ` +
    `"In-process" rows time the call alone (process start excluded, though its cpu is the process's) and report the heap after it.\n\n` +
    table(['command', 'ours wall (cpu)', 'ours peak RSS', 'ours peak heap', ...(withBefore ? ['before: wall (cpu), peak RSS'] : []), 'peer wall (cpu)', 'peer peak RSS', 'wall vs peer', 'note'], body)
  );
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${readsMarkdown(await reads())}\n`);
}
