/**
 * The typed request protocol between the pool's owner and its worker threads. Workers answer
 * with an envelope, because an Error's own fields (our error code) do not survive the thread hop.
 */
import { z } from 'zod';
import { pageOptionsSchema, statsOptionsSchema } from '../core/api.js';
import type { FileHandle } from 'node:fs/promises';
import type { SkErrorCode } from '../core/errors.js';
import type { PageReader } from '../store/reader.js';

const target = { db: z.string().min(1) };

export const workerTaskSchema = z.discriminatedUnion('op', [
  z.object({ op: z.literal('stats'), ...target, options: statsOptionsSchema }),
  z.object({ op: z.literal('list'), ...target, options: pageOptionsSchema }),
  z.object({ op: z.literal('show'), ...target, sessionId: z.string().min(1).max(128), options: pageOptionsSchema }),
  z.object({
    op: z.literal('attachment'),
    ...target,
    ref: z.string().min(1).max(160),
    cacheDir: z.string().min(1),
    out: z.string().min(1).optional(),
  }),
  /** Decode into the cache and hand the open FileHandle back through the transfer list. */
  z.object({
    op: z.literal('attachment-handle'),
    ...target,
    ref: z.string().min(1).max(160),
    cacheDir: z.string().min(1),
  }),
]);
export type WorkerTask = z.infer<typeof workerTaskSchema>;

/**
 * Every reply carries the worker's V8 heap in use, so the owner can watch the memory ceiling. An
 * `attachment-handle` reply also carries the handle, moved (not copied) to the owner's thread.
 */
export type WorkerReply<T = unknown> = ({ ok: true; value: T; handle?: FileHandle } | { ok: false; code: SkErrorCode; message: string }) & {
  heapUsed: number;
};

/** Runs one task on a reader (a worker's own connection); `attachment-handle` is the worker's own (it moves a handle). */
export function runTask(reader: PageReader, task: Exclude<WorkerTask, { op: 'attachment-handle' }>): Promise<unknown> {
  switch (task.op) {
    case 'stats':
      return reader.stats(task.options);
    case 'list':
      return reader.listSessions(task.options);
    case 'show':
      return reader.showSession(task.sessionId, task.options);
    case 'attachment':
      return reader.extractAttachment(task.ref, task.cacheDir, task.out);
  }
}
