/**
 * A part rebuilt from the server too big to hold whole (a large attachment put back into its
 * JSON): written to a file of ours piece by piece as its chunks arrive, then handed on as a
 * ChunkedValue read back from that file, which SQLite can fill the value from (as an archive's
 * large part is). The file goes when the consumer has taken the part's session.
 */
import { randomUUID } from 'node:crypto';
import { closeSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ChunkedValue } from '../session-items.js';
import { trackTempFile, untrackTempFile } from '../temp-files.js';

/** A rebuilt part at least this big goes through a file, never one Buffer (the size the SQLite side hands on in chunks). */
export const SPILL_PART_BYTES = 8 * 1024 * 1024;
const READ_CHUNK_BYTES = 1024 * 1024;

export class SpilledPart {
  private fd: number | undefined;
  private bytes = 0;

  private constructor(readonly path: string) {
    this.fd = openSync(path, 'wx+', 0o600);
    trackTempFile(path);
  }

  /** Writes `pieces` into a new file in `dir`. */
  static async write(dir: string, pieces: AsyncIterable<Buffer>): Promise<SpilledPart> {
    const spill = new SpilledPart(join(dir, `${randomUUID()}.part`));
    try {
      for await (const piece of pieces) spill.append(piece);
      return spill;
    } catch (error) {
      spill.remove();
      throw error;
    }
  }

  private append(piece: Buffer): void {
    let written = 0;
    while (written < piece.length) written += writeSync(this.fd as number, piece, written, piece.length - written, this.bytes + written);
    this.bytes += piece.length;
  }

  /** The part's bytes, read back from the file a chunk at a time (as often as asked). */
  value(): ChunkedValue {
    return new ChunkedValue(this.bytes, () => this.chunks(), { path: this.path, offset: 0 });
  }

  private *chunks(): Generator<Buffer> {
    for (let at = 0; at < this.bytes; at += READ_CHUNK_BYTES) {
      const piece = Buffer.allocUnsafe(Math.min(READ_CHUNK_BYTES, this.bytes - at));
      let got = 0;
      while (got < piece.length) {
        const n = readSync(this.fd as number, piece, got, piece.length - got, at + got);
        if (n === 0) break;
        got += n;
      }
      yield piece.subarray(0, got);
    }
  }

  remove(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    rmSync(this.path, { force: true });
    untrackTempFile(this.path);
  }
}
