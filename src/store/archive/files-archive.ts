/**
 * Files from the data folder (orphan session diffs, the pre-SQLite JSON tree) into one archive
 * before they are removed: a ustar stream through ArchiveSink (temp name, mode 0600, fsync,
 * rename; `.tar.gz` as gzip members that `tar xzf` reads), each file read in 1 MB pieces and
 * hashed on the way. Read back, every entry's name, size and sha256 must match what was written.
 * ustar is written here, not by a library: regular files with names under 256 bytes are all it
 * carries, and it must go through the same sink as every other archive.
 */
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, fstatSync, openSync, readSync } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { SkError } from '../../core/errors.js';
import { ArchiveSink } from './archive-sink.js';

const BLOCK = 512;
const PIECE = 1024 * 1024;
/** ustar's size field: 11 octal digits. */
const MAX_ENTRY_BYTES = 8 ** 11 - 1;

export interface FileToArchive {
  /** Where the file is now. */
  path: string;
  /** Its name inside the archive (relative to the folder it will be extracted into). */
  name: string;
}

export interface ArchivedFile {
  path: string;
  name: string;
  bytes: number;
  mtimeMs: number;
}

export interface FilesArchive {
  path: string;
  files: ArchivedFile[];
  /** sha256 over every entry's name, size and content digest, in order. */
  digest: string;
  bytes: number;
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0');
}

/** Splits a name into ustar's prefix (155) and name (100) at a slash. */
function splitName(name: string): { prefix: string; base: string } {
  if (Buffer.byteLength(name) <= 100) return { prefix: '', base: name };
  for (let at = name.indexOf('/'); at >= 0; at = name.indexOf('/', at + 1)) {
    const prefix = name.slice(0, at);
    const base = name.slice(at + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(base) <= 100) return { prefix, base };
  }
  throw new SkError('archive', `cannot archive ${name}: its name is too long for the archive format`);
}

function header(name: string, size: number, mtimeMs: number): Buffer {
  const block = Buffer.alloc(BLOCK);
  const { prefix, base } = splitName(name);
  block.write(base, 0, 100);
  block.write(`${octal(0o600, 8)}\0`, 100);
  block.write(`${octal(0, 8)}\0`, 108);
  block.write(`${octal(0, 8)}\0`, 116);
  block.write(`${octal(size, 12)}\0`, 124);
  block.write(`${octal(Math.floor(mtimeMs / 1000), 12)}\0`, 136);
  block.write('        ', 148);
  block.write('0', 156);
  block.write('ustar\u000000', 257);
  block.write(prefix, 345, 155);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${octal(sum, 7)}\0 `, 148);
  return block;
}

const entryDigest = (name: string, bytes: number, sha: string): string => `${name}\u0000${bytes}\u0000${sha}\n`;

/** Writes the files into `path`; a file that changes size while it is read fails the whole archive. */
export async function writeFilesArchive(path: string, files: Iterable<FileToArchive>): Promise<FilesArchive> {
  const sink = new ArchiveSink(path);
  const archived: ArchivedFile[] = [];
  const digest = createHash('sha256');
  const buffer = Buffer.alloc(PIECE);
  try {
    for (const file of files) {
      const fd = openSync(file.path, 'r');
      try {
        const stat = fstatSync(fd);
        if (!stat.isFile()) throw new SkError('archive', `${file.path} is not a regular file; nothing was removed`);
        if (stat.size > MAX_ENTRY_BYTES) throw new SkError('archive', `${file.path} is too large for the archive format; nothing was removed`);
        await sink.write(header(file.name, stat.size, stat.mtimeMs));
        const hash = createHash('sha256');
        let read = 0;
        for (let n = readSync(fd, buffer, 0, PIECE, read); n > 0; n = readSync(fd, buffer, 0, PIECE, read)) {
          const piece = Buffer.from(buffer.subarray(0, Math.min(n, stat.size - read)));
          if (piece.length === 0) break;
          hash.update(piece);
          await sink.write(piece);
          read += piece.length;
        }
        if (read !== stat.size) throw new SkError('archive', `${file.path} changed while it was archived; nothing was removed`);
        const pad = (BLOCK - (read % BLOCK)) % BLOCK;
        if (pad) await sink.write(Buffer.alloc(pad));
        digest.update(entryDigest(file.name, read, hash.digest('hex')));
        archived.push({ path: file.path, name: file.name, bytes: read, mtimeMs: stat.mtimeMs });
      } finally {
        closeSync(fd);
      }
    }
    await sink.write(Buffer.alloc(BLOCK * 2));
    await sink.commit();
  } catch (error) {
    sink.abort();
    throw error;
  }
  return { path, files: archived, digest: digest.digest('hex'), bytes: sink.bytes };
}

const field = (block: Buffer, from: number, length: number): string => {
  const raw = block.subarray(from, from + length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end < 0 ? raw.length : end).toString('utf8');
};

/** Reads the archive back (streamed) and checks it holds exactly `expected`, byte for byte. */
export async function verifyFilesArchive(expected: FilesArchive): Promise<void> {
  const digest = createHash('sha256');
  let entries = 0;
  let pending: Buffer = Buffer.alloc(0);
  let entry: { name: string; left: number; pad: number; hash: ReturnType<typeof createHash>; size: number } | null = null;
  let ended = false;
  const fail = (what: string): never => {
    throw new SkError('archive', `the archive ${expected.path} did not verify (${what}); nothing was removed`);
  };
  const take = (chunk: Buffer): void => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    for (;;) {
      if (ended) return;
      if (entry) {
        if (entry.left > 0) {
          if (pending.length === 0) return;
          const piece = pending.subarray(0, Math.min(entry.left, pending.length));
          entry.hash.update(piece);
          entry.left -= piece.length;
          pending = pending.subarray(piece.length);
          continue;
        }
        if (pending.length < entry.pad) return;
        pending = pending.subarray(entry.pad);
        digest.update(entryDigest(entry.name, entry.size, entry.hash.digest('hex')));
        entries++;
        entry = null;
        continue;
      }
      if (pending.length < BLOCK) return;
      const block = pending.subarray(0, BLOCK);
      pending = pending.subarray(BLOCK);
      if (block.every((b) => b === 0)) {
        ended = true;
        return;
      }
      let sum = 0;
      for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (block[i] as number);
      if (Number.parseInt(field(block, 148, 8).trim(), 8) !== sum) fail(`a damaged header after ${entries} entries`);
      const prefix = field(block, 345, 155);
      const name = prefix ? `${prefix}/${field(block, 0, 100)}` : field(block, 0, 100);
      const size = Number.parseInt(field(block, 124, 12).trim(), 8);
      entry = { name, left: size, pad: (BLOCK - (size % BLOCK)) % BLOCK, hash: createHash('sha256'), size };
    }
  };
  try {
    const stream = createReadStream(expected.path).pipe(createGunzip());
    for await (const chunk of stream) take(chunk as Buffer);
  } catch (error) {
    if (error instanceof SkError) throw error;
    fail((error as Error).message);
  }
  if (!ended || entry) fail('it ends early');
  if (entries !== expected.files.length) fail(`${entries} entries, ${expected.files.length} written`);
  if (digest.digest('hex') !== expected.digest) fail('an entry differs from the file it was written from');
}
