/**
 * Serving a cached attachment over HTTP-like interfaces: Electron's `protocol.handle` and web
 * mode share this. Only files inside the attachment cache are served (AttachmentCache.resolveInside
 * refuses `..`, absolute paths and symlinks leading out); a Range header gets 206 with those bytes.
 * The body is a file stream: an attachment is never read into memory whole.
 */
import { createReadStream, statSync, type ReadStream } from 'node:fs';
import { isAbsolute } from 'node:path';
import { AttachmentCache } from '../store/attachment-cache.js';

/** Types a page may render inline; anything else is served as a download. */
const INLINE_TYPES: ReadonlySet<string> = new Set([
  'image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/avif', 'image/bmp', 'application/pdf', 'text/plain',
]);

export interface AttachmentHttpResponse {
  status: 200 | 206 | 400 | 403 | 404 | 405 | 416;
  headers: Record<string, string>;
  /** The byte range to stream (inclusive end), when there is a body. */
  file?: { path: string; start: number; end: number };
  /** A short plain-text body for errors. */
  message?: string;
}

function refuse(status: AttachmentHttpResponse['status'], message: string): AttachmentHttpResponse {
  return { status, headers: { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' }, message };
}

/**
 * `bytes=a-b`, `bytes=a-`, `bytes=-n` (one range; several ranges are answered with the first).
 * Returns null for a header to ignore (serve the whole file), 'unsatisfiable' for 416.
 */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null | 'unsatisfiable' {
  if (!header) return null;
  const match = /^bytes=\s*(\d*)\s*-\s*(\d*)\s*(?:,.*)?$/i.exec(header.trim());
  if (!match) return null;
  const [, a = '', b = ''] = match;
  if (a === '' && b === '') return null;
  if (a === '') {
    const suffix = Number(b);
    if (suffix === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(a);
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  if (!Number.isSafeInteger(start) || start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

/**
 * Decides the answer for `relPath` (the URL path below the attachment route, still
 * percent-encoded) without opening the file: status, headers, and the range to stream.
 */
export function resolveAttachmentRequest(
  cacheDir: string,
  relPath: string,
  options: { method?: string; range?: string | undefined; mime?: string | null | undefined } = {},
): AttachmentHttpResponse {
  const method = (options.method ?? 'GET').toUpperCase();
  if (method !== 'GET' && method !== 'HEAD') return { ...refuse(405, 'method not allowed'), headers: { allow: 'GET, HEAD' } };
  let decoded: string;
  try {
    decoded = decodeURIComponent(relPath);
  } catch {
    return refuse(400, 'bad path');
  }
  if (decoded === '' || decoded.includes('\0')) return refuse(400, 'bad path');
  // Lexically outside: refused before the file system is asked anything.
  if (isAbsolute(decoded) || /^[a-zA-Z]:/.test(decoded) || decoded.split(/[\\/]/).includes('..')) return refuse(403, 'outside the attachment cache');
  const real = new AttachmentCache(cacheDir).resolveInside(decoded);
  if (!real) {
    // Exists but resolves outside (a symlink out) is 403; not there at all is 404.
    try {
      statSync(`${cacheDir}/${decoded}`);
      return refuse(403, 'outside the attachment cache');
    } catch {
      return refuse(404, 'no such attachment');
    }
  }
  let size: number;
  try {
    const stat = statSync(real);
    if (!stat.isFile()) return refuse(404, 'no such attachment');
    size = stat.size;
  } catch {
    return refuse(404, 'no such attachment');
  }
  const mime = options.mime && INLINE_TYPES.has(options.mime.toLowerCase()) ? options.mime.toLowerCase() : 'application/octet-stream';
  const headers: Record<string, string> = {
    'content-type': mime,
    'accept-ranges': 'bytes',
    'x-content-type-options': 'nosniff',
    // Attachment bytes come from model output and users' files: never script in our origin.
    'content-security-policy': "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox",
    'cache-control': 'private, max-age=3600',
  };
  if (mime === 'application/octet-stream') headers['content-disposition'] = 'attachment';
  const range = parseRange(options.range, size);
  if (range === 'unsatisfiable') {
    return { status: 416, headers: { ...headers, 'content-range': `bytes */${size}`, 'content-type': 'text/plain; charset=utf-8' }, message: 'range not satisfiable' };
  }
  if (range) {
    return {
      status: 206,
      headers: { ...headers, 'content-range': `bytes ${range.start}-${range.end}/${size}`, 'content-length': String(range.end - range.start + 1) },
      file: method === 'HEAD' ? undefined : { path: real, ...range },
    } as AttachmentHttpResponse;
  }
  const response: AttachmentHttpResponse = { status: 200, headers: { ...headers, 'content-length': String(size) } };
  if (method !== 'HEAD' && size > 0) response.file = { path: real, start: 0, end: size - 1 };
  return response;
}

/** The body as a Node stream (web mode), or null. */
export function attachmentStream(response: AttachmentHttpResponse): ReadStream | null {
  return response.file ? createReadStream(response.file.path, { start: response.file.start, end: response.file.end, highWaterMark: 256 * 1024 }) : null;
}
