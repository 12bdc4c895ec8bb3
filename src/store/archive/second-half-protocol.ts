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

/**
 * Once its segment is copied into the archive and the archive sealed: read the archive back from
 * `from` (where `separator` joins the halves) to its end, as the verification behind the writer
 * reads the first half.
 */
export interface SecondHalfVerify {
  kind: 'verify';
  path: string;
  from: number;
  separator: string;
}

export type SecondHalfReply =
  | { kind: 'progress'; sessions: number; bytes: number }
  /** `ends`: the segment's bytes after each session, where the next one's separator starts. */
  | { kind: 'done'; sessions: ArchivedSessionSummary[]; bytes: number; ends: number[]; heapPeak: number }
  | { kind: 'verifyProgress'; sessions: number }
  | { kind: 'verified'; found: ArchivedSessionSummary[]; heapPeak: number }
  | { kind: 'failed'; code: SkErrorCode; message: string };
