/**
 * Archive files on disk: written as a stream to a temporary name (mode 0600), fsynced and renamed
 * into place, so an archive exists whole or not at all. Nothing here holds a whole archive in memory.
 */
import { randomUUID } from 'node:crypto';
import { closeSync, fdatasync, fsyncSync, openSync, renameSync, rmSync, writev } from 'node:fs';
import { basename, dirname } from 'node:path';
import { promisify } from 'node:util';
import { constants, gzip } from 'node:zlib';
import xxhash, { type XXHash, type XXHashAPI } from 'xxhash-wasm';
import { SkError } from '../../core/errors.js';
import type { TableCounts } from '../session-items.js';
import { sweepTempFiles, tempNameFor, trackTempFile, untrackTempFile } from '../temp-files.js';

function writeError(error: unknown, path: string): SkError {
  if (error instanceof SkError) return error;
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG') {
    return new SkError('disk-full', `disk full while writing the archive ${path}; the partial archive was removed and nothing was deleted`);
  }
  return new SkError('archive', `cannot write the archive ${path}: ${(error as Error).message}`);
}

const FLUSH_BYTES = 1024 * 1024;
/** Pieces up to this size are copied into the staging buffer: one write per megabyte, not one iovec per piece. */
const STAGED_PIECE_BYTES = 16 * 1024;
const STAGE_BYTES = 2 * FLUSH_BYTES;
/**
 * Every this many bytes written, an fdatasync starts on libuv's threads: the disk takes the archive
 * while it is written, and the fsync of the seal (still of the whole file) finds little left to do.
 */
const SYNC_AHEAD_BYTES = 64 * 1024 * 1024;
/** Gzip members being deflated on libuv's threads at once, written in order as they finish. */
const GZIP_IN_FLIGHT = 4;
const gzipAsync = promisify(gzip);

