/**
 * What the mirror (sync) needs from the store it mirrors into: each session written in one
 * transaction and verified by its digest read back, and the state that makes the mirror resumable
 * and safe with several machines: per source (one local database), the version of each session it
 * last wrote or found already there.
 */
import type { SessionItems } from './session-items.js';

/** The version of a session the target holds now. */
export interface HeldVersion {
  updated: number;
  /** Digest of the verified copy; null while a copy is unfinished. */
  digest: string | null;
  /** The source whose mirror wrote this version (null: written by migrate, offload or restore). */
  source: string | null;
}

/** What one source last wrote, or found already there, for a session. */
export interface MirrorBase {
  updated: number;
  /** The source's change mark of that version. */
  mark: string;
  digest: string;
}

export interface MirrorWrite {
  sourceId: string;
  /** The session's change mark for the version being sent (read in the same snapshot as its rows). */
  mark: () => Promise<string>;
  /** The digest the held copy must still have when the write begins (null: none or unfinished). */
  expect: string | null;
}

/** A first sync of sessions the target holds no finished copy of. */
export interface NewSessionsWrite {
  sourceId: string;
  /** The sessions `items` carries (those the target has rows of are replaced). */
  ids: readonly string[];
  /** A session's change mark for the version sent, read in the same snapshot as its rows (known once its end item is taken). */
  markOf: (sessionId: string) => string | undefined;
  /** Each session once it is verified and committed with its mirror state. */
  onSession: (sessionId: string, outcome: Extract<MirrorOutcome, { kind: 'written' }>) => void;
}

export type MirrorOutcome =
  /** Written, read back and verified, in one transaction. */
  | { kind: 'written'; digest: string; updated: number; mark: string; rows: number; bytes: number }
  /** The held copy already had this digest: only this source's base was recorded. */
  | { kind: 'same'; digest: string; updated: number }
  /** The held copy changed since the caller looked (another mirror wrote it): nothing written. */
  | { kind: 'moved' };

export interface MirrorTarget {
  readonly location: string;
  /** Records a source (a local database) that mirrors here. */
  registerSource(sourceId: string, name: string): Promise<void>;
  /** What `sourceId` last wrote or found, for every session it mirrored. */
  mirrorBases(sourceId: string): Promise<Map<string, MirrorBase>>;
  /** The versions held now of those of `ids` the target has. */
  heldVersions(ids: readonly string[]): Promise<Map<string, HeldVersion>>;
  /** The digest a session would have here, nothing written. */
  digestOf(items: SessionItems): Promise<{ digest: string; updated: number }>;
  /**
   * Writes one session in one transaction: rows unchanged since the held copy stay, the rest are
   * replaced; the digest is read back before the commit. `items` is called again for a retry.
   */
  mirrorSession(items: () => SessionItems, write: MirrorWrite): Promise<MirrorOutcome>;
  /**
   * Sessions the target holds no finished copy of, pipelined across sessions (migration's copy):
   * verified in groups, each session marked complete with its mirror state only once verified.
   */
  mirrorNewSessions(items: SessionItems, write: NewSessionsWrite): Promise<void>;
  /** Records that `sourceId` holds this version of a session too (found equal, or accepted). */
  recordBase(sourceId: string, sessionId: string, base: MirrorBase): Promise<void>;
  close(): Promise<void>;
}
