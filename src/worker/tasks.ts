/**
 * A piscina worker thread: one read-only connection per database per thread, queries that
 * return small pages. Loaded by the pool (./pool.ts); never imported by anything else.
 *
 * An attachment is decoded into the cache through a FileHandle this thread opens, and that open
 * handle is what goes back: moved through the transfer list (piscina's `move`), so the owner
 * reads the very bytes written here and never opens the file by name. If this thread dies first,
 * Node closes every handle it still holds.
 */
import type { FileHandle } from 'node:fs/promises';
import { getHeapStatistics } from 'node:v8';
import { move, transferableSymbol, valueSymbol } from 'piscina';
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

/** A reply whose handle travels in the transfer list: piscina posts `valueSymbol` with `transferableSymbol`. */
class HandleReply {
  constructor(
    private readonly reply: WorkerReply,
    private readonly handle: FileHandle,
  ) {}

  get [transferableSymbol](): object {
    return [this.handle];
  }

  get [valueSymbol](): object {
    return this.reply;
  }
}

export default async function handle(input: unknown): Promise<WorkerReply | ReturnType<typeof move>> {
  const heapUsed = (): number => getHeapStatistics().used_heap_size;
  try {
    const task = workerTaskSchema.parse(input);
    if (task.op === 'attachment-handle') {
      const opened = await readerFor(task.db).openAttachment(task.ref, task.cacheDir);
      return move(new HandleReply({ ok: true, value: opened.result, handle: opened.handle, heapUsed: heapUsed() }, opened.handle));
    }
    const value = await runTask(readerFor(task.db), task);
    return { ok: true, value, heapUsed: heapUsed() };
  } catch (error) {
    const code = error instanceof SkError ? error.code : 'internal';
    return { ok: false, code, message: oneLine(error), heapUsed: heapUsed() };
  }
}
