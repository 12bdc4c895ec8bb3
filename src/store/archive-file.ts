/**
 * Archive files: written as a stream to a temporary name (mode 0600), fsynced and renamed into
 * place; read back as a stream (gunzipped when the name ends in .gz) for verification and restore.
 * Nothing here holds a whole archive, or a whole large part, in memory.
 */
import { createHash, randomUUID, type Hash } from 'node:crypto';
import { closeSync, createReadStream, fsyncSync, openSync, renameSync, rmSync, writevSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { constants, createGunzip, gzipSync } from 'node:zlib';
import { EXTRA_KEY, type MessageExtras, type SessionExtras } from '../core/archive-format.js';
import { SkError } from '../core/errors.js';
import { JsonStreamScanner, type PathItem } from '../core/json-stream.js';

function writeError(error: unknown, path: string): SkError {
  if (error instanceof SkError) return error;
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG') {
    return new SkError('disk-full', `disk full while writing the archive ${path}; the partial archive was removed and nothing was deleted`);
  }
  return new SkError('archive', `cannot write the archive ${path}: ${(error as Error).message}`);
}

const FLUSH_BYTES = 1024 * 1024;

/** True when a chunk is mostly base64 (an attachment payload): deflate's match search only wastes time there. */
function looksLikeBase64(chunk: Buffer): boolean {
  const from = Math.max(0, (chunk.length >> 1) - 2048);
  const sample = chunk.subarray(from, Math.min(chunk.length, from + 4096));
  let base64 = 0;
  for (const byte of sample) {
    if ((byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a) || (byte >= 0x30 && byte <= 0x39) || byte === 0x2b || byte === 0x2f) base64++;
  }
  return sample.length > 0 && base64 / sample.length > 0.98;
}

/**
 * A streaming archive writer: temp file, fsync, atomic rename. With a `.gz` name every megabyte
 * becomes its own gzip member (gzip readers join them): base64 megabytes are deflated with the
 * RLE strategy, 3x faster than a full match search and as small (base64's 6 bits a byte is what
 * there is to gain), everything else at level 1.
 */
export class ArchiveSink {
  readonly path: string;
  private readonly tmp: string;
  private fd: number | undefined;
  private readonly gzip: boolean;
  /** Small pieces gathered into one write (writev, or one gzip member) per megabyte. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Uncompressed bytes written. */
  bytes = 0;

  constructor(path: string) {
    this.path = path;
    this.gzip = path.endsWith('.gz');
    this.tmp = join(dirname(path), `.${basename(path)}.${randomUUID().slice(0, 8)}.tmp`);
    try {
      this.fd = openSync(this.tmp, 'wx', 0o600);
    } catch (error) {
      throw writeError(error, path);
    }
  }

  async write(...chunks: (Buffer | string)[]): Promise<void> {
    for (const piece of chunks) {
      const chunk = typeof piece === 'string' ? Buffer.from(piece) : piece;
      if (chunk.length === 0) continue;
      this.bytes += chunk.length;
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
    }
    if (this.pendingBytes >= FLUSH_BYTES || this.pending.length >= 512) this.flush();
  }

  private flush(): void {
    if (this.pending.length === 0) return;
    let pieces = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    try {
      if (this.gzip) {
        const block = pieces.length === 1 ? (pieces[0] as Buffer) : Buffer.concat(pieces);
        const strategy = looksLikeBase64(block) ? constants.Z_RLE : constants.Z_DEFAULT_STRATEGY;
        pieces = [gzipSync(block, { level: 1, strategy })];
      }
      while (pieces.length > 0) {
        let written = writevSync(this.fd as number, pieces);
        // A short write: drop what went out, trim the first piece that went out partly.
        let i = 0;
        while (i < pieces.length && written >= (pieces[i] as Buffer).length) written -= (pieces[i++] as Buffer).length;
        pieces = pieces.slice(i);
        if (written > 0 && pieces[0]) pieces[0] = pieces[0].subarray(written);
      }
    } catch (error) {
      throw writeError(error, this.path);
    }
  }

