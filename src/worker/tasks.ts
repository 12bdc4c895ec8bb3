/**
 * A piscina worker: one read-only connection per database per thread, queries that return small
 * pages. Loaded by the pool in src/main; never imported by anything else.
 */
import { getHeapStatistics } from 'node:v8';
import { oneLine, SkError } from '../core/errors.js';
import { SqliteStore } from '../store/sqlite/sqlite-store.js';
import { runTask, workerTaskSchema, type WorkerReply } from './protocol.js';

const stores = new Map<string, SqliteStore>();

function storeFor(db: string): SqliteStore {
  let store = stores.get(db);
  if (!store) {
    store = new SqliteStore(db, { readonly: true });
    stores.set(db, store);
  }
  return store;
}

async function run(input: unknown): Promise<unknown> {
  const task = workerTaskSchema.parse(input);
  return runTask(storeFor(task.db), task);
}

/** Closes this thread's connections (inline use; pool threads end with their thread). */
export async function closeAll(): Promise<void> {
  for (const store of stores.values()) await store.close();
  stores.clear();
}

export default async function handle(input: unknown): Promise<WorkerReply> {
  const heapUsed = (): number => getHeapStatistics().used_heap_size;
  try {
    const value = await run(input);
    return { ok: true, value, heapUsed: heapUsed() };
  } catch (error) {
    const code = error instanceof SkError ? error.code : 'internal';
    return { ok: false, code, message: oneLine(error), heapUsed: heapUsed() };
  }
}
