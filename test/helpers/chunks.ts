/**
 * What the chunked scanners' tests share: a value cut into chunks of one size, the chunk sizes
 * to try for a value, and a run's result or its error as one comparable value.
 */
import { SkError } from '../../src/core/errors.js';

/** `buf` in chunks of `size` bytes, each a copy (as better-sqlite3 hands out: nothing may rely on chunks sharing memory). */
export function* chunksOf(buf: Buffer, size: number): Generator<Buffer> {
  for (let at = 0; at < buf.length; at += size) yield Buffer.from(buf.subarray(at, at + size));
}

/** Every size from 1 to 64 bytes (so a boundary falls at every awkward place), then a spread up to the whole value. */
export function chunkSizes(length: number): number[] {
  const sizes = new Set<number>();
  for (let s = 1; s <= Math.min(length, 64); s++) sizes.add(s);
  for (let s = 65; s < length; s = Math.ceil(s * 1.37)) sizes.add(s);
  sizes.add(Math.max(1, length));
  return [...sizes];
}

/** What `run` returns, or its error as `{error: "code: message"}`, so a chunked run and a whole one compare with toEqual. */
export function outcome(run: () => unknown): unknown {
  try {
    return run();
  } catch (error) {
    return { error: error instanceof SkError ? `${error.code}: ${error.message}` : String(error) };
  }
}
