/** What the main thread and the thread verifying behind the writer share and say. */
import type { SkErrorCode } from '../../core/errors.js';
import type { ArchivedSessionSummary } from './archive-sink.js';

/**
 * The shared memory's layout: a BigInt64 of file bytes written at 0, then Int32s: a generation
 * bumped at every report (the reader waits on it) and 1 once the file is sealed; at 16 a BigInt64
 * where the thread's part of the file ends (-1: at the file's end), when another thread verifies the rest.
 */
export const VERIFY_SHARED = { bytes: 24, stateOffset: 8, generation: 0, sealed: 1, endOffset: 16 } as const;

export interface VerifyBehindData {
  path: string;
  gzip: boolean;
  /** The archive's final name, for messages. */
  name: string;
  shared: SharedArrayBuffer;
}

export type VerifyBehindReply =
  | { kind: 'progress'; sessions: number }
  | { kind: 'done'; found: ArchivedSessionSummary[]; heapPeak: number }
  | { kind: 'failed'; code: SkErrorCode; message: string };
