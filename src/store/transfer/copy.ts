/**
 * Copying sessions from one store into another, written against the reader and writer
 * interfaces alone: SQLite file -> server (`migrate --to`, offload), server -> SQLite file
 * (`restore --from`). Resumable and idempotent: sessions the target already holds whole are not
 * read again, and a copy ends by checking every session's counts on both sides.
 */
import { SkError } from '../../core/errors.js';
import { SERVER_EXPORT, type SessionReader } from '../reader.js';
import { isSyncIterable, type SessionItem, type SessionItems, type TableCounts } from '../session-items.js';
import type { SessionWriter } from '../writer.js';

export interface CopyProgress {
  sessionsDone: number;
  sessionsTotal: number;
  bytesDone: number;
  bytesTotal: number;
  rows: number;
  skipped: number;
}

export interface CopyOptions {
  /** The sessions to copy (already expanded to their trees); default every session of the source. */
  ids?: readonly string[];
  /**
   * `changed`: a session the target holds whole at the same `time_updated` is skipped, any other is
   * (re)copied (migrate). `all`: every session is (re)copied, so what was sent is known for each
   * (offload, before a delete). `absent`: only sessions the target lacks are copied (restore).
   */
  copy: 'changed' | 'all' | 'absent';
  onProgress?: (progress: CopyProgress) => void;
  /** The progress total (`contentBytes` of the ids), when the caller began it already beside other work. */
  bytesTotal?: Promise<number>;
  /** Called after each session is in the target, whole. */
  afterSession?: (id: string) => void | Promise<void>;
}

export interface CopyResult {
  /** The target's location (password masked). */
  target: string;
  /** Sessions in scope. */
  sessions: number;
  copied: number;
  skipped: number;
  /** Ids copied now, and ids left because the target had them. */
  copiedIds: string[];
  skippedIds: string[];
  /** Messages and parts of every session in scope, as both sides now count them. */
  messages: number;
  parts: number;
  /** Rows and bytes of message and part data sent now. */
  rows: number;
  bytes: number;
  elapsedMs: number;
  verified: boolean;
  /** Rows per table of each session copied now, as the source sent them. */
  counts: Map<string, TableCounts>;
}

/** The items as they are (sync stays sync: no promise per item), noting each session's rows per table as its end goes by. */
function noteCounts(items: SessionItems, counts: Map<string, TableCounts>): SessionItems {
  const note = (item: SessionItem): SessionItem => {
    if (item.kind === 'end') counts.set(item.sessionId, item.counts);
    return item;
  };
  if (isSyncIterable(items)) {
    return (function* () {
      for (const item of items) yield note(item);
    })();
  }
  return (async function* () {
    for await (const item of items) yield note(item);
  })();
}

export async function copySessions(source: SessionReader, target: SessionWriter, options: CopyOptions): Promise<CopyResult> {
  const started = performance.now();
  const ids = options.ids ?? (await source.allSessionIds());
  const missing = await source.missingSessions(ids);
  if (missing[0] !== undefined) throw new SkError('not-found', `no session ${missing[0]} in ${source.location}`);
  const [versions, states] = await Promise.all([source.sessionVersions(ids), target.sessionStates(ids)]);
  const held = (id: string): boolean => {
    const state = states.get(id);
    if (!state || options.copy === 'all') return false;
    return options.copy === 'absent' || (state.whole && state.updated === versions.get(id));
  };
  const toCopy = ids.filter((id) => !held(id));
  const skippedIds = ids.filter(held);

  const progress: CopyProgress = {
    sessionsDone: skippedIds.length,
    sessionsTotal: ids.length,
    bytesDone: skippedIds.length ? await source.contentBytes(skippedIds) : 0,
    bytesTotal: await (options.bytesTotal ?? source.contentBytes(ids)),
    rows: 0,
    skipped: skippedIds.length,
  };
  let lastReport = 0;
  const report = (force = false): void => {
    const now = performance.now();
    if (force || now - lastReport > 100) {
      lastReport = now;
      options.onProgress?.(progress);
    }
  };
  report(true);

  let rows = 0;
  const sent = new Map<string, TableCounts>();
  const imported = toCopy.length
    ? await target.importSessions(noteCounts(source.exportSessions(toCopy, SERVER_EXPORT), sent), {
        existing: 'replace',
        present: new Set(states.keys()),
        onRows: (bytes, count) => {
          progress.bytesDone += bytes;
          progress.rows += count;
          rows += count;
          report();
        },
        onSession: async (id) => {
          progress.sessionsDone++;
          report();
          await options.afterSession?.(id);
        },
      })
    : { imported: [], skipped: [], bytes: 0 };
  report(true);

  // The last word: every session in scope is whole in the target; each one copied now (and, for
  // `changed`, each one skipped as the same version) has the source's counts there.
  const copiedIds = imported.imported.map((s) => s.id);
  const copiedNow = new Set(copiedIds);
  const [counts, after] = await Promise.all([source.sessionCounts(ids), target.sessionStates(ids)]);
  let messages = 0;
  let parts = 0;
  for (const id of ids) {
    const here = counts.get(id);
    const there = after.get(id);
    if (!here || !there?.whole) throw new SkError('corrupt', `verification failed: session ${id} is not complete in ${target.location}`);
    if ((options.copy !== 'absent' || copiedNow.has(id)) && (here.messages !== there.messages || here.parts !== there.parts)) {
      throw new SkError('corrupt', `verification failed: session ${id} has ${here.messages}/${here.parts} messages/parts in ${source.location}, ${there.messages}/${there.parts} in ${target.location}`);
    }
    messages += here.messages;
    parts += here.parts;
  }
  return {
    target: target.location,
    sessions: ids.length,
    copied: imported.imported.length,
    skipped: skippedIds.length,
    copiedIds,
    skippedIds,
    messages,
    parts,
    rows,
    bytes: imported.bytes,
    elapsedMs: performance.now() - started,
    verified: true,
    counts: sent,
  };
}
