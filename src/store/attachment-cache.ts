/**
 * Content-addressed attachment files: `<dir>/<sha256[0:2]>/<sha256>`. Payloads are decoded from
 * the part's bytes in chunks straight to a temporary file, hashed on the way, then renamed: the
 * decoded file never exists as one string or buffer. Names from the data are never used as paths.
 * An entry can be written through a FileHandle that stays open (`createEntry`): consumers read
 * that handle, so nothing opens a cache file by name after it was written; one that must be
 * opened by name (`openEntry`) is checked to be the regular file inside the cache it claims to be.
 */
import { createHash, randomUUID, type Hash } from 'node:crypto';
import {
  closeSync,
  constants,
  createWriteStream,
  ftruncateSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { threadId } from 'node:worker_threads';
import type { AttachmentSink } from '../core/attachment-stream.js';
import type { AttachmentSpan } from '../core/part-scan.js';
import { SkError } from '../core/errors.js';

/** Base64 is decoded this many characters at a time (a multiple of 4). */
const DECODE_CHUNK_CHARS = 4 * 1024 * 1024;
/** Bytes per read and write when an entry is copied out to the user's file. */
const COPY_CHUNK_BYTES = 1024 * 1024;
/** Percent-encoded (non-base64) data URLs are small by nature; larger ones are refused. */
const MAX_PLAIN_DATA_URL = 64 * 1024 * 1024;
const BASE64_BODY = /[^A-Za-z0-9+/_-]/;

export interface CachedFile {
  path: string;
  sha256: string;
  bytes: number;
}

/**
 * A decoded attachment being written: the chunked decoder's sink (`write`, `discard`), then
 * `finish` names the file by its content (or renames it to the user's target) or `abort` removes it.
 */
export interface EntryWriter extends AttachmentSink {
  /** Bytes kept so far. */
  readonly bytes: number;
  finish(): CachedFile;
  abort(): void;
}

function percentDecode(text: string): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const char = text[i] as string;
    if (char === '%' && /^[0-9a-fA-F]{2}$/.test(text.slice(i + 1, i + 3))) {
      bytes.push(Number.parseInt(text.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      for (const byte of Buffer.from(char, 'utf8')) bytes.push(byte);
    }
  }
  return Buffer.from(bytes);
}

function ioError(error: unknown, what: string): SkError {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG') return new SkError('disk-full', `disk full while writing ${what}`);
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return new SkError('read-only', `cannot write ${what} (${code})`);
  if (error instanceof SkError) return error;
  return new SkError('internal', `cannot write ${what}: ${(error as Error).message}`);
}

/** Whether a process with this id exists (one we may not signal still does). */
function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class AttachmentCache {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = resolve(dir);
  }

  pathFor(sha256: string): string {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new SkError('usage', `not a sha256: ${sha256.slice(0, 80)}`);
    return join(this.dir, sha256.slice(0, 2), sha256);
  }

  /**
   * The real path of `candidate` if it names a file inside the cache, else null: `..`, absolute
   * paths elsewhere and symlinks leading out are all refused.
   */
  resolveInside(candidate: string): string | null {
    const joined = isAbsolute(candidate) ? candidate : join(this.dir, candidate);
    let real: string;
    let root: string;
    try {
      real = realpathSync(joined);
      root = realpathSync(this.dir);
    } catch {
      return null;
    }
    const rel = relative(root, real);
    if (rel === '' || rel.startsWith('..') || isAbsolute(rel) || rel.split(sep).includes('..')) return null;
    return real;
  }

  /** A fresh temporary name for a file that becomes the cache entry, or the user's `target`. */
  private temporary(target?: string): string {
    const tmpDir = target ? dirname(resolve(target)) : join(this.dir, 'tmp');
    try {
      mkdirSync(tmpDir, { recursive: true, mode: 0o700 });
    } catch (error) {
      throw ioError(error, target ?? `attachment cache ${this.dir}`);
    }
    return target ? `${resolve(target)}.${randomUUID().slice(0, 8)}.tmp` : join(tmpDir, `${process.pid}-${threadId}-${randomUUID()}`);
  }

  /**
   * The writer over an open temporary file: hashed on the way, written at explicit offsets (so
   * `discard` can start over), renamed when whole, removed if not. `close` releases the descriptor
   * when the writer owns it; a handle's owner closes the handle itself.
   */
  private writer(tmp: string, fd: number, ref: string, target: string | undefined, close: () => void): EntryWriter {
    let hash: Hash = createHash('sha256');
    let bytes = 0;
    const what = target ?? `attachment cache ${this.dir}`;
    return {
      get bytes(): number {
        return bytes;
      },
      write: (chunk: Buffer): void => {
        hash.update(chunk);
        try {
          let written = 0;
          while (written < chunk.length) written += writeSync(fd, chunk, written, chunk.length - written, bytes + written);
        } catch (error) {
          throw ioError(error, what);
        }
        bytes += chunk.length;
      },
      discard: (): void => {
        ftruncateSync(fd, 0);
        hash = createHash('sha256');
        bytes = 0;
      },
      finish: (): CachedFile => {
        close();
        const sha256 = hash.digest('hex');
        try {
          if (target) {
            renameSync(tmp, resolve(target));
            return { path: resolve(target), sha256, bytes };
          }
          const path = this.pathFor(sha256);
          mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
          // Replacing whatever is there (even a symlink someone put in its place) with what was just decoded.
          renameSync(tmp, path);
          this.remember(ref, sha256);
          return { path, sha256, bytes };
        } catch (error) {
          rmSync(tmp, { force: true });
          throw ioError(error, what);
        }
      },
      abort: (): void => {
        try {
          close();
        } finally {
          rmSync(tmp, { force: true });
        }
      },
    };
  }

  /** A writer for a new entry under `ref` (or the user's `target`) over a descriptor it closes when done. */
  writerFor(ref: string, target?: string): EntryWriter {
    const tmp = this.temporary(target);
    let fd: number | undefined;
    try {
      fd = openSync(tmp, 'wx', 0o600);
    } catch (error) {
      throw ioError(error, target ?? `attachment cache ${this.dir}`);
    }
    return this.writer(tmp, fd, ref, target, () => {
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
    });
  }

  /**
   * A new cache entry under `ref`, written through a FileHandle that stays open after `finish`:
   * the handle is what consumers read (it keeps naming the bytes decoded here whatever later
   * happens to the path), so no one has to open the cache file by name again.
   */
  async createEntry(ref: string): Promise<{ writer: EntryWriter; handle: FileHandle }> {
    const tmp = this.temporary();
    let handle: FileHandle;
    try {
      // Read and write: the same descriptor serves the readers once the entry is finished.
      handle = await open(tmp, 'wx+', 0o600);
    } catch (error) {
      throw ioError(error, `attachment cache ${this.dir}`);
    }
    const writer = this.writer(tmp, handle.fd, ref, undefined, () => undefined);
    return {
      handle,
      writer: {
        get bytes(): number {
          return writer.bytes;
        },
        write: (chunk) => writer.write(chunk),
        discard: () => writer.discard(),
        finish: () => writer.finish(),
        abort: () => {
          writer.abort();
          void handle.close().catch(() => undefined);
        },
      },
    };
  }

  /** Decodes one data URL of `buf` into `sink`: base64 validated and decoded a few MB at a time. */
  private decodeSpan(sink: AttachmentSink, buf: Buffer, span: AttachmentSpan, label: string): void {
    if (span.base64) {
      let end = span.end;
      while (end > span.payloadStart && buf[end - 1] === 0x3d && span.end - end < 2) end--;
      if ((end - span.payloadStart) % 4 === 1) {
        throw new SkError('bad-attachment', `${label}: data URL is not valid base64 (truncated payload)`);
      }
      for (let at = span.payloadStart; at < end; at += DECODE_CHUNK_CHARS) {
        const text = buf.toString('latin1', at, Math.min(end, at + DECODE_CHUNK_CHARS));
        const bad = text.search(BASE64_BODY);
        if (bad >= 0) {
          const char = JSON.stringify(text[bad]);
          throw new SkError('bad-attachment', `${label}: data URL is not valid base64 (${char} at payload offset ${at - span.payloadStart + bad})`);
        }
        sink.write(Buffer.from(text, 'base64'));
      }
      return;
    }
    const length = span.end - span.payloadStart;
    if (length > MAX_PLAIN_DATA_URL) {
      throw new SkError('too-big', `${label}: a percent-encoded data URL of ${length} bytes is over the ${MAX_PLAIN_DATA_URL}-byte limit`);
    }
    let text: string;
    try {
      text = JSON.parse(`"${buf.toString('utf8', span.payloadStart, span.end)}"`) as string;
    } catch {
      throw new SkError('bad-attachment', `${label}: data URL is not a valid JSON string`);
    }
    sink.write(percentDecode(text));
  }

  /** Runs `fill` into `writer` and finishes it; any failure removes the partial file. */
  static fill<T extends EntryWriter>(writer: T, fill: (sink: T) => void): CachedFile {
    try {
      fill(writer);
      return writer.finish();
    } catch (error) {
      writer.abort();
      throw ioError(error, 'an attachment file');
    }
  }

  /** `decodeSpan` into a writer (a new entry's, with its handle). */
  decodeSpanInto(writer: EntryWriter, buf: Buffer, span: AttachmentSpan, label: string): CachedFile {
    return AttachmentCache.fill(writer, (sink) => this.decodeSpan(sink, buf, span, label));
  }

  /**
   * Decodes one data URL of `buf` into the cache under `ref`, or straight into `target` when
   * given; `label` names it in errors. Base64 is validated and decoded a few MB at a time.
   */
  writeSpan(buf: Buffer, span: AttachmentSpan, ref: string, label: string, target?: string): CachedFile {
    return this.decodeSpanInto(this.writerFor(ref, target), buf, span, label);
  }

  /**
   * Writes already-decoded bytes arriving in chunks (an external store's attachment rows) into the
   * cache under `ref`, or into `target`. Memory holds one chunk at a time.
   */
  async writeChunks(chunks: AsyncIterable<Buffer>, ref: string, target?: string): Promise<CachedFile> {
    return AttachmentCache.fillAsync(this.writerFor(ref, target), chunks);
  }

  /** `writeChunks` into a writer (a new entry's, with its handle). */
  static async fillAsync(writer: EntryWriter, chunks: AsyncIterable<Buffer>): Promise<CachedFile> {
    try {
      for await (const chunk of chunks) writer.write(chunk);
      return writer.finish();
    } catch (error) {
      writer.abort();
      throw ioError(error, 'an attachment file');
    }
  }

  /**
   * Removes temporary files whose writer is gone: named `<pid>-<threadId>-<uuid>`, a file is kept
   * while `isLive(pid, threadId)` says so and its process exists. Returns how many were removed.
   */
  sweepTemporary(isLive: (pid: number, threadId: number) => boolean): number {
    const tmpDir = join(this.dir, 'tmp');
    let removed = 0;
    let names: string[];
    try {
      names = readdirSync(tmpDir);
    } catch {
      return 0;
    }
    for (const name of names) {
      const match = /^(\d+)-(\d+)-[0-9a-f-]{36}$/.exec(name);
      if (!match) continue;
      const pid = Number(match[1]);
      if (isLive(pid, Number(match[2])) && processExists(pid)) continue;
      rmSync(join(tmpDir, name), { force: true });
      removed++;
    }
    return removed;
  }

  /**
   * Opens the cache file of content `sha256` for reading, when it is a regular file inside the
   * cache: the path is checked, opened without following a final symlink, and what was opened is
   * checked to be the file the path still names (a swap between check and open is refused).
   * Null when there is no such file or it is not ours to serve.
   */
  async openEntry(sha256: string): Promise<FileHandle | null> {
    const rel = relative(this.dir, this.pathFor(sha256));
    const real = this.resolveInside(rel);
    if (!real) return null;
    let handle: FileHandle;
    try {
      handle = await open(real, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0));
    } catch {
      return null;
    }
    try {
      const opened = await handle.stat();
      const again = this.resolveInside(rel);
      const named = again ? lstatSync(again) : null;
      if (opened.isFile() && named && named.ino === opened.ino && named.dev === opened.dev) return handle;
    } catch {
      // gone meanwhile: refused below
    }
    await handle.close().catch(() => undefined);
    return null;
  }

  /**
   * Writes the bytes behind `handle` to the user's `target` (a temporary file beside it, renamed
   * when whole, mode 0600), read at explicit offsets so the handle stays usable. Returns its path.
   */
  static async writeFromHandle(handle: FileHandle, target: string): Promise<string> {
    const path = resolve(target);
    const tmp = `${path}.${randomUUID().slice(0, 8)}.tmp`;
    try {
      await pipeline(
        handle.createReadStream({ start: 0, autoClose: false, highWaterMark: COPY_CHUNK_BYTES }),
        createWriteStream(tmp, { flags: 'wx', mode: 0o600, highWaterMark: COPY_CHUNK_BYTES }),
      );
      renameSync(tmp, path);
      return path;
    } catch (error) {
      rmSync(tmp, { force: true });
      throw ioError(error, target);
    }
  }

  /** Which part a cached file came from: `refs/<ref>` holds its sha256, so deletes can drop it. */
  private remember(ref: string, sha256: string): void {
    const refs = join(this.dir, 'refs');
    mkdirSync(refs, { recursive: true, mode: 0o700 });
    writeFileSync(join(refs, ref), sha256, { mode: 0o600 });
  }

  /**
   * Forgets the attachments of deleted parts and removes cached files no remaining part refers
   * to. Returns how many files were removed.
   */
  forgetParts(partIds: ReadonlySet<string>): number {
    const refs = join(this.dir, 'refs');
    let names: string[];
    try {
      names = readdirSync(refs);
    } catch {
      return 0;
    }
    const candidates = new Set<string>();
    const kept = new Set<string>();
    for (const name of names) {
      let sha: string;
      try {
        sha = readFileSync(join(refs, name), 'utf8').trim();
      } catch {
        continue;
      }
      if (partIds.has(name.replace(/\.\d+$/, ''))) {
        rmSync(join(refs, name), { force: true });
        candidates.add(sha);
      } else {
        kept.add(sha);
      }
    }
    let removed = 0;
    for (const sha of candidates) {
      if (kept.has(sha) || !/^[0-9a-f]{64}$/.test(sha)) continue;
      rmSync(this.pathFor(sha), { force: true });
      removed++;
    }
    return removed;
  }
}
