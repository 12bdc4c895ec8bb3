/**
 * The utility's side of attachment streams: a shell (Electron's main process, web mode) asks for
 * an attachment by its URL path and gets the bytes over a stream port, read from the FileHandle
 * the service holds for that content (the one its worker decoded into, or the cache file opened
 * once, safely). Never a Buffer of the whole file: chunks of STREAM_CHUNK_BYTES, sent only as the
 * consumer asks for them. At most `maxActive` streams read at once (each holds a lease on a
 * handle), so descriptors stay bounded however many requests a page makes; the rest wait.
 */
import {
  attachmentStreamRequestSchema,
  STREAM_CHUNK_BYTES,
  streamControlSchema,
  type AttachmentStreamRequest,
  type StreamPort,
} from '../core/utility-protocol.js';
import { oneLine } from '../core/errors.js';
import { attachmentAnswer, contentAddress, resolveAttachmentRequest, type AttachmentHttpResponse } from './attachment-http.js';
import type { HandleLease } from './attachment-handles.js';

/** What streams read from: the service's leases on open attachment files. */
export interface LeaseSource {
  leaseCached(sha256: string): Promise<HandleLease | undefined>;
}

export class AttachmentStreams {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly source: LeaseSource | null,
    private readonly cacheDir: string,
    private readonly maxActive = 8,
  ) {}

  /** Streams reading right now (each holding one lease). */
  get reading(): number {
    return this.active;
  }

  /** Answers one stream; never throws (a failure is an `error` message on the port). */
  serve(port: StreamPort, params: unknown): void {
    const parsed = attachmentStreamRequestSchema.safeParse(params);
    if (!parsed.success) {
      this.refuse(port, { status: 400, headers: { 'content-type': 'text/plain; charset=utf-8' }, message: 'malformed attachment request' });
      return;
    }
    void this.answer(port, parsed.data).catch((error: unknown) => {
      port.post({ kind: 'error', message: oneLine(error) });
      port.close();
    });
  }

  private refuse(port: StreamPort, answer: Pick<AttachmentHttpResponse, 'status' | 'headers' | 'message'>): void {
    port.post({ kind: 'head', status: answer.status, headers: answer.headers, body: false, ...(answer.message === undefined ? {} : { message: answer.message }) });
    port.post({ kind: 'end' });
  }

  private async answer(port: StreamPort, request: AttachmentStreamRequest): Promise<void> {
    const address = contentAddress(request.relPath, request.method);
    if (!('sha256' in address)) return this.refuse(port, address);
    let gone = false;
    port.onClose(() => (gone = true));
    await this.slot();
    let lease: HandleLease | undefined;
    try {
      if (gone) return;
      lease = await this.source?.leaseCached(address.sha256);
      if (!lease) {
        // Why it cannot be had: a path leading out of the cache is 403, a missing file 404.
        const why = resolveAttachmentRequest(this.cacheDir, request.relPath, request);
        return this.refuse(port, why.status >= 400 ? why : { status: 404, headers: { 'content-type': 'text/plain; charset=utf-8' }, message: 'no such attachment' });
      }
      const { body, ...head } = attachmentAnswer(lease.size, request);
      port.post({ kind: 'head', status: head.status, headers: head.headers, body: body !== undefined, ...(head.message === undefined ? {} : { message: head.message }) });
      if (!body) {
        port.post({ kind: 'end' });
        return;
      }
      await this.send(port, lease, body, () => gone);
    } finally {
      lease?.release();
      this.release();
    }
  }

  /** Sends bytes [start, end] as the consumer pulls; resolves when they are all sent or the stream is given up. */
  private send(port: StreamPort, lease: HandleLease, body: { start: number; end: number }, gone: () => boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let credit = 0;
      let position = body.start;
      let pumping = false;
      let done = false;
      const stop = (): void => {
        done = true;
        resolve();
      };
      const pump = async (): Promise<void> => {
        if (pumping || done) return;
        pumping = true;
        try {
          while (credit > 0 && position <= body.end && !done && !gone()) {
            const length = Math.min(STREAM_CHUNK_BYTES, body.end - position + 1);
            const bytes = Buffer.allocUnsafe(length);
            const { bytesRead } = await lease.handle.read(bytes, 0, length, position);
            if (bytesRead === 0) throw new Error(`attachment file ended at byte ${position} of ${lease.size}`);
            position += bytesRead;
            credit--;
            port.post({ kind: 'chunk', bytes: bytesRead === length ? bytes : bytes.subarray(0, bytesRead) });
          }
          if (gone()) stop();
          else if (position > body.end && !done) {
            port.post({ kind: 'end' });
            stop();
          }
        } catch (error) {
          done = true;
          reject(error);
        } finally {
          pumping = false;
        }
        // Credit that came while a read was under way.
        if (credit > 0 && !done) void pump();
      };
      port.onClose(stop);
      port.onMessage((raw) => {
        const control = streamControlSchema.safeParse(raw);
        if (!control.success || control.data.kind === 'cancel') return stop();
        credit += control.data.chunks;
        void pump();
      });
    });
  }

  /** Waits for one of the `maxActive` places. */
  private async slot(): Promise<void> {
    if (this.active < this.maxActive) {
      this.active++;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  /** Gives a place back, to the next waiting stream if any (it keeps the count). */
  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.active--;
  }
}
