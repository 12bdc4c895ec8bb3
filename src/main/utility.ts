/**
 * The utility-process entry: its own V8 heap, owning the worker pool, the LRU cache, the size
 * check and retention at startup, answering typed requests (src/core/utility-protocol.ts).
 *
 * It runs unchanged under Electron's `utilityProcess.fork` (messages on `process.parentPort`) and
 * under Node's `child_process.fork` (`process.send`), which is how the tests and web mode drive it.
 *
 *   arguments: --db PATH [--cache-dir DIR] [--config FILE] [--state FILE]
 *   environment: SESSION_KEEPER_TEST_HOOKS=1 enables `debugKillWorker` (and, with
 *   SESSION_KEEPER_TEST_RUN_PAUSE_MS, a pause in each clean-up after its archive is written, and before each tree a restore from the server copies)
 */
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import type { MessagePortMain, ParentPort } from 'electron';
import { oneLine, SkError } from '../core/errors.js';
import { defaultCacheDir, defaultDbPath } from '../core/paths.js';
import { streamOpenSchema, type EventBody, type StreamOpen, type StreamPort, type UtilityMessage } from '../core/utility-protocol.js';
import { AttachmentStreams } from './attachment-streams.js';
import { RequestHandler } from './handler.js';
import { SessionService } from './service.js';
import { StreamMux } from './stream-mux.js';

interface Transport {
  send(message: UtilityMessage): void;
  onMessage(listener: (message: unknown) => void): void;
  /** Streams the shell opens (attachments), each with its port. */
  onStream(listener: (open: StreamOpen, port: StreamPort) => void): void;
  kind: 'electron' | 'node';
}

/** A MessagePortMain the shell sent with a `stream-open`, as a stream port. */
function electronPort(port: MessagePortMain): StreamPort {
  port.start();
  return {
    post: (body) => port.postMessage(body),
    onMessage: (listener) => port.on('message', (event) => listener(event.data)),
    onClose: (listener) => port.on('close', listener),
    close: () => port.close(),
  };
}

function transport(): Transport {
  // Present only under Electron's utilityProcess; under child_process.fork messages come on process.
  const parentPort = (process as { parentPort?: ParentPort }).parentPort;
  if (parentPort && typeof parentPort.postMessage === 'function') {
    let streamListener: (open: StreamOpen, port: StreamPort) => void = () => undefined;
    return {
      kind: 'electron',
      send: (message) => parentPort.postMessage(message),
      onMessage: (listener) => {
        parentPort.on('message', (event) => {
          const open = streamOpenSchema.safeParse(event?.data);
          const port = event?.ports?.[0];
          if (open.success && port) streamListener(open.data, electronPort(port));
          else listener(event?.data);
        });
      },
      onStream: (listener) => {
        streamListener = listener;
      },
    };
  }
  const send = process.send?.bind(process);
  if (!send) {
    process.stderr.write('session-keeper utility: no parent to talk to (start it with utilityProcess.fork or child_process.fork)\n');
    process.exit(2);
  }
  // A parent that went away leaves nobody to answer: end rather than linger.
  process.on('disconnect', () => process.exit(0));
  const streams = new StreamMux((envelope) => {
    if (process.connected) send(envelope);
  });
  let streamListener: (open: StreamOpen, port: StreamPort) => void = () => undefined;
  return {
    kind: 'node',
    send: (message) => {
      if (process.connected) send(message);
    },
    onMessage: (listener) => {
      process.on('message', (message) => {
        if (streams.dispatch(message)) return;
        const open = streamOpenSchema.safeParse(message);
        if (open.success) streamListener(open.data, streams.open(open.data.stream));
        else listener(message);
      });
    },
    onStream: (listener) => {
      streamListener = listener;
    },
  };
}

function options(argv: string[]): { db: string; cacheDir: string; configPath?: string; statePath?: string } {
  const { values } = parseArgs({
    args: argv,
    options: {
      db: { type: 'string' },
      'cache-dir': { type: 'string' },
      config: { type: 'string' },
      state: { type: 'string' },
    },
    strict: false,
    allowPositionals: true,
  });
  const text = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
  const result: { db: string; cacheDir: string; configPath?: string; statePath?: string } = {
    db: resolve(text(values.db) ?? defaultDbPath()),
    cacheDir: resolve(text(values['cache-dir']) ?? defaultCacheDir()),
  };
  const config = text(values.config);
  const state = text(values.state);
  if (config) result.configPath = resolve(config);
  if (state) result.statePath = resolve(state);
  return result;
}

async function main(): Promise<void> {
  const channel = transport();
  const opts = options(process.argv.slice(2));
  const emit = (event: EventBody): void => channel.send({ type: 'event', ...event } as UtilityMessage);

  // Listen first: requests that arrive while the database opens are queued behind `ready`.
  let ready: (handler: RequestHandler) => void = () => undefined;
  const handlerReady = new Promise<RequestHandler>((r) => {
    ready = r;
  });
  channel.onMessage((message) => {
    void handlerReady
      .then((handler) => handler.handle(message))
      .then((reply) => channel.send(reply))
      .catch((error: unknown) => process.stderr.write(`session-keeper utility: cannot reply: ${oneLine(error)}\n`));
  });
  let streamsReady: (streams: AttachmentStreams) => void = () => undefined;
  const attachmentStreams = new Promise<AttachmentStreams>((r) => {
    streamsReady = r;
  });
  channel.onStream((open, port) => {
    void attachmentStreams.then((streams) => streams.serve(port, open.params));
  });

  let service: SessionService | null = null;
  let openError: SkError | undefined;
  try {
    service = await SessionService.open({ db: opts.db, cacheDir: opts.cacheDir });
  } catch (error) {
    openError = error instanceof SkError ? error : new SkError('internal', oneLine(error));
  }
  const handler = new RequestHandler({
    service,
    openError,
    db: opts.db,
    cacheDir: opts.cacheDir,
    configPath: opts.configPath,
    statePath: opts.statePath,
    emit,
    testHooks: process.env['SESSION_KEEPER_TEST_HOOKS'] === '1',
    testRunPauseMs: Number(process.env['SESSION_KEEPER_TEST_RUN_PAUSE_MS'] ?? 0) || undefined,
  });
  ready(handler);
  streamsReady(new AttachmentStreams(service, opts.cacheDir));
  // With a server as the primary store, startup also starts the mirror, for as long as the app runs.
  // A kill needs no handler: the server rolls back the session being written when the connection drops.
  await handler.startup();
}

// A bug in one request must not take every later request with it; the shell restarts us if we do die.
process.on('unhandledRejection', (error) => {
  process.stderr.write(`session-keeper utility: unhandled: ${oneLine(error)}\n`);
});

main().catch((error: unknown) => {
  process.stderr.write(`session-keeper utility: ${oneLine(error)}\n`);
  process.exit(1);
});
