/**
 * Byte-level reading of `part.data` JSON held in a Buffer (outside the V8 heap).
 *
 * The payloads that crash OpenCode Desktop are base64 `data:` URLs inside the part JSON. We find
 * every JSON string by its quotes (native `indexOf`, no tokenizer in JS), cut the attachments and
 * oversized strings out, and only then parse what is left: the parsed value is small whatever the
 * part's size. The spans found here are what attachment extraction streams from.
 */
import { SkError } from './errors.js';
import { BACKSLASH, QUOTE } from './json-string-end.js';

const COLON = 0x3a;
const DATA_PREFIX = Buffer.from('data:');

/** A `data:` URL found in a part, by byte offsets into the part's JSON text. */
export interface AttachmentSpan {
  /** Position among the part's attachments, in document order. */
  index: number;
  /** Offsets of the URL inside the JSON string (quotes excluded). */
  start: number;
  end: number;
  /** Offset of the first payload byte (just past the comma). */
  payloadStart: number;
  mime: string;
  base64: boolean;
  /** Decoded size: exact for well-formed base64, the raw length otherwise. */
  decodedBytes: number;
}

/** What the UI receives in place of a `data:` URL. */
export interface AttachmentRef {
  ref: string;
  mime: string;
  filename: string | null;
  bytes: number;
}

export interface ScanOptions {
  partId: string;
  /** Strings longer than this many bytes (that are not attachments) are cut to a preview. */
  maxInlineString: number;
  /** Bytes kept of a cut string. */
  previewBytes?: number;
}

export interface ScannedPart {
  attachments: AttachmentSpan[];
  /** The part JSON with attachments as references and long strings cut: small, safe to hold. */
  value: unknown;
  /** Number of strings cut to a preview. */
  truncatedStrings: number;
  /** Bytes of the part's JSON kept as they were (all of it when nothing was cut). */
  keptBytes: number;
}

/** The reference name of a part's attachment: the part id for the first, `id.N` after. */
export function attachmentRefName(partId: string, index: number): string {
  return index === 0 ? partId : `${partId}.${index}`;
}

/** Parses `prt_x` or `prt_x.N` back into a part id and attachment index. */
export function parseAttachmentRef(ref: string): { partId: string; index: number } {
  const match = /^([A-Za-z0-9_-]{1,128})(?:\.(\d{1,6}))?$/.exec(ref);
  if (!match?.[1]) throw new SkError('usage', `not an attachment reference: ${JSON.stringify(ref.slice(0, 80))}`);
  return { partId: match[1], index: match[2] === undefined ? 0 : Number(match[2]) };
}

/** Index of the closing quote of the JSON string whose first content byte is at `from`. */
function stringEnd(buf: Uint8Array, from: number, partId: string): number {
  let at = from;
  for (;;) {
    const quote = buf.indexOf(QUOTE, at);
    if (quote < 0) throw new SkError('bad-part', `part ${partId}: malformed JSON (unterminated string)`);
    let backslashes = 0;
    for (let i = quote - 1; i >= from && buf[i] === BACKSLASH; i--) backslashes++;
    if (backslashes % 2 === 0) return quote;
    at = quote + 1;
  }
}

function isKey(buf: Uint8Array, closingQuote: number): boolean {
  for (let i = closingQuote + 1; i < buf.length; i++) {
    const byte = buf[i];
    if (byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09) continue;
    return byte === COLON;
  }
  return false;
}

function startsWith(buf: Buffer, at: number, prefix: Buffer): boolean {
  return buf.length - at >= prefix.length && buf.compare(prefix, 0, prefix.length, at, at + prefix.length) === 0;
}

/** Reads a data URL's header (`data:<mime>[;param][;base64],`) and sizes its payload. */
export function describeDataUrl(buf: Buffer, start: number, end: number, index: number): AttachmentSpan {
  const headerWindow = buf.subarray(start, Math.min(end, start + 1024));
  const comma = headerWindow.indexOf(0x2c);
  if (comma < 0) {
    return { index, start, end, payloadStart: end, mime: 'application/octet-stream', base64: false, decodedBytes: 0 };
  }
  const header = headerWindow.subarray(5, comma).toString('latin1');
  const params = header.split(';');
  const base64 = params.slice(1).some((p) => p.trim().toLowerCase() === 'base64');
  const mime = (params[0] ?? '').trim().toLowerCase() || 'text/plain';
  const payloadStart = start + comma + 1;
  const length = end - payloadStart;
  let decodedBytes = length;
  if (base64) {
    let padding = 0;
    if (length > 0 && buf[end - 1] === 0x3d) padding++;
    if (length > 1 && buf[end - 2] === 0x3d) padding++;
    decodedBytes = length % 4 === 0 ? (length / 4) * 3 - padding : Math.floor((length * 3) / 4);
  }
  return { index, start, end, payloadStart, mime, base64, decodedBytes };
}

