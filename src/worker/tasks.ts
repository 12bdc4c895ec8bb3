/**
 * A piscina worker thread: one read-only connection per database per thread, queries that
 * return small pages. Loaded by the pool (./pool.ts); never imported by anything else.
 */
import { getHeapStatistics } from 'node:v8';
import { oneLine, SkError } from '../core/errors.js';
import { openFileReader } from '../store/open-store.js';
import type { PageReader } from '../store/reader.js';
import { runTask, workerTaskSchema, type WorkerReply } from './task-protocol.js';

const readers = new Map<string, PageReader>();

function readerFor(db: string): PageReader {
  let reader = readers.get(db);
  if (!reader) {
    reader = openFileReader(db);
    readers.set(db, reader);
  }
  return reader;
}

export default async function handle(input: unknown): Promise<WorkerReply> {
  const heapUsed = (): number => getHeapStatistics().used_heap_size;
  try {
    const task = workerTaskSchema.parse(input);
    const value = await runTask(readerFor(task.db), task);
    return { ok: true, value, heapUsed: heapUsed() };
  } catch (error) {
    const code = error instanceof SkError ? error.code : 'internal';
    return { ok: false, code, message: oneLine(error), heapUsed: heapUsed() };
  }
}
