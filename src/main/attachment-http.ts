/**
 * Serving a cached attachment over HTTP-like interfaces: Electron's `protocol.handle` and web
 * mode share this. The bytes come from the utility process, read from the FileHandle its worker
 * decoded into (see attachment-streams.ts); shells only relay them. A URL names content
 * (`<sha256[0:2]>/<sha256>`); `..`, absolute paths and anything else are refused, and a cache file
 * the utility has to open by name must resolve inside the cache (AttachmentCache.openEntry). A Range
 * header gets 206 with those bytes. An attachment is never read into memory whole.
 */
import { statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { AttachmentCache } from '../store/attachment-cache.js';
import type { UtilityClient } from './client.js';

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

/** The answer's status, headers and byte range (inclusive end) for a file of `size` bytes. */
export interface AttachmentAnswer {
  status: AttachmentHttpResponse['status'];
  headers: Record<string, string>;
  /** The bytes to send, when there is a body. */
  body?: { start: number; end: number };
  message?: string;
}

export interface AttachmentRequestOptions {
  method?: string | undefined;
  range?: string | undefined;
  mime?: string | null | undefined;
}

/**
 * Lexical checks of the URL path below the attachment route, before the file system is asked
 * anything: a refusal, or the path decoded.
 */
function checkPath(relPath: string, method: string): AttachmentHttpResponse | { decoded: string } {
  if (method !== 'GET' && method !== 'HEAD') return { ...refuse(405, 'method not allowed'), headers: { allow: 'GET, HEAD' } };
  let decoded: string;
  try {
    decoded = decodeURIComponent(relPath);
  } catch {
    return refuse(400, 'bad path');
  }
  if (decoded === '' || decoded.includes('\0')) return refuse(400, 'bad path');
  if (isAbsolute(decoded) || /^[a-zA-Z]:/.test(decoded) || decoded.split(/[\\/]/).includes('..')) return refuse(403, 'outside the attachment cache');
  return { decoded };
}

/**
 * The content an attachment URL names (`<sha256[0:2]>/<sha256>`, as the attachment reply's
 * `relPath` gives it), or the refusal for a path that names none (405, 400, 403 or 404).
 */
export function contentAddress(relPath: string, method = 'GET'): { sha256: string } | AttachmentHttpResponse {
  const checked = checkPath(relPath, method.toUpperCase());
  if (!('decoded' in checked)) return checked;
  const match = /^([0-9a-f]{2})\/([0-9a-f]{64})$/.exec(checked.decoded);
  if (!match || !(match[2] as string).startsWith(match[1] as string)) return refuse(404, 'no such attachment');
  return { sha256: match[2] as string };
}

/** Status, headers and range for serving a file of `size` bytes: Range answered, unsafe types downloaded. */
export function attachmentAnswer(size: number, options: AttachmentRequestOptions = {}): AttachmentAnswer {
  const method = (options.method ?? 'GET').toUpperCase();
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
    const answer: AttachmentAnswer = {
      status: 206,
      headers: { ...headers, 'content-range': `bytes ${range.start}-${range.end}/${size}`, 'content-length': String(range.end - range.start + 1) },
    };
    if (method !== 'HEAD') answer.body = range;
    return answer;
  }
  const answer: AttachmentAnswer = { status: 200, headers: { ...headers, 'content-length': String(size) } };
  if (method !== 'HEAD' && size > 0) answer.body = { start: 0, end: size - 1 };
  return answer;
}

/**
 * Decides the answer for `relPath` (the URL path below the attachment route, still
 * percent-encoded) without opening the file: status, headers, and the range to stream. The
 * utility asks it why a path it could not open is refused (403 for one leading out, 404).
 */
export function resolveAttachmentRequest(cacheDir: string, relPath: string, options: AttachmentRequestOptions = {}): AttachmentHttpResponse {
  const checked = checkPath(relPath, (options.method ?? 'GET').toUpperCase());
  if (!('decoded' in checked)) return checked;
  const { decoded } = checked;
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
  const { body, ...answer } = attachmentAnswer(size, options);
  return body ? { ...answer, file: { path: real, ...body } } : answer;
}

/**
 * Electron's `protocol.handle` answer for an attachment URL, from the utility process: the main
 * process never opens the cache. The body is a ReadableStream of the chunks the utility streams
 * from the handle it holds, asked for one at a time as the reader pulls; cancelling the body ends
 * the stream there. Runs under Node too (web `Request`/`Response`), which is how it is tested.
 */
export async function attachmentResponse(client: UtilityClient, request: Request): Promise<Response> {
  const url = new URL(request.url);
  const stream = await client.openAttachmentStream({
    relPath: url.pathname.replace(/^\/+/, ''),
    method: request.method,
    range: request.headers.get('range') ?? undefined,
    mime: url.searchParams.get('mime'),
  });
  const chunks = stream.body?.[Symbol.asyncIterator]();
  const body = chunks
    ? new ReadableStream<Uint8Array>(
        {
          async pull(controller) {
            try {
              const next = await chunks.next();
              if (next.done) controller.close();
              else controller.enqueue(next.value);
            } catch (error) {
              controller.error(error);
            }
          },
          cancel() {
            stream.cancel();
          },
        },
        // One chunk ahead here; the stream's own window bounds what is in flight from the utility.
        { highWaterMark: 1 },
      )
    : (stream.message ?? null);
  return new Response(body, { status: stream.status, headers: stream.headers });
}
