/**
 * The shell's side of the utility process (Electron main or web mode): forks it, sends typed
 * requests, matches replies, passes events on, and restarts it with backoff when it dies, telling
 * listeners (`restarting`, `restarted`). Requests in flight when it dies are rejected
 * ('unavailable'); requests made while it restarts wait for the new process. Attachments come
 * as streams (`openAttachmentStream`): the utility reads them from the file it holds and sends
 * them in chunks this side pulls, so a shell never opens the attachment cache itself.
 */
import { fork } from 'node:child_process';
import {
  ApiError,
  requestBodySchema,
  STREAM_WINDOW,
  streamDataSchema,
  utilityMessageSchema,
  describeRequestError,
  type AttachmentStreamRequest,
  type EventBody,
  type Method,
  type ParamsOf,
  type ProtocolEvent,
  type Reply,
  type RequestBody,
  type ResultOf,
  type StartupResult,
  type StreamOpen,
  type StreamPort,
} from '../core/utility-protocol.js';
import { builtModule } from '../store/package-files.js';
import { StreamMux } from './stream-mux.js';

/** What the client needs of a child: both `utilityProcess.fork` and `child_process.fork` fit. */
export interface UtilityChild {
  readonly pid: number | undefined;
  postMessage(message: unknown): void;
  onMessage(listener: (message: unknown) => void): void;
  onExit(listener: (code: number | null, signal: string | null) => void): void;
  /** Sends `open` with a stream to answer on: a MessagePortMain of its own in Electron, one multiplexed over IPC in Node. */
  openStream(open: StreamOpen): StreamPort;
  kill(): void;
}

/** An attachment answered by the utility: status and headers at once, the bytes as they are pulled. */
export interface AttachmentStream {
  status: number;
  headers: Record<string, string>;
  /** A short plain-text body (refusals). */
  message?: string | undefined;
  /** The bytes, pulled a chunk at a time (at most STREAM_WINDOW chunks in flight); null without a body. */
  body: AsyncIterable<Uint8Array> | null;
  /** Ends the stream where it is (the reader went away); the utility lets the file go. */
  cancel(): void;
}

export type SpawnUtility = () => UtilityChild;

export interface UtilityArgs {
  db: string;
  cacheDir?: string | undefined;
  configPath?: string | undefined;
  statePath?: string | undefined;
}

export function utilityArgs(options: UtilityArgs): string[] {
  const args = ['--db', options.db];
  if (options.cacheDir) args.push('--cache-dir', options.cacheDir);
  if (options.configPath) args.push('--config', options.configPath);
  if (options.statePath) args.push('--state', options.statePath);
  return args;
}

/** The utility entry in this build (dist/main/utility.js). */
export const UTILITY_ENTRY = builtModule('main/utility.js');

/** `child_process.fork` of the utility entry: web mode and tests. */
export function nodeSpawner(
  options: UtilityArgs & { entry?: string; execArgv?: string[]; env?: NodeJS.ProcessEnv; onStderr?: (text: string) => void },
): SpawnUtility {
  return () => {
    const child = fork(options.entry ?? UTILITY_ENTRY, utilityArgs(options), {
      execArgv: options.execArgv ?? [],
      env: options.env ?? process.env,
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      // Structured clone, as Electron's ports use: attachment chunks cross as bytes, not JSON arrays.
      serialization: 'advanced',
    });
    const streams = new StreamMux((envelope) => {
      if (child.connected) child.send(envelope, (error) => void error);
    });
    child.on('exit', () => streams.closeAll());
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => (options.onStderr ?? ((t: string) => process.stderr.write(t)))(text));
    // A write to a process that just died raises EPIPE asynchronously: the exit handler deals with it.
    child.on('error', () => undefined);
    return {
      get pid() {
        return child.pid;
      },
      postMessage: (message) => {
        if (child.connected) child.send(message as object, (error) => void error);
      },
      onMessage: (listener) =>
        child.on('message', (message: unknown) => {
          if (!streams.dispatch(message)) listener(message);
        }),
      onExit: (listener) => child.on('exit', (code, signal) => listener(code, signal)),
      openStream: (open) => {
        const port = streams.open(open.stream);
        if (child.connected) child.send(open, (error) => void error);
        else port.close();
        return port;
      },
      kill: () => {
        child.kill('SIGTERM');
      },
    };
  };
}

/**
 * Reads an attachment stream from `port`: resolves at its head; the body pulls STREAM_WINDOW chunks
 * ahead and one more for each taken, so neither side ever holds more than that in flight.
 */
