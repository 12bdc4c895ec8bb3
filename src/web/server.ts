/**
 * Web mode: the renderer and the same typed API over HTTP, on 127.0.0.1 only, for people who run
 * OpenCode without the desktop app (and for the browser tests). The utility process is forked
 * exactly as Electron's main does it, so the web mode has the same memory rules and restarts.
 *
 * Who may do what. The Host header must be the address we listen on (no DNS rebinding). Reading
 * (`GET` of the page, its files and attachments) needs the random token: `?token=` (the printed
 * URL), the `x-session-keeper-token` header, or the cookie set when the page was opened with a
 * valid token. Acting (`POST /api`) needs the token in the header, an `Origin` equal to our own
 * and a JSON body: the cookie alone never acts, since SameSite does not separate two ports of
 * 127.0.0.1 and another local page's request would carry it. The page learns the token from its
 * URL, or from `GET /api/token` (cookie and same origin).
 *
 *   GET  /                      the renderer (dist/renderer)
 *   POST /api                   {method, params} -> reply envelope (src/core/utility-protocol.ts)
 *   GET  /api/token             {token}, for a page opened by its cookie (same origin only)
 *   GET  /api/events            server-sent events: progress, warnings, startup, restarts (token
 *                               in the header or `?token=`: EventSource sends no headers)
 *   GET  /attachment/<path>     an attachment by content (`<sha256[0:2]>/<sha256>`), Range supported:
 *                               streamed from the utility process, which reads it from the file
 *                               handle it holds; this process never opens the cache
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { SkError } from '../core/errors.js';
import type { ProtocolEvent, Reply } from '../core/utility-protocol.js';
import { nodeSpawner, UtilityClient, type ClientOptions } from '../main/client.js';
import { packagePath } from '../store/package-files.js';

export interface WebServerOptions {
  db: string;
  cacheDir: string;
  configPath?: string | undefined;
  statePath?: string | undefined;
  /** 0 (default) picks a free port. */
  port?: number;
  /** Fixed token (tests); default 32 random bytes. */
  token?: string;
  /** The built renderer; default dist/renderer beside this build. */
  rendererDir?: string;
  /** Extra node flags for the utility process (e.g. a heap limit). */
  execArgv?: string[];
  env?: NodeJS.ProcessEnv;
  client?: ClientOptions;
}

export interface WebServer {
  url: string;
  port: number;
  token: string;
  client: UtilityClient;
  server: Server;
  close(): Promise<void>;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
};
const MAX_BODY = 256 * 1024;
const COOKIE = 'sk_token';

export const DEFAULT_RENDERER_DIR = packagePath('dist', 'renderer');

function sameToken(given: string | undefined, token: string): boolean {
  if (!given) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

function cookieToken(req: IncomingMessage): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [name, ...rest] = part.trim().split('=');
    if (name === COOKIE) return rest.join('=');
  }
  return undefined;
}

function send(res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8', headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...headers });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, JSON.stringify(value), 'application/json; charset=utf-8');
}

/** The body, or null once it passes MAX_BODY: the rest is read and dropped so the 413 reaches the client. */
function readBody(req: IncomingMessage): Promise<string | null> {
  return new Promise((resolveBody, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      if (over) return;
      length += chunk.length;
      if (length > MAX_BODY) {
        over = true;
        chunks.length = 0;
        resolveBody(null);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!over) resolveBody(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', (error) => {
      if (!over) reject(error);
    });
  });
}

/** Answers 413 at once and closes the connection after it; a client still sending is cut off after a grace period. */
function tooLarge(req: IncomingMessage, res: ServerResponse): void {
  res.shouldKeepAlive = false;
  sendJson(res, 413, { type: 'reply', id: null, ok: false, error: { code: 'bad-request', message: `request too large (at most ${MAX_BODY / 1024} KiB)` } });
  req.resume();
  const cut = setTimeout(() => req.destroy(), 10_000);
  cut.unref();
  req.once('end', () => clearTimeout(cut));
  req.once('close', () => clearTimeout(cut));
}

/** An `application/json` media type, with or without parameters. */
function isJson(contentType: string | undefined): boolean {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase() === 'application/json';
}

/** Resolves when `res` can take more, or is gone (then the next write is dropped and the stream cancelled). */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolveDrained) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolveDrained();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** HTTP status for a reply: the envelope is the body either way. */
function statusOf(reply: Reply): number {
  if (reply.ok) return 200;
  switch (reply.error.code) {
    case 'bad-request':
    case 'usage':
    case 'config':
      return 400;
    case 'not-found':
      return 404;
    case 'busy':
    case 'stale-plan':
      return 409;
    case 'unavailable':
      return 503;
    default:
      return 500;
  }
}

