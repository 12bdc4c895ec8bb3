/**
 * Finding where a JSON string ends when its bytes arrive in chunks: a quote closes the string only
 * after an even run of backslashes, and that run may have begun in an earlier chunk.
 */
export const QUOTE = 0x22;
export const BACKSLASH = 0x5c;

/**
 * Index of the quote that ends the string in `chunk` at or after `from`, or -1 when it goes on past
 * this chunk. `low` is where the string's own bytes begin in this chunk (0 when it began earlier);
 * `carried` the backslashes that ended the previous chunk.
 */
export function closingQuote(chunk: Buffer, from: number, low: number, carried: number): number {
  let at = from;
  for (;;) {
    const quote = chunk.indexOf(QUOTE, at);
    if (quote < 0) return -1;
    let run = 0;
    let k = quote - 1;
    while (k >= low && chunk[k] === BACKSLASH) {
      run++;
      k--;
    }
    if (k < low) run += carried;
    if (run % 2 === 0) return quote;
    at = quote + 1;
  }
}

/** The backslash run at the end of `chunk` that the next chunk's first quote must count. */
export function trailingBackslashes(chunk: Buffer, low: number, carried: number): number {
  let run = 0;
  let k = chunk.length - 1;
  while (k >= low && chunk[k] === BACKSLASH) {
    run++;
    k--;
  }
  return k < low ? carried + run : run;
}
