/**
 * The outcome of a thread that does one task for an archive (verify-behind.ts, second-half.ts):
 * its replies go to `take` until it returns the result; a `failed` reply, an error or an exit
 * before that rejects with one line naming `what`.
 */
import type { Worker } from 'node:worker_threads';
import { SkError, type SkErrorCode } from '../../core/errors.js';

export interface FailedReply {
  kind: 'failed';
  code: SkErrorCode;
  message: string;
}

/**
 * The V8 limits of an archive's threads: a young generation of 12 MB, not the default that grows
 * to 48 MB. Their garbage is short-lived (a row, a chunk), so scavenges stay cheap, and each
 * thread's heap peaked at 16 MB instead of 19-28 MB (whole-process peak RSS 275 MB instead of
 * 292-296 MB on the 1GB fixture, the same cpu).
 */
export const ARCHIVE_THREAD_LIMITS = { maxYoungGenerationSizeMb: 12 } as const;

export function threadOutcome<R extends { kind: string }, T>(worker: Worker, what: string, take: (reply: Exclude<R, FailedReply>) => T | undefined): Promise<T> {
  const outcome = new Promise<T>((resolve, reject) => {
    let settled = false;
    const fail = (error: SkError): void => {
      if (settled) return;
      settled = true;
      reject(error);
    };
    worker.on('message', (reply: R | FailedReply) => {
      if (settled) return;
      if (reply.kind === 'failed') {
        const failed = reply as FailedReply;
        fail(new SkError(failed.code, failed.message));
        return;
      }
      const result = take(reply as Exclude<R, FailedReply>);
      if (result === undefined) return;
      settled = true;
      resolve(result);
    });
    worker.on('error', (error) => fail(new SkError('archive', `${what} stopped: ${error.message}`)));
    worker.on('exit', (code) => fail(new SkError('archive', `${what} stopped before it finished (exit code ${code})`)));
  });
  // Awaited later; a failure before that (the writing aborted) is not unhandled.
  outcome.catch(() => undefined);
  return outcome;
}

/** `promise`, or the abort's reason as soon as `signal` aborts (the thread is stopped by its owner). */
export async function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  signal.throwIfAborted();
  let onAbort = (): void => undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([promise, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
