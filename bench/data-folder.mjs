// The data folder beside the database, against coreutils on identical copies:
//  - `stats` (which walks the folder and looks every orphan and legacy id up) against `du -sb`,
//    with `stats` on the same database outside a data folder for what the database part costs;
//  - `clean --legacy-json --apply` (archive, read it back and verify every entry, then remove)
//    against `tar czf` of the same folders followed by `rm -rf` (no verification).
// The folder: a generated database, a snapshot repository of loose objects, the pre-SQLite JSON
// tree of the database's own sessions, orphan session diffs. BENCH_FOLDER_SIZE=50MB (default
// 200MB) sets the database, BENCH_FOLDER_OBJECTS=20000 (default 100000) the snapshot's objects.
import { cpSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, MB, fixture, fmtBytes, fmtMs, fmtRatio, log, machine, parseSize, run, scratchDir, table } from './lib.mjs';

const NODE = process.execPath;

async function legacyTree() {
  return import('../build/dev/test/fixtures/legacy-json.js');
}

/** A data folder: database, snapshot objects, the legacy tree, orphan diffs. */
async function buildFolder(root, db, objects) {
  const folder = join(root, 'opencode');
  mkdirSync(folder, { recursive: true });
  cpSync(db, join(folder, 'opencode.db'));
  const objectsDir = join(folder, 'snapshot', 'prj', 'wt', 'objects');
  for (let i = 0; i < objects; i++) {
    const dir = join(objectsDir, (i % 256).toString(16).padStart(2, '0'));
    if (i < 256) mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `${i.toString(16).padStart(38, '0')}`), Buffer.alloc(200 + (i % 800), i % 251));
  }
  mkdirSync(join(folder, 'storage', 'session_diff'), { recursive: true });
  for (let i = 0; i < 1000; i++) writeFileSync(join(folder, 'storage', 'session_diff', `ses_orphan${String(i).padStart(16, '0')}.json`), `[{"file":"f${i}","patch":"${'x'.repeat(500)}"}]`);
  const tree = (await legacyTree()).writeLegacyJsonTree(join(folder, 'opencode.db'));
  return { folder, tree };
}

export async function dataFolderBench() {
  const size = process.env.BENCH_FOLDER_SIZE ?? '200MB';
  const objects = Number(process.env.BENCH_FOLDER_OBJECTS ?? 100_000);
  const fx = await fixture({ label: size, targetBytes: parseSize(size) });
  const root = scratchDir('data-folder');
  log(`building a data folder (${objects} snapshot objects, the legacy tree) ...`);
  const { folder, tree } = await buildFolder(join(root, 'a'), fx.db, objects);
  cpSync(join(root, 'a'), join(root, 'b'), { recursive: true });
  const peerFolder = join(root, 'b', 'opencode');
  const alone = join(root, 'alone');
  mkdirSync(alone);
  cpSync(fx.db, join(alone, 'opencode.db'));
  const env = { XDG_DATA_HOME: join(root, 'a'), XDG_CONFIG_HOME: join(root, 'config'), HOME: join(root, 'a') };

  run('du', ['-sb', folder]); // warm the page cache for both
  const du = run('du', ['-sb', folder]);
  const stats = run(NODE, [CLI, '--db', join(folder, 'opencode.db'), '--json', 'stats'], { env });
  const statsAlone = run(NODE, [CLI, '--db', join(alone, 'opencode.db'), '--json', 'stats'], { env });
  if (stats.status !== 0) throw new Error(stats.stderr);
  const files = JSON.parse(stats.stdout).files;
  const walked = files.filter((f) => f.inDataFolder).reduce((n, f) => n + f.bytes, 0);
  if (walked !== Number(du.stdout.split('\t')[0])) throw new Error(`stats says ${walked}, du -sb ${du.stdout}`);

  const legacyDirs = readdirSync(join(peerFolder, 'storage')).filter((d) => d !== 'session_diff' && d !== 'migration');
  const clean = run(NODE, [CLI, '--db', join(folder, 'opencode.db'), '--json', 'clean', '--legacy-json', '--apply', '--yes'], { env });
  if (clean.status !== 0) throw new Error(clean.stderr);
  const result = JSON.parse(clean.stdout);
  const peer = run(`cd ${JSON.stringify(join(peerFolder))} && tar czf ../legacy.tar.gz ${legacyDirs.map((d) => `storage/${d}`).join(' ')} && rm -rf ${legacyDirs.map((d) => `storage/${d}`).join(' ')}`, [], { shell: true });
  if (peer.status !== 0) throw new Error(peer.stderr);
  const statsWalk = stats.ms - statsAlone.ms;
  const rows = [
    ['stats (database and folder)', fmtMs(stats.ms), '-', fmtBytes((stats.maxRssKB ?? 0) * 1024)],
    ['stats on the database alone', fmtMs(statsAlone.ms), '-', fmtBytes((statsAlone.maxRssKB ?? 0) * 1024)],
    ['the folder part of stats (difference)', fmtMs(statsWalk), `${fmtRatio(du.ms / statsWalk)} of du's speed`, '-'],
    ['du -sb', fmtMs(du.ms), '-', fmtBytes((du.maxRssKB ?? 0) * 1024)],
    [`clean --legacy-json --apply (${result.removed.legacyJson} files, archived and verified)`, fmtMs(clean.ms), `${fmtRatio(peer.ms / clean.ms)} of tar+rm's speed`, fmtBytes((clean.maxRssKB ?? 0) * 1024)],
    ['tar czf + rm -rf (no verification)', fmtMs(peer.ms), '-', fmtBytes((peer.maxRssKB ?? 0) * 1024)],
  ];
  const markdown = [
    `Data folder: ${fmtBytes(walked)} (database ${fmtBytes(fx.summary.fileBytes)}, ${objects} snapshot objects, the legacy tree of ${tree.sessions.length} sessions, ${tree.messages} messages, ${tree.parts} parts in ${tree.files.length} files, 1000 orphan diffs), warm page cache.`,
    '',
    table(['what', 'time', 'vs peer', 'peak RSS'], rows),
  ].join('\n');
  rmSync(root, { recursive: true, force: true });
  return { markdown, machine: machine() };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await dataFolderBench();
  const m = result.machine;
  process.stdout.write(`${result.markdown}\n\nMachine: ${m.nproc} cores (${m.cpu}), ${m.memory}, Node ${m.node}, sqlite3 ${m.sqlite3}.\n`);
}
