/**
 * How a copy on a server is verified without bringing bodies back: each stored row becomes one
 * line (ids, times, the body's length and sha256, its attachment list), and a session's digest
 * is the sha256 of its lines sorted. The server supplies body hashes itself, so nothing large
 * crosses the network to check a copy, and row order does not matter.
 */
import { createHash, hash } from 'node:crypto';

export interface SessionCheck {
  id: string;
  messages: number;
  parts: number;
  digest: string;
}

export function rowLine(kind: 'm' | 'p', id: string, created: number, updated: number, bodyBytes: number, bodySha: string, spans: string | null): string {
  return `${kind}\0${id}\0${created}\0${updated}\0${bodyBytes}\0${bodySha}\0${spans ?? ''}`;
}

/** A stored row of another table: where it stands (table, order), its body's length and sha256, its attachments. */
export function tableRowLine(table: string, ord: number, bodyBytes: number, bodySha: string, spans: string | null): string {
  return `r\0${table}\0${ord}\0${bodyBytes}\0${bodySha}\0${spans ?? ''}`;
}

export function sessionDigest(lines: string[]): string {
  const hash = createHash('sha256');
  lines.sort();
  // The same bytes as one update per line, a thousand lines per string: one UTF-8 encoding per group, not per line.
  for (let at = 0; at < lines.length; at += DIGEST_GROUP) hash.update(`${lines.slice(at, at + DIGEST_GROUP).join('\n')}\n`);
  return hash.digest('hex');
}

const DIGEST_GROUP = 1000;

// One-shot: no Hash object per row (a copy hashes every body it sends).
export const sha256Hex = (body: Buffer): string => hash('sha256', body, 'hex');
