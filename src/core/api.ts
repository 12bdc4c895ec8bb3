/**
 * The typed API every shell speaks (CLI, utility process, web mode): requests and results.
 * The result schemas are also the `--json` interface in DESIGN.md section 4: fields may be
 * added, these stay. Validated with zod wherever they cross a process boundary.
 */
import { z } from 'zod';
import { PLACE_NAMES, type FolderPlace } from './data-folder.js';

/** A place of the data folder (`stats --json`'s `files`), documented on `FolderPlace`. */
const folderPlaceSchema = z.object({
  name: z.enum(PLACE_NAMES),
  path: z.string(),
  bytes: z.number(),
  entries: z.number(),
  reclaimable: z.number(),
  reclaim: z.string().nullable(),
  what: z.string(),
  cost: z.string(),
  inDataFolder: z.boolean(),
  keys: z.array(z.object({ key: z.string(), bytes: z.number() })).optional(),
}) satisfies z.ZodType<FolderPlace>;

export const sessionSummarySchema = z.object({
  id: z.string(),
  parentId: z.string().nullable(),
  title: z.string(),
  timeCreated: z.number(),
  timeUpdated: z.number(),
  timeArchived: z.number().nullable(),
  /** Bytes of the session's own rows: the session, its messages, parts and events. */
  bytes: z.number(),
  /** With a mirror configured: `local` (the file only), `both` (the file and the server), `server` (the server only). */
  where: z.enum(['local', 'both', 'server']).optional(),
});
export type SessionSummary = z.infer<typeof sessionSummarySchema>;

export const listResultSchema = z.object({
  sessions: z.array(sessionSummarySchema),
  nextCursor: z.string().nullable(),
});
export type ListResult = z.infer<typeof listResultSchema>;

export const attachmentRefSchema = z.object({
  ref: z.string(),
  mime: z.string(),
  filename: z.string().nullable(),
  bytes: z.number(),
});

export const oversizeValueSchema = z.object({
  table: z.string(),
  id: z.string(),
  sessionId: z.string().nullable(),
  bytes: z.number(),
  readable: z.boolean(),
});
export type OversizeValue = z.infer<typeof oversizeValueSchema>;

export const statsResultSchema = z.object({
  path: z.string(),
  schema: z.string(),
  /** OpenCode's storage layout in the file: `1.x`, `1.18`, `2.x`; for a server, its engine. */
  layout: z.string(),
  fileBytes: z.number(),
  walBytes: z.number(),
  freeBytes: z.number(),
  pageSize: z.number(),
  autoVacuum: z.enum(['none', 'full', 'incremental']),
  sessions: z.number(),
  rootSessions: z.number(),
  messages: z.number(),
  parts: z.number(),
  events: z.number(),
  attachments: z.object({ count: z.number(), bytes: z.number(), encodedBytes: z.number() }),
  tables: z.array(z.object({ name: z.string(), rows: z.number(), payloadBytes: z.number() })),
  largest: z.array(z.object({ id: z.string(), title: z.string(), bytes: z.number() })),
  oversize: z.array(oversizeValueSchema),
  warnings: z.array(z.object({ thresholdMB: z.number(), message: z.string() })),
  /** The event log per type: rows and payload bytes. */
  eventsByType: z.array(z.object({ type: z.string(), count: z.number(), bytes: z.number() })),
  /** Bytes `compact --apply` would free now (superseded snapshots, orphans not counted). */
  compactableBytes: z.number(),
  /** How large values are read: `chunked` through our extension, `whole` without it. */
  valueReads: z.enum(['chunked', 'whole']).optional(),
  /** Each place of OpenCode's data folder (SQLite only): sizes as `du -sb`, what a clean-up frees, what the rest costs. */
  files: z.array(folderPlaceSchema).optional(),
  /** With a mirror configured: the server's sessions, and how many of them the file no longer holds. */
  mirror: z.object({ target: z.string(), sessions: z.number(), serverOnly: z.number(), localOnly: z.number() }).optional(),
  /**
   * How restore and import write a large value from its spill file (SQLite only): `lazy` filled in
   * place by SQLite (sk_text_zeros + sk_blob_write_file), `file` read by SQLite (sk_file_text),
   * `whole` bound as one Buffer (no extension, or turned off).
   */
  valueWrites: z.enum(['lazy', 'file', 'whole']).optional(),
});
export type StatsResult = z.infer<typeof statsResultSchema>;

export const partViewSchema = z.record(z.string(), z.unknown());
export const messageViewSchema = z.object({
  info: z.record(z.string(), z.unknown()),
  parts: z.array(partViewSchema),
});
export type MessageView = z.infer<typeof messageViewSchema>;

export const showResultSchema = z.object({
  session: z.record(z.string(), z.unknown()),
  messages: z.array(messageViewSchema),
  nextCursor: z.string().nullable(),
  /** With a mirror configured: where this page was read (`server` for a session the file no longer holds). */
  where: z.enum(['local', 'both', 'server']).optional(),
});
export type ShowResult = z.infer<typeof showResultSchema>;

export const attachmentResultSchema = z.object({
  ref: z.string(),
  path: z.string(),
  bytes: z.number(),
  sha256: z.string(),
  mime: z.string(),
  filename: z.string().nullable(),
});
export type AttachmentResult = z.infer<typeof attachmentResultSchema>;

export const pageOptionsSchema = z.object({
  limit: z.number().int().min(1).max(1000).optional(),
  cursor: z.string().max(512).nullable().optional(),
});
export type PageOptions = z.infer<typeof pageOptionsSchema>;

export const statsOptionsSchema = z.object({
  largest: z.number().int().min(0).max(100).optional(),
  warnAtMB: z.array(z.number().positive()).optional(),
});
export type StatsOptions = z.infer<typeof statsOptionsSchema>;

/** `retention --apply --json`. */
export interface ApplyResult {
  evicted: string[];
  archive: string | null;
  archives: string[];
  bytesBefore: number;
  bytesAfter: number;
  /** Roots left alone because they changed after archiving. */
  changed: string[];
  /** The external database evicted sessions were moved to (password masked), when offloading. */
  offload?: string | null;
  /** Roots evicted without an archive because the mirror's server holds them exactly (an external primary). */
  mirrored?: string[];
  reclaim: 'incremental' | 'vacuum' | 'none' | 'deferred';
  /** Bytes the file is still over `maxSizeMB` after this run (0 when it fits): the next run plans for them. */
  unmetBytes: number;
  /** Set when the run was cancelled: it stopped between two session trees (the UI's Cancel). */
  cancelled?: boolean;
  /** Planned roots a cancelled run did not reach: still in the store, whole. */
  notReached?: string[];
}