/** One writev on libuv's threads: the copy into the page cache runs beside the thread producing the next megabyte. */
function writevAsync(fd: number, pieces: Buffer[]): Promise<number> {
  return new Promise((resolve, reject) => writev(fd, pieces, (error, written) => (error ? reject(error) : resolve(written))));
}

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
  /** Pieces gathered into one write (writev, or one gzip member) per megabyte. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /**
   * Small pieces and strings copied in order; `stageFrom` is where the part not yet in `pending`
   * starts. Two stages, used in turn: one is being written out while the other fills.
   */
  private readonly stages = [Buffer.allocUnsafe(STAGE_BYTES), Buffer.allocUnsafe(STAGE_BYTES)] as const;
  private stage: Buffer = this.stages[0];
  /** The one write under way (writes go out one after another, in order), or null. */
  private writing: Promise<void> | null = null;
  /** The fdatasync under way ahead of the seal, or null; a segment (never fsynced) starts none. */
  private syncing: Promise<void> | null = null;
  private syncedAt = 0;
  private syncFailure: Error | null = null;
  private readonly syncsAhead: boolean;
  private staged = 0;
  private stageFrom = 0;
  /** Gzip members on their way, oldest first: deflated off the main thread while it reads on. */
  private deflating: Promise<Buffer>[] = [];
  /** Uncompressed bytes written. */
  bytes = 0;
  /** Bytes in the file (compressed when gzipped), all of them written out. */
  fileBytes = 0;
  /** After each write to the file, with its size then (a reader behind the writer reads up to it). */
  onFileBytes: ((bytes: number) => void) | undefined;

  /**
   * `segment`: the file is a piece another sink copies in (its name given, never gzipped, never
   * fsynced or renamed: the archive it joins is).
   */
  constructor(path: string, segment?: { tempPath: string }) {
    this.path = path;
    this.gzip = !segment && path.endsWith('.gz');
    this.syncsAhead = !segment;
    if (!segment) sweepTempFiles(dirname(path));
    this.tmp = segment?.tempPath ?? tempNameFor(dirname(path), basename(path), randomUUID().slice(0, 8));
    try {
      this.fd = openSync(this.tmp, 'wx', 0o600);
    } catch (error) {
      throw writeError(error, path);
    }
    trackTempFile(this.tmp);
  }

  /** Returns a promise only when the pieces filled a write and it is under way: a caller may skip the await otherwise. */
  write(...chunks: (Buffer | string)[]): Promise<void> | undefined {
    for (const piece of chunks) {
      if (piece.length === 0) continue;
      const room = STAGE_BYTES - this.staged;
      // A UTF-16 unit is at most 3 bytes of UTF-8: a string that fits for sure is encoded in place.
      if (typeof piece === 'string' && piece.length * 3 <= room) {
        const n = this.stage.write(piece, this.staged);
        this.staged += n;
        this.bytes += n;
        continue;
      }
      const chunk = typeof piece === 'string' ? Buffer.from(piece) : piece;
      this.bytes += chunk.length;
      if (chunk.length <= STAGED_PIECE_BYTES && chunk.length <= room) {
        chunk.copy(this.stage, this.staged);
        this.staged += chunk.length;
        continue;
      }
      this.takeStaged();
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
    }
    if (this.pendingBytes + this.staged - this.stageFrom >= FLUSH_BYTES || this.pending.length >= 512) return this.flush();
    return undefined;
  }

  /** Moves the staged bytes not yet in `pending` there (as a view: the stage is reused only after a flush). */
  private takeStaged(): void {
    if (this.staged === this.stageFrom) return;
    this.pending.push(this.stage.subarray(this.stageFrom, this.staged));
    this.pendingBytes += this.staged - this.stageFrom;
    this.stageFrom = this.staged;
  }

  private async flush(): Promise<void> {
    this.takeStaged();
    if (this.pending.length === 0) return;
    const pieces = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    if (!this.gzip) {
      // The write under way used the other stage: once it is done, that one fills while this one goes out.
      await this.writeOut(pieces);
      this.stage = this.stage === this.stages[0] ? this.stages[1] : this.stages[0];
      this.staged = this.stageFrom = 0;
      return;
    }
    // A copy: the stage is written over once this returns, the member deflates later.
    const block = Buffer.concat(pieces);
    this.staged = this.stageFrom = 0;
    const strategy = looksLikeBase64(block) ? constants.Z_RLE : constants.Z_DEFAULT_STRATEGY;
    const member = gzipAsync(block, { level: 1, strategy });
    member.catch(() => undefined); // awaited in order below; an abort may drop it first
    this.deflating.push(member);
    while (this.deflating.length >= GZIP_IN_FLIGHT) await this.writeOldestMember();
  }

  private async writeOldestMember(): Promise<void> {
    const member = this.deflating[0] as Promise<Buffer>;
    let bytes: Buffer;
    try {
      bytes = await member;
    } catch (error) {
      throw writeError(error, this.path);
    }
    this.deflating.shift();
    await this.writeOut([bytes]);
  }

  /** Waits for the write under way (its failure throws here), then starts writing `pieces`. */
  private async writeOut(pieces: Buffer[]): Promise<void> {
    if (this.writing) await this.writing;
    const writing = this.writeAll(this.fd as number, pieces);
    writing.catch(() => undefined); // awaited by the next write or the seal
    this.writing = writing;
  }

  private async writeAll(fd: number, written: Buffer[]): Promise<void> {
    let pieces = written;
    let total = 0;
    for (const piece of written) total += piece.length;
    try {
      while (pieces.length > 0) {
        let written = await writevAsync(fd, pieces);
        // A short write: drop what went out, trim the first piece that went out partly.
        let i = 0;
        while (i < pieces.length && written >= (pieces[i] as Buffer).length) written -= (pieces[i++] as Buffer).length;
        pieces = pieces.slice(i);
        if (written > 0 && pieces[0]) pieces[0] = pieces[0].subarray(written);
      }
    } catch (error) {
      throw writeError(error, this.path);
    }
    this.fileBytes += total;
    this.onFileBytes?.(this.fileBytes);
    if (this.syncsAhead && !this.syncing && this.fileBytes - this.syncedAt >= SYNC_AHEAD_BYTES) this.syncAhead(fd);
  }

  /**
   * Starts an fdatasync of what is written so far. Its failure is kept for the seal to throw: the
   * kernel reports a write-back error to a file once, so the seal's own fsync could then succeed.
   */
  private syncAhead(fd: number): void {
    this.syncedAt = this.fileBytes;
    const syncing = new Promise<void>((resolve) =>
      fdatasync(fd, (error) => {
        if (error) this.syncFailure ??= error;
        resolve();
      }),
    );
    this.syncing = syncing;
    void syncing.then(() => {
      if (this.syncing === syncing) this.syncing = null;
    });
  }

  /** Seals and publishes at once, for a file verified after it is in place. */
  async commit(): Promise<void> {
    await this.seal();
    this.publish();
  }

  /** The temporary file while it is being written and verified. */
  get tempPath(): string {
    return this.tmp;
  }

  get compressed(): boolean {
    return this.gzip;
  }

  /** Flushes and fsyncs the temporary file and closes it: whole on disk, not yet under its name. */
  async seal(): Promise<void> {
    try {
      await this.flush();
      while (this.deflating.length > 0) await this.writeOldestMember();
      if (this.writing) await this.writing;
      this.writing = null;
      if (this.syncing) await this.syncing;
      if (this.syncFailure) throw this.syncFailure;
      fsyncSync(this.fd as number);
      closeSync(this.fd as number);
      this.fd = undefined;
    } catch (error) {
      this.abort();
      throw writeError(error, this.path);
    }
  }

  /** Writes out what is left and closes the file, without fsync: for a segment, copied into a file that is fsynced. */
  async closeSegment(): Promise<void> {
    try {
      await this.flush();
      if (this.writing) await this.writing;
      this.writing = null;
      closeSync(this.fd as number);
      this.fd = undefined;
    } catch (error) {
      this.abort();
      throw writeError(error, this.path);
    }
  }

  /** Renames the sealed file into place and fsyncs its folder: the archive exists whole or not at all. */
  publish(): void {
    try {
      renameSync(this.tmp, this.path);
      untrackTempFile(this.tmp);
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
    this.deflating = [];
    const fd = this.fd;
    this.fd = undefined;
    if (fd !== undefined) {
      const close = (): void => {
        try {
          closeSync(fd);
        } catch {
          // already closed
        }
      };
      // Closed only once a write or sync under way is done: a number reused by another open must never receive it.
      const busy = [this.writing, this.syncing].filter((p): p is Promise<void> => p !== null);
      if (busy.length > 0) void Promise.allSettled(busy).then(close);
      else close();
    }
    this.writing = null;
    this.syncing = null;
    rmSync(this.tmp, { force: true });
    untrackTempFile(this.tmp);
  }
}