export async function startWebServer(options: WebServerOptions): Promise<WebServer> {
  const token = options.token ?? randomBytes(24).toString('base64url');
  const rendererDir = resolve(options.rendererDir ?? DEFAULT_RENDERER_DIR);
  // Only passed on: the utility process owns the cache.
  const cacheDir = resolve(options.cacheDir);
  const client = new UtilityClient(
    nodeSpawner({
      db: options.db,
      cacheDir,
      configPath: options.configPath,
      statePath: options.statePath,
      execArgv: options.execArgv,
      env: options.env,
    }),
    options.client,
  ).start();

  const streams = new Set<ServerResponse>();
  client.onEvent((event: ProtocolEvent) => {
    const data = `data: ${JSON.stringify(event)}\n\n`;
    for (const res of streams) res.write(data);
  });

  let port = 0;
  const allowedHosts = (): Set<string> => new Set([`127.0.0.1:${port}`, `localhost:${port}`]);

  const serveStatic = (res: ServerResponse, pathname: string, setCookie: boolean): void => {
    const rel = pathname === '/' ? 'index.html' : decodeURIComponent(pathname.slice(1));
    const file = normalize(join(rendererDir, rel));
    if (!file.startsWith(rendererDir + sep) || !existsSync(file) || !statSync(file).isFile()) {
      send(res, 404, rel === 'index.html' ? 'the renderer is not built: run npm run build' : 'not found');
      return;
    }
    const headers: Record<string, string> = {
      'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
      'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
    };
    const cookie = setCookie ? { 'set-cookie': `${COOKIE}=${token}; Path=/; HttpOnly; SameSite=Strict` } : {};
    res.writeHead(200, { ...headers, ...cookie });
    createReadStream(file).pipe(res);
  };

  const server = createServer((req, res) => {
    void (async () => {
      if (!allowedHosts().has(req.headers.host ?? '')) return send(res, 403, 'forbidden host');
      // The raw target, not a normalised URL: `..` must reach the path checks as sent.
      const rawTarget = req.url ?? '/';
      const queryAt = rawTarget.indexOf('?');
      const rawPath = queryAt === -1 ? rawTarget : rawTarget.slice(0, queryAt);
      const query = new URLSearchParams(queryAt === -1 ? '' : rawTarget.slice(queryAt + 1));
      try {
        decodeURIComponent(rawPath);
      } catch {
        return send(res, 400, 'malformed path');
      }
      const header = req.headers['x-session-keeper-token'];
      const headerToken = typeof header === 'string' ? header : undefined;
      const queryToken = query.get('token') ?? undefined;
      const ownOrigin = `http://${req.headers.host}`;
      // Null when the request names no origin (a navigation, curl); else whether it is ours.
      const origin = req.headers.origin;
      const crossSite = (origin !== undefined && origin !== ownOrigin) || (req.headers['sec-fetch-site'] !== undefined && req.headers['sec-fetch-site'] !== 'same-origin' && req.headers['sec-fetch-site'] !== 'none');

      if (rawPath === '/api' || rawPath === '/api/') {
        if (req.method !== 'POST') return send(res, 405, 'POST only', undefined, { allow: 'POST' });
        if (!sameToken(headerToken, token)) return send(res, 403, 'POST /api needs the token in the x-session-keeper-token header');
        if (origin !== ownOrigin) return send(res, 403, `POST /api needs Origin ${ownOrigin}`);
        if (!isJson(req.headers['content-type'])) return send(res, 415, 'POST /api takes application/json');
        if (Number(req.headers['content-length'] ?? 0) > MAX_BODY) return tooLarge(req, res);
        const text = await readBody(req);
        if (text === null) return tooLarge(req, res);
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          return sendJson(res, 400, { type: 'reply', id: null, ok: false, error: { code: 'bad-request', message: 'request is not JSON' } });
        }
        const reply = await client.send(body);
        return sendJson(res, statusOf(reply), reply);
      }
      if (rawPath === '/api/token') {
        if (req.method !== 'GET') return send(res, 405, 'GET only', undefined, { allow: 'GET' });
        if (crossSite || !sameToken(cookieToken(req), token)) return send(res, 403, 'the token is given to the page itself only');
        return sendJson(res, 200, { token });
      }
      if (rawPath === '/api/events' && !sameToken(headerToken ?? queryToken, token)) return send(res, 401, 'the event stream needs the token');
      const authorised = sameToken(queryToken, token) || sameToken(headerToken, token) || sameToken(cookieToken(req), token);
      if (!authorised) return send(res, 401, 'a valid token is required (use the URL session-keeper serve printed)');

      if (rawPath === '/api/events') {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
        res.write(': session-keeper events\n\n');
        if (client.lastStartup) res.write(`data: ${JSON.stringify({ type: 'event', event: 'startup', report: client.lastStartup })}\n\n`);
        streams.add(res);
        const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
        req.on('close', () => {
          clearInterval(ping);
          streams.delete(res);
        });
        return;
      }
      if (rawPath.startsWith('/attachment/')) {
        const stream = await client.openAttachmentStream({
          relPath: rawPath.slice('/attachment/'.length),
          method: req.method,
          range: req.headers.range,
          mime: query.get('mime'),
        });
        res.writeHead(stream.status, stream.headers);
        if (!stream.body) return void res.end(stream.message ?? '');
        // The browser went away: the utility lets the file go.
        res.once('close', () => stream.cancel());
        for await (const chunk of stream.body) {
          if (!res.write(chunk)) await drained(res);
        }
        res.end();
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed');
      return serveStatic(res, rawPath, queryToken !== undefined);
    })().catch((error: unknown) => {
      if (!res.headersSent) send(res, 500, `internal error: ${(error as Error).message}`);
      else res.destroy();
    });
  });

  try {
    await new Promise<void>((resolveListen, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, '127.0.0.1', () => resolveListen());
    });
  } catch (error) {
    await client.close();
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new SkError('usage', `port ${options.port} on 127.0.0.1 is in use; choose another with --port, or leave it out for a free one`);
    if (code === 'EACCES') throw new SkError('usage', `port ${options.port} on 127.0.0.1 needs privileges; choose one above 1023`);
    throw error;
  }
  port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}/?token=${token}`;

  return {
    url,
    port,
    token,
    client,
    server,
    close: async () => {
      for (const res of streams) res.end();
      streams.clear();
      await new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      await client.close();
    },
  };
}
