import { describe, expect, it } from 'vitest';
import {
  ID_WRAP_MS,
  openCodeId,
  openCodeIdMs,
  openCodeIdPattern,
  openCodeIdTimeField,
} from '../fixtures/ids.ts';

/** Tiny deterministic source for the random tail. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const MINUTE = 60_000;
const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

describe('openCodeId', () => {
  it('has the OpenCode shape', () => {
    const r = lcg(1);
    for (const prefix of ['ses_', 'msg_', 'prt_', 'evt_', 'ses']) {
      for (const descending of [false, true]) {
        const id = openCodeId(prefix, Date.UTC(2026, 5, 1), 1, r, descending);
        const p = prefix.endsWith('_') ? prefix : `${prefix}_`;
        expect(id).toMatch(/^[a-z]+_[0-9a-f]{12}[0-9A-Za-z]{14}$/);
        expect(id).toMatch(openCodeIdPattern(p));
        expect(id.length).toBe(p.length + 26);
      }
    }
  });

  it('random tail comes only from the supplied source', () => {
    const a = openCodeId('prt_', 1_700_000_000_000, 3, lcg(7), false);
    const b = openCodeId('prt_', 1_700_000_000_000, 3, lcg(7), false);
    const c = openCodeId('prt_', 1_700_000_000_000, 3, lcg(8), false);
    expect(a).toBe(b);
    expect(a.slice(0, 16)).toBe(c.slice(0, 16));
    expect(a).not.toBe(c);
    expect(openCodeId('x_', 0, 0, () => 0, false)).toBe('x_000000000000' + '0'.repeat(14));
    expect(openCodeId('x_', 0, 0, () => 0.9999999, false).slice(-14)).toBe('z'.repeat(14));
  });

  it('encodes ms * 0x1000 + counter in 48 bits, NOT-ed for descending ids', () => {
    const ms = Date.UTC(2026, 0, 2, 3, 4, 5, 6);
    const id = openCodeId('msg_', ms, 5, lcg(1), false);
    const expected = ((BigInt(ms) * 0x1000n + 5n) & ((1n << 48n) - 1n)).toString(16).padStart(12, '0');
    expect(id.slice(4, 16)).toBe(expected);
    const sid = openCodeId('ses_', ms, 5, lcg(1), true);
    const nhex = sid.slice(4, 16);
    expect(BigInt(`0x${nhex}`) + BigInt(`0x${expected}`)).toBe((1n << 48n) - 1n);
    expect(openCodeIdTimeField(id, false)).toBe(openCodeIdTimeField(sid, true));
    expect(openCodeIdMs(id, false, ms + 1000)).toBe(ms);
    expect(openCodeIdMs(sid, true, ms)).toBe(ms);
    expect(openCodeIdTimeField('nope', false)).toBeUndefined();
  });

  it('ascending ids sort by time, descending ids in reverse (before the wrap)', () => {
    const r = lcg(3);
    const t0 = Date.UTC(2026, 3, 1);
    const asc = [0, 1, 2, 3].map((i) => openCodeId('msg_', t0 + i * MINUTE, 1, r, false));
    const desc = [0, 1, 2, 3].map((i) => openCodeId('ses_', t0 + i * MINUTE, 1, r, true));
    expect([...asc].sort(cmp)).toEqual(asc);
    expect([...desc].sort(cmp)).toEqual([...desc].reverse());
    // The counter orders ids within one millisecond.
    const a = openCodeId('prt_', t0, 1, r, false);
    const b = openCodeId('prt_', t0, 2, r, false);
    expect(cmp(a, b)).toBe(-1);
  });

  it('the ms field wraps on 2026-08-14', () => {
    expect(ID_WRAP_MS).toBe(26 * 2 ** 36);
    expect(new Date(ID_WRAP_MS).toISOString().slice(0, 10)).toBe('2026-08-14');
    expect(openCodeId('msg_', ID_WRAP_MS, 0, () => 0, false).slice(4, 16)).toBe('000000000000');
    expect(openCodeId('msg_', ID_WRAP_MS - 1, 4095, () => 0, false).slice(4, 16)).toBe('ffffffffffff');
  });

  it('session ids straddling the wrap sort opposite to pre-wrap pairs', () => {
    const r = lcg(9);
    // Two sessions one minute apart, both before the wrap: newer sorts first (descending ids).
    const preOld = openCodeId('ses_', ID_WRAP_MS - 10 * MINUTE, 1, r, true);
    const preNew = openCodeId('ses_', ID_WRAP_MS - 9 * MINUTE, 1, r, true);
    expect(cmp(preNew, preOld)).toBe(-1);
    // Two sessions one minute apart across the wrap: the newer one now sorts LAST.
    const oldS = openCodeId('ses_', ID_WRAP_MS - 30_000, 1, r, true);
    const newS = openCodeId('ses_', ID_WRAP_MS + 30_000, 1, r, true);
    expect(cmp(newS, oldS)).toBe(1);
    // And after the wrap, pairs sort newest-first again.
    const postOld = openCodeId('ses_', ID_WRAP_MS + 9 * MINUTE, 1, r, true);
    const postNew = openCodeId('ses_', ID_WRAP_MS + 10 * MINUTE, 1, r, true);
    expect(cmp(postNew, postOld)).toBe(-1);
  });

  it('message ids straddling the wrap sort opposite to time order', () => {
    const r = lcg(11);
    const before = openCodeId('msg_', ID_WRAP_MS - 30_000, 1, r, false);
    const after = openCodeId('msg_', ID_WRAP_MS + 30_000, 1, r, false);
    expect(cmp(before, after)).toBe(1);
    const pre1 = openCodeId('msg_', ID_WRAP_MS - 2 * MINUTE, 1, r, false);
    const pre2 = openCodeId('msg_', ID_WRAP_MS - MINUTE, 1, r, false);
    expect(cmp(pre1, pre2)).toBe(-1);
    // ORDER BY id of a session list spanning the wrap differs from time order.
    const times = [-3, -2, -1, 1, 2, 3].map((d) => ID_WRAP_MS + d * MINUTE);
    const ids = times.map((t) => openCodeId('ses_', t, 1, r, true));
    const byId = [...ids].sort(cmp);
    const byTimeDesc = [...ids].reverse();
    expect(byId).not.toEqual(byTimeDesc);
    // Pre-wrap sessions (newest first), then post-wrap sessions (newest first).
    expect(byId).toEqual([ids[2], ids[1], ids[0], ids[5], ids[4], ids[3]]);
  });

  it('rejects bad input', () => {
    expect(() => openCodeId('ses_', -1, 0, () => 0, true)).toThrow(RangeError);
    expect(() => openCodeId('ses_', 1.5, 0, () => 0, true)).toThrow(RangeError);
  });
});