const MESSAGE_MARK = Buffer.from('\u0001');
const PART_MARK = Buffer.from('\u0002');
/** The values beside a session's rows, digested too so that damage to them on disk fails verification. */
export type DigestedExtras = 'sessionExtras' | 'sessionInfo' | 'messageExtras';
const EXTRAS_MARKS: Record<DigestedExtras, Buffer> = { sessionExtras: Buffer.from('\u0004'), sessionInfo: Buffer.from('\u0005'), messageExtras: Buffer.from('\u0006') };
const rowMarks = new Map<string, Buffer>();

/** What verification and restore learn about one archived session. */
export interface ArchivedSessionSummary {
  id: string;
  messages: number;
  parts: number;
  /** Rows per table as archived (messages, parts, and every other table the session owns). */
  counts: TableCounts;
  /** XXH64 over every message, part and table row as archived, in order, with the values beside them. */
  digest: string;
}

let xxh: XXHashAPI | null = null;
let xxhLoading: Promise<XXHashAPI> | null = null;

/**
 * Loads the digests' hash once per thread (XXH64, a small WebAssembly module): every writer and
 * reader of archives awaits it before its first SessionDigest is fed. The digest compares a
 * writer's bytes with its own read-back, never with anyone's forgery, so a checksum this fast
 * does the work sha256 did at a quarter of its cpu.
 */
export async function loadSessionDigests(): Promise<void> {
  xxh ??= await (xxhLoading ??= xxhash());
}

/** Bytes fed to the hash in one call at most: the module copies each call's input into its own memory, which never shrinks. */
const HASH_CALL_BYTES = 1024 * 1024;

