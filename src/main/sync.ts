/**
 * `sync --to <connectionString>`: the continuous mirror of OpenCode's SQLite file into a server.
 * Polls the file's data version (one cheap read) and, when another connection has committed, the
 * sessions' change marks; each changed session goes to the server in one verified transaction.
 * The local file is only read. The server going away queues the work: one line says so, retries
 * back off, and the mirror catches up when it is back.
 */
import { randomBytes, createHash } from 'node:crypto';
import { mkdirSync, readFileSync, realpathSync, renameSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { SkError } from '../core/errors.js';
import { cacheHome } from '../core/paths.js';
import { checkConnectionString, openMirrorSource, openMirrorTarget } from '../store/open-store.js';
import type { MirrorTarget } from '../store/mirror-target.js';
import { Mirror, type MirrorConflict, type MirrorStatus, type SessionResult } from '../store/transfer/mirror.js';

/** Where each local database's source id is kept: beside the attachment cache, never in OpenCode's file. */
export const defaultSyncStateDir = (env: Record<string, string | undefined> = process.env): string => join(cacheHome(env), 'session-keeper', 'sync');

/** This database's source id: made once, kept in a small file named after the database's real path. */
export function sourceIdFor(db: string, stateDir = defaultSyncStateDir()): { sourceId: string; name: string } {
  const real = realpathSync(db);
  const file = join(stateDir, `${createHash('sha256').update(real).digest('hex').slice(0, 24)}.json`);
  const name = `${hostname()}:${real}`;
  try {
    const saved = JSON.parse(readFileSync(file, 'utf8')) as { sourceId?: unknown };
    if (typeof saved.sourceId === 'string' && /^src_[0-9a-f]{16}$/.test(saved.sourceId)) return { sourceId: saved.sourceId, name };
  } catch {
    // none yet (or unreadable): a new id
  }
  const sourceId = `src_${randomBytes(8).toString('hex')}`;
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  writeFileSync(`${file}.tmp`, `${JSON.stringify({ sourceId, db: real })}\n`, { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
  return { sourceId, name };
}

export interface SyncStatus extends MirrorStatus {
  state: 'starting' | 'syncing' | 'idle' | 'offline';
  /** When a session was last verified on the server (or found already there), epoch ms. */
  lastSyncedAt: number | null;
  /** Sessions written since the mirror started. */
  written: number;
  target: string;
  sourceId: string;
}

export interface SyncOptions {
  db: string;
  to: string;
  /** One pass, then stop (a server that cannot be reached is an error then). */
  once?: boolean;
  /** How often `data_version` is read (ms). */
  pollMs?: number;
  stateDir?: string;
  signal?: AbortSignal;
  /** One line per event worth a line: a pass that wrote, the server lost or back, a conflict. */
  log?: (line: string) => void;
  /** After every session and every pass. */
  onStatus?: (status: SyncStatus) => void;
  /** After each session's decision (tests, the bench). */
  onSession?: (result: SessionResult) => void;
}

export interface SyncSummary {
  target: string;
  sourceId: string;
  passes: number;
  written: number;
  same: number;
  serverNewer: number;
  conflicts: MirrorConflict[];
  status: SyncStatus;
  elapsedMs: number;
}

const MAX_BACKOFF_MS = 30_000;

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Failures worth waiting out (the server away, the network cut); anything else stops the mirror. */
const transient = (error: unknown): boolean => error instanceof SkError && (error.code === 'connection' || error.code === 'locked');

/** Whether the mirror's server still answers (one small read: the held version of `id`). */
async function reachable(mirror: Mirror, id: string): Promise<boolean> {
  try {
    await mirror.target.heldVersions([id]);
    return true;
  } catch {
    return false;
  }
}

/** Runs the mirror until `signal` aborts (or one pass with `once`). */
export async function runSync(options: SyncOptions): Promise<SyncSummary> {
  const started = performance.now();
  const log = options.log ?? (() => undefined);
  const pollMs = options.pollMs ?? 250;
  // A string no retry can fix fails now; a server that is merely away is waited for below.
  await checkConnectionString(options.to);
  const source = openMirrorSource(options.db);
  const { sourceId, name } = sourceIdFor(options.db, options.stateDir);
  let target: MirrorTarget | null = null;
  let mirror: Mirror | null = null;
  let display = '';
  const conflicts = new Map<string, MirrorConflict>();
  const summary = { passes: 0, written: 0, same: 0, serverNewer: 0 };
  const status: SyncStatus = { state: 'starting', lastSyncedAt: null, written: 0, target: '', sourceId, mirrored: 0, pending: 0, conflicts: 0, serverNewer: 0, sessions: 0 };
  const report = (state: SyncStatus['state']): void => {
    if (mirror) Object.assign(status, mirror.status());
    status.state = state;
    status.written = summary.written;
    options.onStatus?.({ ...status });
  };
  let offlineSince: number | null = null;
  let backoff = 500;
  let lastVersion: number | null = null;
  try {
    while (!options.signal?.aborted) {
      try {
        if (!mirror) {
          target = await openMirrorTarget(options.to);
          display = target.location;
          status.target = display;
          mirror = await Mirror.start(source, target, sourceId, name);
        }
        const version = await source.dataVersion();
        if (version !== lastVersion) {
          const pending = await mirror.scan();
          report(pending.length ? 'syncing' : 'idle');
          let wrote = 0;
          let rows = 0;
          const handled = new Set<string>();
          const take = (result: SessionResult): void => {
            const id = result.id;
            handled.add(id);
            options.onSession?.(result);
            if (result.verdict === 'written') {
              summary.written++;
              wrote++;
              rows += result.rows;
            } else if (result.verdict === 'same') summary.same++;
            else if (result.verdict === 'server-newer') summary.serverNewer++;
            if (result.verdict === 'conflict' && result.conflict) {
              // Said once per conflict, not once per pass or reconnect.
              if (conflicts.get(id)?.reason !== result.conflict.reason) log(`sync: conflict: ${result.conflict.reason}`);
              conflicts.set(id, result.conflict);
            } else conflicts.delete(id); // settled since: no longer a conflict (the status says the same)
            if (result.verdict === 'written' || result.verdict === 'same') status.lastSyncedAt = Date.now();
            report('syncing');
          };
          // Sessions the server holds no finished copy of go pipelined (a first sync); the rest one transaction each.
          const { fresh, held } = await mirror.split(pending);
          let perSession = held;
          if (fresh.length > 0 && !options.signal?.aborted) {
            try {
              const left = await mirror.mirrorNew(fresh, take, options.signal);
              perSession = options.signal?.aborted ? [] : [...left, ...held];
            } catch (error) {
              // The server gone is waited out as anywhere else; a server still there refused a statement of the
              // pipelined copy (a row another writer put in meanwhile, a deadlock between its connections): what
              // is left goes the careful way, each session in its own transaction.
              if (!(await reachable(mirror, fresh[0] ?? ''))) throw error;
              log(`sync: the pipelined copy stopped (${error instanceof Error ? error.message : String(error)}); the rest goes one session at a time`);
              perSession = [...fresh.filter((id) => !handled.has(id)), ...held];
            }
          }
          for (const id of perSession) {
            if (options.signal?.aborted) break;
            take(await mirror.mirrorOne(id));
          }
          summary.passes++;
          if (!options.signal?.aborted) lastVersion = version;
          if (offlineSince !== null) {
            log(`sync: ${display} is reachable again after ${Math.round((Date.now() - offlineSince) / 1000)} s; caught up`);
            offlineSince = null;
          }
          backoff = 500;
          const s = mirror.status();
          if (wrote > 0) log(`sync: ${wrote} session${wrote === 1 ? '' : 's'} written (${rows} rows changed) to ${display}; mirrored ${s.mirrored} of ${s.sessions}, ${s.pending} pending`);
          report('idle');
        }
        if (options.once) break;
        await sleep(pollMs, options.signal);
      } catch (error) {
        if (options.once || !transient(error)) throw error;
        // The server is away: the work stays queued (the local marks say what is pending); one line per outage.
        if (offlineSince === null) {
          offlineSince = Date.now();
          const s = mirror?.status();
          log(`sync: ${error instanceof Error ? error.message : String(error)}; ${s ? `${s.pending} sessions queued; ` : ''}retrying until it is back`);
        }
        await target?.close().catch(() => undefined);
        target = null;
        mirror = null;
        lastVersion = null;
        report('offline');
        await sleep(backoff, options.signal);
        backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
      }
    }
  } finally {
    await target?.close().catch(() => undefined);
    await source.close();
  }
  report(offlineSince === null ? 'idle' : 'offline');
  return { target: display, sourceId, ...summary, conflicts: [...conflicts.values()], status: { ...status }, elapsedMs: performance.now() - started };
}