export function readAttachmentStream(port: StreamPort, timeoutMs: number): Promise<AttachmentStream> {
  const queue: Uint8Array[] = [];
  let ended = false;
  let failure: Error | null = null;
  let wake: (() => void) | null = null;
  let settled = false;
  const finish = (): void => {
    ended = true;
    port.close();
  };
  return new Promise<AttachmentStream>((resolve, reject) => {
    const timer = timeoutMs > 0 ? setTimeout(() => fail(new ApiError({ code: 'unavailable', message: `no answer for the attachment within ${timeoutMs} ms` })), timeoutMs) : undefined;
    const fail = (error: Error): void => {
      failure ??= error;
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        finish();
        reject(error);
      }
      wake?.();
    };
    port.onClose(() => {
      if (!ended) fail(new ApiError({ code: 'unavailable', message: 'the utility process stopped while sending an attachment' }));
    });
    port.onMessage((raw) => {
      const parsed = streamDataSchema.safeParse(raw);
      if (!parsed.success) return fail(new ApiError({ code: 'internal', message: 'a malformed message on an attachment stream' }));
      const data = parsed.data;
      if (data.kind === 'head') {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        const hasBody = data.body;
        if (!hasBody) finish();
        resolve({
          status: data.status,
          headers: data.headers,
          message: data.message,
          body: hasBody ? chunks() : null,
          cancel: () => {
            if (ended) return;
            port.post({ kind: 'cancel' });
            finish();
            wake?.();
          },
        });
        return;
      }
      if (data.kind === 'chunk') queue.push(data.bytes);
      else if (data.kind === 'end') ended = true;
      else fail(new ApiError({ code: 'internal', message: data.message }));
      wake?.();
    });

    async function* chunks(): AsyncGenerator<Uint8Array> {
      port.post({ kind: 'pull', chunks: STREAM_WINDOW });
      try {
        for (;;) {
          const next = queue.shift();
          if (next) {
            if (!ended) port.post({ kind: 'pull', chunks: 1 });
            yield next;
            continue;
          }
          if (failure) throw failure;
          if (ended) return;
          await new Promise<void>((r) => (wake = r));
          wake = null;
        }
      } finally {
        // Taken to the end, or left early: either way this side is done with the port.
        if (!ended) port.post({ kind: 'cancel' });
        finish();
      }
    }
  });
}

export interface ClientOptions {
  /** First restart delay; doubles each time up to `maxDelayMs`. */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** A process that stayed up this long resets the backoff. */
  stableMs?: number;
  /** Per-request limit; `apply` is exempt (a VACUUM can take minutes). */
  timeoutMs?: number;
}

interface Pending {
  resolve: (reply: Reply) => void;
  timer: NodeJS.Timeout | undefined;
}

export class UtilityClient {
  private readonly spawn: SpawnUtility;
  private readonly options: Required<ClientOptions>;
  private child: UtilityChild | null = null;
  private generation = 0;
  private nextId = 1;
  private nextStream = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly waiting: (() => void)[] = [];
  private readonly listeners = new Set<(event: ProtocolEvent) => void>();
  private attempt = 0;
  private startedAt = 0;
  private closed = false;
  private restartTimer: NodeJS.Timeout | undefined;
  /** The last startup report: for a window that opens after the utility has finished starting. */
  lastStartup: StartupResult | null = null;
  restarts = 0;

  constructor(spawn: SpawnUtility, options: ClientOptions = {}) {
    this.spawn = spawn;
    this.options = { initialDelayMs: 250, maxDelayMs: 10_000, stableMs: 15_000, timeoutMs: 120_000, ...options };
  }

