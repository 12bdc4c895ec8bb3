// The very first page in a fresh Node process, as an app pays it when its dialog opens: import
// of the store module, then open + listSessions on a cold JIT and a new connection. Prints one
// JSON line: {importMs, addonMs, firstMs, secondMs}. With --preload-addon, better-sqlite3's native
// addon is loaded (and timed as addonMs) before the first page, which then excludes it.
// Usage: node bench/first-call.mjs <db> [limit] [--preload-addon]
const [db, limitText = '50', flag] = process.argv.slice(2);
const limit = Number(limitText);
let start = performance.now();
const { openFileReader } = await import('../dist/store/open-store.js');
const importMs = performance.now() - start;
let addonMs = null;
if (flag === '--preload-addon') {
  const { default: Database } = await import('better-sqlite3');
  start = performance.now();
  new Database(':memory:').close();
  addonMs = performance.now() - start;
}
const page = async () => {
  const begin = performance.now();
  const store = openFileReader(db);
  const result = await store.listSessions({ limit });
  await store.close();
  if (result.sessions.length !== limit) throw new Error(`short page: ${result.sessions.length}`);
  return performance.now() - begin;
};
const firstMs = await page();
const secondMs = await page();
process.stdout.write(`${JSON.stringify({ importMs, addonMs, firstMs, secondMs })}\n`);