  /** Flushes, fsyncs and renames into place; the archive exists whole or not at all. */
  async commit(): Promise<void> {
    try {
      this.flush();
      fsyncSync(this.fd as number);
      closeSync(this.fd as number);
      this.fd = undefined;
      renameSync(this.tmp, this.path);
      const dirFd = openSync(dirname(this.path), 'r');
      try {
        fsyncSync(dirFd);
      } finally {
        closeSync(dirFd);
      }
    } catch (error) {
      this.abort();
      throw writeError(error, this.path);
    }
  }

  /** Removes the partial file. */
  abort(): void {
    if (this.fd !== undefined) {
      try {
        closeSync(this.fd);
      } catch {
        // already closed
      }
      this.fd = undefined;
    }
    rmSync(this.tmp, { force: true });
  }
}

/** What verification and restore learn about one archived session. */
export interface ArchivedSessionSummary {
  id: string;
  messages: number;
  parts: number;
  /** sha256 over every message and part object as archived, in order. */
  digest: string;
}

/** Running digest of one session's archived objects, shared by the writer and the reader. */
export class SessionDigest {
  private readonly hash: Hash = createHash('sha256');
  messages = 0;
  parts = 0;

  begin(kind: 'message' | 'part'): void {
    if (kind === 'message') this.messages++;
    else this.parts++;
    this.hash.update(kind === 'message' ? '\u0001' : '\u0002');
  }

  update(bytes: Buffer): void {
    this.hash.update(bytes);
  }

  finish(id: string): ArchivedSessionSummary {
    return { id, messages: this.messages, parts: this.parts, digest: this.hash.digest('hex') };
  }
}

/** Callbacks for reading an archive as a stream; raw parts arrive whole (for restore) only when asked. */
export interface ArchiveVisitor {
  session?(index: number, extras: SessionExtras | null, info: Record<string, unknown> | null): void | Promise<void>;
  message?(extras: MessageExtras | null, rawInfo: Buffer): void | Promise<void>;
  part?(rawPart: Buffer): void | Promise<void>;
  sessionEnd?(summary: ArchivedSessionSummary): void | Promise<void>;
  /** Whether to collect raw part bytes for `part` (restore) or only digest them (verify). */
  wantParts?: boolean;
}

type Slot = 'sessionExtras' | 'sessionInfo' | 'messageExtras' | 'messageInfo' | 'part' | null;

function slotOf(path: readonly PathItem[]): Slot {
  if (path.length === 2 && path[1] === EXTRA_KEY) return 'sessionExtras';
  if (path.length === 2 && path[1] === 'info') return 'sessionInfo';
  if (path.length === 4 && path[1] === 'messages' && path[3] === EXTRA_KEY) return 'messageExtras';
  if (path.length === 4 && path[1] === 'messages' && path[3] === 'info') return 'messageInfo';
  if (path.length === 5 && path[1] === 'messages' && path[3] === 'parts') return 'part';
  return null;
}

/**
 * Streams an archive through `visitor`. Sessions are reported when their first message (or their
 * end) arrives, so extras and info are known before any of their rows.
 */