/** JSON string content cut to at most `bytes`, decoded, never splitting an escape. */
function previewOf(buf: Buffer, start: number, end: number, bytes: number): string {
  let cut = Math.min(end, start + bytes);
  for (let attempt = 0; attempt < 8 && cut > start; attempt++, cut--) {
    try {
      return JSON.parse(`"${buf.subarray(start, cut).toString('utf8')}"`) as string;
    } catch {
      // cut landed inside an escape sequence: step back a byte
    }
  }
  return '';
}

/** Every JSON string that is a value (not a key), as [opening quote, closing quote] offsets. */
function* valueStrings(buf: Buffer, partId: string): Generator<[number, number]> {
  let at = 0;
  for (;;) {
    const open = buf.indexOf(QUOTE, at);
    if (open < 0) return;
    const close = stringEnd(buf, open + 1, partId);
    at = close + 1;
    if (!isKey(buf, close)) yield [open, close];
  }
}

/** The part's `data:` URLs, without parsing anything else: for sizing and extraction. */
export function findAttachments(buf: Buffer, partId: string): AttachmentSpan[] {
  const spans: AttachmentSpan[] = [];
  if (buf.indexOf(DATA_PREFIX) < 0) return spans;
  for (const [open, close] of valueStrings(buf, partId)) {
    if (startsWith(buf, open + 1, DATA_PREFIX)) spans.push(describeDataUrl(buf, open + 1, close, spans.length));
  }
  return spans;
}

/** A string cut out of a part's JSON: an attachment (by its span), or a long text (by its preview). */
export type PartCut = { kind: 'attachment'; span: AttachmentSpan } | { kind: 'text'; preview: string; length: number };

/**
 * A part's JSON with some value strings cut out: the bytes kept, as `pieces` with one cut (quotes
 * included) between each two, so `pieces.length === cuts.length + 1`. What `assembleScan` parses.
 */
export interface ReducedPart {
  pieces: Buffer[];
  cuts: PartCut[];
}

/** The text a cut string shows in a page: its preview and how long it was. */
export function cutText(preview: string, length: number): string {
  return `${preview}\n…[session-keeper: cut, ${length} bytes in all]`;
}

/**
 * Finds the part's attachments and oversized strings, and parses the rest.
 * Throws SkError('bad-part') for JSON that is not an object.
 */
export function scanPartData(buf: Buffer, options: ScanOptions): ScannedPart {
  const { partId, maxInlineString } = options;
  const previewBytes = options.previewBytes ?? 4096;
  const cuts: PartCut[] = [];
  const pieces: Buffer[] = [];
  let last = 0;
  let attachments = 0;

  const quickPath = buf.length <= maxInlineString && buf.indexOf(DATA_PREFIX) < 0;
  if (!quickPath) {
    for (const [open, close] of valueStrings(buf, partId)) {
      const length = close - open - 1;
      const isDataUrl = startsWith(buf, open + 1, DATA_PREFIX);
      if (!isDataUrl && length <= maxInlineString) continue;
      cuts.push(
        isDataUrl
          ? { kind: 'attachment', span: describeDataUrl(buf, open + 1, close, attachments++) }
          : { kind: 'text', preview: previewOf(buf, open + 1, close, previewBytes), length },
      );
      pieces.push(buf.subarray(last, open));
      last = close + 1;
    }
  }
  pieces.push(buf.subarray(last));
  return assembleScan({ pieces, cuts }, partId);
}

/**
 * Parses a reduced part and puts references and previews where its cuts were: the one place that
 * turns kept bytes into a page's value, whether they came from a whole buffer or in chunks.
 */