const DIGEST_STAGE_BYTES = 64 * 1024;
/** One staging buffer for every digest: a digest is fed synchronously, each call leaves it empty or its own. */
let digestStage: { bytes: Buffer; owner: SessionDigest | null; length: number } | null = null;

/**
 * Running digest of one session's archived objects, shared by the writer and the reader. Small
 * pieces are gathered and hashed 64 KB at a time (the same bytes in the same order, so the same
 * digest): a hash call per piece cost more than the hashing.
 */
export class SessionDigest {
  private started: XXHash<bigint> | null = null;
  readonly counts: TableCounts = {};

  /** Made at the first bytes: a digest may be constructed before loadSessionDigests() is done, never fed. */
  private get hash(): XXHash<bigint> {
    if (this.started) return this.started;
    if (!xxh) throw new SkError('internal', 'a session digest was fed before loadSessionDigests()');
    return (this.started = xxh.create64());
  }

  begin(kind: 'message' | 'part'): void {
    this.counts[kind] = (this.counts[kind] ?? 0) + 1;
    this.update(kind === 'message' ? MESSAGE_MARK : PART_MARK);
  }

  /** The session's extras or info, or a message's extras: their bytes as archived follow. */
  beginExtras(kind: DigestedExtras): void {
    this.update(EXTRAS_MARKS[kind]);
  }

  /** A row of another table; format-1 archives have none, so their digests stay what they were. */
  beginRow(table: string): void {
    this.counts[table] = (this.counts[table] ?? 0) + 1;
    let mark = rowMarks.get(table);
    if (!mark) {
      mark = Buffer.from(`\u0003${table}\u0000`);
      // A schema has few tables; an archive naming many more is not worth remembering.
      if (rowMarks.size < 256) rowMarks.set(table, mark);
    }
    this.update(mark);
  }

  update(bytes: Buffer): void {
    const stage = (digestStage ??= { bytes: Buffer.allocUnsafe(DIGEST_STAGE_BYTES), owner: null, length: 0 });
    if (stage.owner !== this) {
      stage.owner?.drain();
      stage.owner = this;
    }
    if (bytes.length > DIGEST_STAGE_BYTES / 4) {
      this.drain();
      for (let at = 0; at < bytes.length; at += HASH_CALL_BYTES) this.hash.update(bytes.subarray(at, at + HASH_CALL_BYTES));
      return;
    }
    if (bytes.length > DIGEST_STAGE_BYTES - stage.length) {
      this.drain();
      stage.owner = this;
    }
    bytes.copy(stage.bytes, stage.length);
    stage.length += bytes.length;
  }

  /** `update` of the text's UTF-8 bytes, encoded straight into the staging buffer when they fit. */
  updateText(text: string): void {
    const stage = (digestStage ??= { bytes: Buffer.allocUnsafe(DIGEST_STAGE_BYTES), owner: null, length: 0 });
    // A UTF-16 unit is at most 3 bytes of UTF-8.
    if (text.length * 3 > DIGEST_STAGE_BYTES / 4) {
      this.update(Buffer.from(text));
      return;
    }
    if (stage.owner !== this) {
      stage.owner?.drain();
      stage.owner = this;
    }
    if (text.length * 3 > DIGEST_STAGE_BYTES - stage.length) {
      this.drain();
      stage.owner = this;
    }
    stage.length += stage.bytes.write(text, stage.length);
  }

  /** Hashes what is staged for this digest. */
  private drain(): void {
    const stage = digestStage;
    if (!stage || stage.owner !== this) return;
    if (stage.length > 0) this.hash.update(stage.bytes.subarray(0, stage.length));
    stage.length = 0;
    stage.owner = null;
  }

  /** `header` adds the rows archived with the session row (todos, the share). */
  finish(id: string, header: TableCounts = {}): ArchivedSessionSummary {
    this.drain();
    const counts = { message: 0, part: 0, ...this.counts, ...header };
    return { id, messages: counts['message'] ?? 0, parts: counts['part'] ?? 0, counts, digest: this.hash.digest().toString(16).padStart(16, '0') };
  }
}