export async function readArchive(path: string, visitor: ArchiveVisitor): Promise<ArchivedSessionSummary[]> {
  const summaries: ArchivedSessionSummary[] = [];
  const queue: (() => void | Promise<void>)[] = [];
  let sessionIndex = -1;
  let extras: SessionExtras | null = null;
  let info: Record<string, unknown> | null = null;
  let announced = false;
  let digest = new SessionDigest();
  let messageExtras: MessageExtras | null = null;
  let collected: Buffer[] = [];

  const announce = (): void => {
    if (announced || sessionIndex < 0) return;
    announced = true;
    const [i, e, n] = [sessionIndex, extras, info];
    if (visitor.session) queue.push(() => visitor.session?.(i, e, n));
  };
  const closeSession = (): void => {
    if (sessionIndex < 0) return;
    announce();
    const id = String(extras?.session['id'] ?? info?.['id'] ?? '');
    if (!id) throw new SkError('archive', `${path}: session #${sessionIndex} has no id`);
    const summary = digest.finish(id);
    summaries.push(summary);
    if (visitor.sessionEnd) queue.push(() => visitor.sessionEnd?.(summary));
  };

  const scanner = new JsonStreamScanner({
    select: (p) => {
      if (p.length === 1) {
        closeSession();
        sessionIndex = p[0] as number;
        extras = null;
        info = null;
        announced = false;
        digest = new SessionDigest();
        return false;
      }
      const slot = slotOf(p);
      if (slot === 'messageInfo' || slot === 'messageExtras' || slot === 'part') announce();
      if (slot === 'messageInfo') digest.begin('message');
      if (slot === 'part') digest.begin('part');
      collected = [];
      return slot !== null;
    },
    chunk: (p, bytes) => {
      const slot = slotOf(p);
      if (slot === 'messageInfo' || slot === 'part') digest.update(bytes);
      if (slot !== 'part' || visitor.wantParts) collected.push(Buffer.from(bytes));
    },
    end: (p) => {
      const slot = slotOf(p);
      const raw = (): Buffer => Buffer.concat(collected);
      const parse = <T>(): T => {
        try {
          return JSON.parse(raw().toString('utf8')) as T;
        } catch {
          throw new SkError('archive', `${path}: unreadable ${String(slot)} in session #${sessionIndex}`);
        }
      };
      if (slot === 'sessionExtras') extras = parse<SessionExtras>();
      else if (slot === 'sessionInfo') info = parse<Record<string, unknown>>();
      else if (slot === 'messageExtras') messageExtras = parse<MessageExtras>();
      else if (slot === 'messageInfo') {
        const [e, r] = [messageExtras, raw()];
        messageExtras = null;
        if (visitor.message) queue.push(() => visitor.message?.(e, r));
      } else if (slot === 'part' && visitor.wantParts && visitor.part) {
        const r = raw();
        queue.push(() => visitor.part?.(r));
      }
      collected = [];
    },
  });

  const input = createReadStream(path, { highWaterMark: 1024 * 1024 });
  const stream = path.endsWith('.gz') ? input.pipe(createGunzip()) : input;
  try {
    for await (const chunk of stream) {
      scanner.write(chunk as Buffer);
      while (queue.length > 0) await (queue.shift() as () => void | Promise<void>)();
    }
    scanner.finish();
    closeSession();
    while (queue.length > 0) await (queue.shift() as () => void | Promise<void>)();
  } catch (error) {
    input.destroy();
    if (error instanceof SkError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new SkError('not-found', `no archive at ${path}`);
    throw new SkError('archive', `${path} is not a readable archive (${(error as Error).message})`);
  }
  return summaries;
}

/**
 * Reads an archive back and checks it against what was written: every session present with the
 * same message and part counts and the same digest. Throws SkError('archive') on any difference.
 */
export async function verifyArchive(path: string, expected?: readonly ArchivedSessionSummary[]): Promise<ArchivedSessionSummary[]> {
  const found = await readArchive(path, {});
  if (expected) {
    const byId = new Map(found.map((s) => [s.id, s]));
    for (const want of expected) {
      const got = byId.get(want.id);
      if (!got) throw new SkError('archive', `archive ${path} failed verification: session ${want.id} is missing`);
      if (got.messages !== want.messages || got.parts !== want.parts) {
        throw new SkError(
          'archive',
          `archive ${path} failed verification: session ${want.id} has ${got.messages} messages/${got.parts} parts, expected ${want.messages}/${want.parts}`,
        );
      }
      if (got.digest !== want.digest) throw new SkError('archive', `archive ${path} failed verification: session ${want.id} differs`);
    }
  }
  return found;
}
