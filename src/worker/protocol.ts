/**
 * The typed request protocol between the pool's owner and its worker threads. Workers answer
 * with an envelope, because an Error's own fields (our error code) do not survive the thread hop.
 */
import { z } from 'zod';
import { pageOptionsSchema, statsOptionsSchema } from '../core/api.js';
import type { SkErrorCode } from '../core/errors.js';
import type { SessionStore } from '../store/store.js';

const target = { db: z.string().min(1) };

export const workerTaskSchema = z.discriminatedUnion('op', [
  z.object({ op: z.literal('dataVersion'), ...target }),
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
]);
export type WorkerTask = z.infer<typeof workerTaskSchema>;

/** Every reply carries the worker's V8 heap in use, so the owner can watch the memory ceiling. */
export type WorkerReply<T = unknown> = ({ ok: true; value: T } | { ok: false; code: SkErrorCode; message: string }) & {
  heapUsed: number;
};

/** Runs one task on a store: the same dispatch for pool workers and for stores on the main thread. */
export function runTask(store: SessionStore, task: WorkerTask): Promise<unknown> {
  switch (task.op) {
    case 'dataVersion':
      return store.dataVersion();
    case 'stats':
      return store.stats(task.options);
    case 'list':
      return store.listSessions(task.options);
    case 'show':
      return store.showSession(task.sessionId, task.options);
    case 'attachment':
      return store.extractAttachment(task.ref, task.cacheDir, task.out);
  }
}
