/**
 * OpenCode identifiers (pure, no I/O).
 *
 * An OpenCode 1.x id is a prefix (`ses_`, `msg_`, `prt_`, `evt_`, ...) followed by 12 lowercase hex
 * digits and 14 base62 characters. The hex digits are the low 48 bits of
 * `ms * 0x1000 + counter`, so only the low 36 bits of the millisecond clock survive: that field
 * wrapped on 2026-08-14 (`ID_WRAP_MS`). Session ids are "descending" (the 48-bit value is bitwise
 * NOT-ed), message and part ids ascending. Consequence: string order of ids is not time order
 * across the wrap; order by time columns and use the id only as a tie-breaker.
 */

/** Bits of `ms * 0x1000 + counter` that an id keeps. */
export const ID_TIME_BITS = 48;
/** Bits of the millisecond clock that survive in an id (48 - 12 counter bits). */
export const ID_MS_BITS = 36;
/** Epoch ms at which the id's millisecond field last wrapped to zero: 26 * 2**36 = 2026-08-14T... UTC. */
export const ID_WRAP_MS = 1786706395136;
/** Number of hex digits after the prefix. */
export const ID_HEX_LENGTH = 12;
/** Number of random base62 characters after the hex digits. */
export const ID_RANDOM_LENGTH = 14;

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const MASK48 = (1n << 48n) - 1n;

/** Matches any OpenCode id with the given prefix (`ses_`, `msg_`, ...; default any lowercase prefix). */
export function openCodeIdPattern(prefix?: string): RegExp {
  const p = prefix === undefined ? '[a-z]+_' : prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${p}[0-9a-f]{${ID_HEX_LENGTH}}[0-9A-Za-z]{${ID_RANDOM_LENGTH}}$`);
}

/**
 * Builds an OpenCode id exactly as OpenCode's `Identifier.create` does, with the clock, the
 * per-millisecond counter and the random source supplied by the caller.
 *
 * @param prefix     e.g. `ses_` (a trailing `_` is added when missing)
 * @param ms         epoch milliseconds
 * @param counter    per-millisecond counter (OpenCode starts it at 1 for each new ms); 0..4095
 * @param random     uniform source in [0, 1) for the 14 base62 characters
 * @param descending true for session ids (bitwise NOT of the 48-bit value)
 */
export function openCodeId(
  prefix: string,
  ms: number,
  counter: number,
  random: () => number,
  descending: boolean,
): string {
  if (!Number.isSafeInteger(ms) || ms < 0) throw new RangeError(`openCodeId: bad ms ${ms}`);
  if (!Number.isInteger(counter) || counter < 0) throw new RangeError(`openCodeId: bad counter ${counter}`);
  let value = (BigInt(ms) * 0x1000n + BigInt(counter)) & MASK48;
  if (descending) value = ~value & MASK48;
  const hex = value.toString(16).padStart(ID_HEX_LENGTH, '0');
  let tail = '';
  for (let i = 0; i < ID_RANDOM_LENGTH; i++) {
    const r = random();
    tail += BASE62[Math.min(61, Math.max(0, Math.floor(r * 62)))];
  }
  const p = prefix.endsWith('_') ? prefix : `${prefix}_`;
  return p + hex + tail;
}

/**
 * The 48-bit time value an id carries (after undoing the NOT of descending ids), or undefined
 * when the string is not an OpenCode id. Note it holds only the low 36 bits of the ms clock.
 */
export function openCodeIdTimeField(id: string, descending: boolean): bigint | undefined {
  const m = /^[a-z]+_([0-9a-f]{12})[0-9A-Za-z]{14}$/.exec(id);
  if (m === null || m[1] === undefined) return undefined;
  let value = BigInt(`0x${m[1]}`);
  if (descending) value = ~value & MASK48;
  return value;
}

/**
 * Candidate epoch ms for an id's time field: the latest `ms <= notAfter` whose low 36 bits match
 * (ids cannot say in which 2**36 ms (~795 days) era they were made).
 */
export function openCodeIdMs(id: string, descending: boolean, notAfter: number): number | undefined {
  const value = openCodeIdTimeField(id, descending);
  if (value === undefined) return undefined;
  const low = Number(value >> 12n);
  const era = 2 ** ID_MS_BITS;
  let ms = Math.floor(notAfter / era) * era + low;
  if (ms > notAfter) ms -= era;
  return ms;
}