export function assembleScan(reduced: ReducedPart, partId: string): ScannedPart {
  const { pieces, cuts } = reduced;
  // A NUL cannot appear in a real OpenCode string unescaped-decoded like this, so the marker cannot
  // collide; its length is fixed, so an error's JSON position does not depend on the draw.
  const marker = `\u0000sk${Math.floor(Math.random() * 36 ** 8).toString(36).padStart(8, '0')}:`;
  const replacements = new Map<string, { kind: 'attachment'; span: AttachmentSpan } | { kind: 'text'; text: string }>();
  const keptBytes = pieces.reduce((sum, piece) => sum + piece.length, 0);
  let text: string;
  if (cuts.length === 0) {
    text = pieces.length === 1 ? (pieces[0] as Buffer).toString('utf8') : Buffer.concat(pieces).toString('utf8');
  } else {
    const joined: Buffer[] = [];
    cuts.forEach((cut, i) => {
      const placeholder = `${marker}${i}`;
      replacements.set(placeholder, cut.kind === 'attachment' ? cut : { kind: 'text', text: cutText(cut.preview, cut.length) });
      joined.push(pieces[i] as Buffer, Buffer.from(JSON.stringify(placeholder)));
    });
    joined.push(pieces[cuts.length] as Buffer);
    text = Buffer.concat(joined).toString('utf8');
  }
  const attachments = cuts.flatMap((cut) => (cut.kind === 'attachment' ? [cut.span] : []));

  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new SkError('bad-part', `part ${partId}: malformed JSON (${(error as Error).message.split('\n')[0]})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new SkError('bad-part', `part ${partId}: part data is not a JSON object`);
  }

  let truncatedStrings = 0;
  const restore = (node: unknown): unknown => {
    if (typeof node === 'string') {
      const hit = node.startsWith(marker) ? replacements.get(node) : undefined;
      if (!hit) return node;
      if (hit.kind === 'text') {
        truncatedStrings++;
        return hit.text;
      }
      return { ref: attachmentRefName(partId, hit.span.index), mime: hit.span.mime, filename: null, bytes: hit.span.decodedBytes };
    }
    if (Array.isArray(node)) return node.map(restore);
    if (node && typeof node === 'object') {
      const out: Record<string, unknown> = {};
      const record = node as Record<string, unknown>;
      for (const [key, value] of Object.entries(record)) {
        const restored = restore(value);
        const hit = typeof value === 'string' ? replacements.get(value) : undefined;
        if (hit?.kind === 'attachment') {
          const ref = restored as AttachmentRef;
          const filename = record['filename'];
          ref.filename = typeof filename === 'string' ? filename : null;
          if (typeof record['mime'] === 'string' && ref.mime === 'application/octet-stream') ref.mime = record['mime'];
          // OpenCode's file parts keep the URL in `url`; the view names the reference `attachment`.
          if (key === 'url') out['attachment'] = ref;
          else out[key] = { attachment: ref };
          continue;
        }
        out[key] = restored;
      }
      return out;
    }
    return node;
  };
  const value = cuts.length === 0 ? parsed : restore(parsed);
  return { attachments, value, truncatedStrings, keptBytes };
}

/** The reference object named `ref` inside a reduced part value, if there is one. */
export function findAttachmentRef(node: unknown, ref: string): AttachmentRef | undefined {
  if (Array.isArray(node)) {
    for (const item of node) {
      const hit = findAttachmentRef(item, ref);
      if (hit) return hit;
    }
  } else if (node && typeof node === 'object') {
    const record = node as Record<string, unknown>;
    if (record['ref'] === ref && typeof record['mime'] === 'string') return record as unknown as AttachmentRef;
    for (const value of Object.values(record)) {
      const hit = findAttachmentRef(value, ref);
      if (hit) return hit;
    }
  }
  return undefined;
}

/** The filename OpenCode gave attachment `ref` of this part, or null (unnamed, or a part that does not parse). */
export function attachmentFilename(buf: Buffer, partId: string, ref: string): string | null {
  try {
    const scanned = scanPartData(buf, { partId, maxInlineString: Number.MAX_SAFE_INTEGER });
    return findAttachmentRef(scanned.value, ref)?.filename ?? null;
  } catch {
    // the attachment itself is intact; only its name is unknown
    return null;
  }
}
