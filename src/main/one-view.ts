/**
 * One view of the file and the server it is mirrored into (`storage` names a server, the file is
 * given with --db): `list` merges both, newest first, each session marked where it lives; `show`
 * pages a session the file no longer holds from the server; `stats` adds the server's counts;
 * `attachment` decodes a part the file no longer holds from the server, into the same cache.
 */
import type { AttachmentResult, ListResult, PageOptions, ShowResult, StatsResult } from '../core/api.js';
import { encodeCursor } from '../core/cursor.js';
import { SkError } from '../core/errors.js';
import { DEFAULT_SESSION_PAGE } from '../core/page-rules.js';
import { openFileReader, openReader } from '../store/open-store.js';
import type { SessionReader } from '../store/reader.js';
import type { SessionService } from './service.js';

async function withBoth<T>(db: string, mirror: string, fn: (local: SessionReader, server: SessionReader) => Promise<T>): Promise<T> {
  const local = openFileReader(db);
  try {
    const server = await openReader(mirror);
    try {
      return await fn(local, server);
    } finally {
      await server.close();
    }
  } finally {
    await local.close();
  }
}

/** Both stores' sessions by `time_updated` (then id), newest first; the same keyset cursor pages both. */
export function listBoth(db: string, mirror: string, options: PageOptions = {}): Promise<ListResult> {
  const limit = options.limit ?? DEFAULT_SESSION_PAGE;
  return withBoth(db, mirror, async (local, server) => {
    const [here, there] = await Promise.all([local.listSessions({ limit, cursor: options.cursor ?? null }), server.listSessions({ limit, cursor: options.cursor ?? null })]);
    const [inFile, onServer] = await Promise.all([local.sessionVersions(there.sessions.map((s) => s.id)), server.sessionVersions(here.sessions.map((s) => s.id))]);
    const merged = [
      ...here.sessions.map((s) => ({ ...s, where: onServer.has(s.id) ? ('both' as const) : ('local' as const) })),
      ...there.sessions.filter((s) => !inFile.has(s.id)).map((s) => ({ ...s, where: 'server' as const })),
    ].sort((a, b) => b.timeUpdated - a.timeUpdated || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
    const page = merged.slice(0, limit);
    const last = page[page.length - 1];
    const more = merged.length > limit || here.nextCursor !== null || there.nextCursor !== null;
    return { sessions: page, nextCursor: more && last ? encodeCursor([last.timeUpdated, last.id]) : null };
  });
}

/** A session's page from the file, or from the server when the file no longer holds it. */
export function showBoth(db: string, mirror: string, sessionId: string, options: PageOptions = {}): Promise<ShowResult> {
  return withBoth(db, mirror, async (local, server) => {
    const onServer = (await server.sessionVersions([sessionId])).has(sessionId);
    if ((await local.sessionVersions([sessionId])).has(sessionId)) return { ...(await local.showSession(sessionId, options)), where: onServer ? 'both' : 'local' };
    if (!onServer) throw new SkError('not-found', `no session ${sessionId} in ${db} or ${server.location}`);
    return { ...(await server.showSession(sessionId, options)), where: 'server' };
  });
}

/** How the server's sessions and the file's relate. */
export function mirrorFigures(db: string, mirror: string): Promise<NonNullable<StatsResult['mirror']>> {
  return withBoth(db, mirror, async (local, server) => {
    const [here, there] = await Promise.all([local.allSessionIds(), server.allSessionIds()]);
    const inFile = new Set(here);
    const onServer = new Set(there);
    return { target: server.location, sessions: there.length, serverOnly: there.filter((id) => !inFile.has(id)).length, localOnly: here.filter((id) => !onServer.has(id)).length };
  });
}

function notFound(error: unknown): error is SkError {
  return error instanceof SkError && error.code === 'not-found';
}

/** How one view reaches the server: a reader opened for each use (the CLI), or one kept open between uses (the utility). */
export interface ServerAccess {
  readonly location: string;
  use<T>(fn: (server: SessionReader) => Promise<T>): Promise<T>;
}

/** A reader opened for one use and closed after it. */
export function openForEach(location: string): ServerAccess {
  return {
    location,
    use: async (fn) => {
      const server = await openReader(location);
      try {
        return await fn(server);
      } finally {
        await server.close();
      }
    },
  };
}

/**
 * One reader of the server kept open between uses: a connection costs more than a page (about
 * 60 ms of a 105 ms page, `node bench/one-view.mjs`). It closes once unused for `idleMs`, and is
 * dropped after a connection failure so that the next use connects again.
 */
export class KeptServer implements ServerAccess {
  private reader: Promise<SessionReader> | null = null;
  private inUse = 0;
  private idle: NodeJS.Timeout | null = null;

  constructor(
    readonly location: string,
    private readonly idleMs = 30_000,
  ) {}

  async use<T>(fn: (server: SessionReader) => Promise<T>): Promise<T> {
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
    this.inUse++;
    const reader = (this.reader ??= openReader(this.location));
    try {
      return await fn(await reader);
    } catch (error) {
      if (!(error instanceof SkError) || error.code === 'connection' || error.code === 'internal') void this.drop(reader);
      throw error;
    } finally {
      this.inUse--;
      if (this.inUse === 0 && this.isOpen()) {
        this.idle = setTimeout(() => void this.close(), this.idleMs);
        this.idle.unref();
      }
    }
  }

  private isOpen(): boolean {
    return this.reader !== null;
  }

  /** Closes the reader (a later use opens another). */
  async close(): Promise<void> {
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
    if (this.reader) await this.drop(this.reader);
  }

  private async drop(reader: Promise<SessionReader>): Promise<void> {
    if (this.reader === reader) this.reader = null;
    await reader.then((r) => r.close()).catch(() => undefined);
  }
}

/**
 * A session's page through the service (the file, its page cache), or from the server when the
 * file does not hold the session: the session browser's pages of a server-only session.
 */
export async function showThrough(service: SessionService, server: ServerAccess, sessionId: string, options: PageOptions = {}): Promise<ShowResult> {
  try {
    return await service.showSession(sessionId, options);
  } catch (error) {
    if (!notFound(error)) throw error;
    return server.use(async (reader) => {
      if (!(await reader.sessionVersions([sessionId])).has(sessionId)) throw error;
      return { ...(await reader.showSession(sessionId, options)), where: 'server' as const };
    });
  }
}

/**
 * An attachment decoded from the file, or, when the file no longer holds its part, from the
 * server (the refs `show` gave for a server-only session): decoded chunk by chunk into the same
 * attachment cache. When neither has it, the file's reason is the one said.
 */
export async function attachmentThrough(service: SessionService, server: ServerAccess, ref: string, out?: string): Promise<AttachmentResult> {
  try {
    return await service.attachment(ref, out);
  } catch (error) {
    if (!notFound(error)) throw error;
    return server.use(async (reader) => {
      try {
        return await service.attachmentFrom(reader, ref, out);
      } catch (fromServer) {
        throw notFound(fromServer) ? error : fromServer;
      }
    });
  }
}
