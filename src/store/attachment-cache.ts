/**
 * Content-addressed attachment files: `<dir>/<sha256[0:2]>/<sha256>`. Payloads are decoded from
 * the part's bytes in chunks straight to a temporary file, hashed on the way, then renamed: the
 * decoded file never exists as one string or buffer. Names from the data are never used as paths.
 */
import { createHash, randomUUID } from 'node:crypto';
import {
  closeSync,
  existsSync,
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
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { threadId } from 'node:worker_threads';
import type { AttachmentSpan } from '../core/part-scan.js';
import { SkError } from '../core/errors.js';

/** Base64 is decoded this many characters at a time (a multiple of 4). */
const DECODE_CHUNK_CHARS = 4 * 1024 * 1024;
/** Percent-encoded (non-base64) data URLs are small by nature; larger ones are refused. */
const MAX_PLAIN_DATA_URL = 64 * 1024 * 1024;
const BASE64_BODY = /[^A-Za-z0-9+/_-]/;

interface FileSink {
  write(chunk: Buffer): void;
  finish(): CachedFile;
  abort(): void;
}

export interface CachedFile {
  path: string;
  sha256: string;
  bytes: number;
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

  /**
   * A temporary file that becomes either the cache entry for its content (named by its sha256)
   * or, with `target`, the user's own file: hashed on the way, renamed when whole, removed if not.
   */
  private openSink(ref: string, target?: string): FileSink {
    const tmpDir = target ? dirname(resolve(target)) : join(this.dir, 'tmp');
    let fd: number | undefined;
    let tmp: string;
    try {
      mkdirSync(tmpDir, { recursive: true, mode: 0o700 });
      tmp = target ? `${resolve(target)}.${randomUUID().slice(0, 8)}.tmp` : join(tmpDir, `${process.pid}-${threadId}-${randomUUID()}`);
      fd = openSync(tmp, 'wx', 0o600);
    } catch (error) {
      throw ioError(error, target ?? `attachment cache ${this.dir}`);
    }
    const hash = createHash('sha256');
    let bytes = 0;
    const close = (): void => {
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
    };
    return {
      write: (chunk: Buffer): void => {
        hash.update(chunk);
        let written = 0;
        while (written < chunk.length) written += writeSync(fd as number, chunk, written);
        bytes += chunk.length;
      },
      finish: (): CachedFile => {
        close();
        const sha256 = hash.digest('hex');
        if (target) {
          renameSync(tmp, resolve(target));
          return { path: resolve(target), sha256, bytes };
        }
        const path = this.pathFor(sha256);
        mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
        if (existsSync(path)) rmSync(tmp, { force: true });
        else renameSync(tmp, path);
        this.remember(ref, sha256);
        return { path, sha256, bytes };
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

  /**
   * Decodes one data URL of `buf` into the cache under `ref`, or straight into `target` when
   * given; `label` names it in errors. Base64 is validated and decoded a few MB at a time.
   */
  writeSpan(buf: Buffer, span: AttachmentSpan, ref: string, label: string, target?: string): CachedFile {
    const sink = this.openSink(ref, target);
    try {
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
      } else {
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
      return sink.finish();
    } catch (error) {
      sink.abort();
      throw ioError(error, target ?? `attachment cache ${this.dir}`);
    }
  }

  /**
   * Writes already-decoded bytes arriving in chunks (an external store's attachment rows) into the
   * cache under `ref`, or into `target`. Memory holds one chunk at a time.
   */
  async writeChunks(chunks: AsyncIterable<Buffer>, ref: string, target?: string): Promise<CachedFile> {
    const sink = this.openSink(ref, target);
    try {
      for await (const chunk of chunks) sink.write(chunk);
      return sink.finish();
    } catch (error) {
      sink.abort();
      throw ioError(error, target ?? `attachment cache ${this.dir}`);
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
