/**
 * Streams over a channel that carries other messages too (Node's IPC between a shell and the
 * utility process): each stream is a virtual port, its messages wrapped as `{type: 'stream',
 * stream, body}`, its end as `{type: 'stream-close', stream}`. Electron needs none of this: there
 * every stream is a MessagePortMain of its own.
 */
import { streamEnvelopeSchema, type StreamControl, type StreamData, type StreamEnvelope, type StreamPort } from '../core/utility-protocol.js';

class VirtualPort implements StreamPort {
  private readonly messageListeners: ((body: unknown) => void)[] = [];
  private readonly closeListeners: (() => void)[] = [];
  /** Messages that came before anyone listened (a MessagePort queues them the same way). */
  private early: unknown[] = [];
  private closed = false;

  constructor(
    readonly stream: number,
    private readonly mux: StreamMux,
  ) {}

  post(body: StreamControl | StreamData): void {
    if (!this.closed) this.mux.send({ type: 'stream', stream: this.stream, body });
  }

  onMessage(listener: (body: unknown) => void): void {
    this.messageListeners.push(listener);
    const early = this.early;
    this.early = [];
    for (const body of early) listener(body);
  }

  onClose(listener: () => void): void {
    if (this.closed) listener();
    else this.closeListeners.push(listener);
  }

  close(): void {
    if (this.closed) return;
    this.mux.send({ type: 'stream-close', stream: this.stream });
    this.ended();
  }

  deliver(body: unknown): void {
    if (this.closed) return;
    if (this.messageListeners.length === 0) this.early.push(body);
    for (const listener of this.messageListeners) listener(body);
  }

  /** This end is done, by its own close or the other's. */
  ended(): void {
    if (this.closed) return;
    this.closed = true;
    this.early = [];
    this.mux.forget(this.stream);
    for (const listener of this.closeListeners.splice(0)) listener();
  }
}

export class StreamMux {
  private readonly ports = new Map<number, VirtualPort>();

  /** `send` puts an envelope on the channel; it must not throw (a dead channel drops it). */
  constructor(readonly send: (envelope: StreamEnvelope) => void) {}

  /** The port of stream `stream` on this side (the other side opens its own with the same number). */
  open(stream: number): StreamPort {
    const port = new VirtualPort(stream, this);
    this.ports.set(stream, port);
    return port;
  }

  /** Hands a stream envelope to its port; false for a message that is not one (for the caller to handle). */
  dispatch(message: unknown): boolean {
    const parsed = streamEnvelopeSchema.safeParse(message);
    if (!parsed.success) return false;
    const port = this.ports.get(parsed.data.stream);
    if (parsed.data.type === 'stream') port?.deliver(parsed.data.body);
    else port?.ended();
    return true;
  }

  /** The channel is gone: every stream on it ends. */
  closeAll(): void {
    for (const port of [...this.ports.values()]) port.ended();
  }

  /** Streams open (for tests and health). */
  get size(): number {
    return this.ports.size;
  }

  forget(stream: number): void {
    this.ports.delete(stream);
  }
}
