/** What the main thread and the thread archiving the second half of the sessions say. */
import type { SkErrorCode } from '../../core/errors.js';
import type { ArchivedSessionSummary } from './archive-sink.js';

export interface SecondHalfData {
  /** The SQLite file, opened read-only on the thread's own connection. */
  db: string;
  ids: readonly string[];
  /** The segment file to create (mode 0600), named and tracked by the main thread. */
  segment: string;
  /** The archive's name, for messages. */
  name: string;
}

export type SecondHalfReply =
  | { kind: 'progress'; sessions: number; bytes: number }
  | { kind: 'done'; sessions: ArchivedSessionSummary[]; bytes: number; heapPeak: number }
  | { kind: 'failed'; code: SkErrorCode; message: string };