  start(): this {
    this.launch();
    return this;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  onEvent(listener: (event: ProtocolEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(event: EventBody): void {
    const full = { type: 'event', ...event } as ProtocolEvent;
    for (const listener of this.listeners) {
      try {
        listener(full);
      } catch {
        // a listener's failure is its own
      }
    }
  }

  private launch(): void {
    const generation = ++this.generation;
    const child = this.spawn();
    this.child = child;
    this.startedAt = Date.now();
    child.onMessage((message) => this.receive(message));
    child.onExit((code, signal) => {
      if (generation !== this.generation) return;
      this.child = null;
      this.failPending(`the utility process stopped (${signal ?? `exit code ${code}`})`);
      if (this.closed) return;
      if (Date.now() - this.startedAt > this.options.stableMs) this.attempt = 0;
      this.attempt += 1;
      const delayMs = Math.min(this.options.maxDelayMs, this.options.initialDelayMs * 2 ** (this.attempt - 1));
      this.emit({ event: 'restarting', reason: signal ? `killed by ${signal}` : `exit code ${code}`, attempt: this.attempt, delayMs });
      this.restartTimer = setTimeout(() => {
        if (this.closed) return;
        this.restarts += 1;
        this.launch();
        this.emit({ event: 'restarted', attempt: this.attempt });
        for (const wake of this.waiting.splice(0)) wake();
      }, delayMs);
    });
    for (const wake of this.waiting.splice(0)) wake();
  }

  private failPending(message: string): void {
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      pending.resolve({ type: 'reply', id, ok: false, error: { code: 'unavailable', message } });
    }
    this.pending.clear();
  }

  private receive(message: unknown): void {
    const parsed = utilityMessageSchema.safeParse(message);
    if (!parsed.success) return; // not ours, or damaged: nobody can be answered with it
    const msg = parsed.data;
    if (msg.type === 'event') {
      if (msg.event === 'startup') this.lastStartup = msg.report;
      this.emit(msg);
      return;
    }
    if (typeof msg.id !== 'number') return;
    const pending = this.pending.get(msg.id);
    if (!pending) return;
    this.pending.delete(msg.id);
    clearTimeout(pending.timer);
    pending.resolve(msg);
  }

  private async ready(): Promise<UtilityChild> {
    while (!this.child) {
      if (this.closed) throw new ApiError({ code: 'unavailable', message: 'session-keeper is shutting down' });
      await new Promise<void>((r) => this.waiting.push(r));
    }
    return this.child;
  }

  /**
   * Sends an untrusted request body (from a renderer or an HTTP client): validated here first,
   * answered with an error reply when malformed. Resolves to the reply; never rejects.
   */
  async send(body: unknown): Promise<Reply> {
    const parsed = requestBodySchema.safeParse(body);
    if (!parsed.success) return { type: 'reply', id: null, ok: false, error: { code: 'bad-request', message: describeRequestError(parsed.error) } };
    return this.sendValid(parsed.data);
  }

  /** The untyped wire form with its id; for tests that need to send malformed requests. */
  async sendRaw(message: unknown): Promise<Reply> {
    const child = await this.ready();
    const id = this.nextId++;
    const withId = message !== null && typeof message === 'object' && !Array.isArray(message) ? { ...message, id } : message;
    return this.await(child, id, withId, this.options.timeoutMs);
  }

  private async sendValid(body: RequestBody): Promise<Reply> {
    let child: UtilityChild;
    try {
      child = await this.ready();
    } catch (error) {
      return { type: 'reply', id: null, ok: false, error: { code: 'unavailable', message: (error as Error).message } };
    }
    const id = this.nextId++;
    return this.await(child, id, { type: 'request', id, ...body }, body.method === 'apply' ? 0 : this.options.timeoutMs);
  }

  private await(child: UtilityChild, id: number, message: unknown, timeoutMs: number): Promise<Reply> {
    return new Promise<Reply>((resolve) => {
      const timer =
        timeoutMs > 0
          ? setTimeout(() => {
              this.pending.delete(id);
              resolve({ type: 'reply', id, ok: false, error: { code: 'unavailable', message: `no reply within ${timeoutMs} ms` } });
            }, timeoutMs)
          : undefined;
      this.pending.set(id, { resolve, timer });
      child.postMessage(message);
    });
  }

  /** Typed call: resolves with the result or rejects with an ApiError. */
  async request<M extends Method>(method: M, params?: ParamsOf<M>): Promise<ResultOf<M>> {
    const reply = await this.send(params === undefined ? { method } : { method, params });
    if (!reply.ok) throw new ApiError(reply.error);
    return reply.result as ResultOf<M>;
  }

  /**
   * An attachment of the cache, as the utility serves it from the file it holds (GET or HEAD,
   * Range answered): for Electron's protocol handler and web mode, which never open the cache.
   */
  async openAttachmentStream(params: AttachmentStreamRequest): Promise<AttachmentStream> {
    const child = await this.ready();
    return readAttachmentStream(child.openStream({ type: 'stream-open', stream: this.nextStream++, params }), this.options.timeoutMs);
  }

  /** Kills the current process as a crash would (tests; the restart logic takes over). */
  killForTest(): void {
    const pid = this.child?.pid;
    if (pid !== undefined) process.kill(pid, 'SIGKILL');
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.restartTimer);
    const child = this.child;
    this.child = null;
    this.failPending('session-keeper is shutting down');
    for (const wake of this.waiting.splice(0)) wake();
    if (child) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 2_000);
        child.onExit(() => {
          clearTimeout(timer);
          resolve();
        });
        child.kill();
      });
    }
  }
}
