/**
 * The utility-process entry: its own V8 heap, owning the worker pool, the LRU cache, the size
 * check and retention at startup, answering typed requests (src/core/utility-protocol.ts).
 *
 * It runs unchanged under Electron's `utilityProcess.fork` (messages on `process.parentPort`) and
 * under Node's `child_process.fork` (`process.send`), which is how the tests and web mode drive it.
 *
 *   arguments: --db PATH [--cache-dir DIR] [--config FILE] [--state FILE]
 *   environment: SESSION_KEEPER_TEST_HOOKS=1 enables `debugKillWorker`
 */
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { oneLine, SkError } from '../core/errors.js';
import { defaultCacheDir, defaultDbPath } from '../core/paths.js';
import type { EventBody, UtilityMessage } from '../core/utility-protocol.js';
import { RequestHandler } from './handler.js';
import { SessionService } from './service.js';

/** Electron's `process.parentPort` (a MessagePortMain): messages arrive as `{data}`. */
interface ParentPortLike {
  on(event: 'message', listener: (event: { data: unknown }) => void): unknown;
  postMessage(message: unknown): void;
}

interface Transport {
  send(message: UtilityMessage): void;
  onMessage(listener: (message: unknown) => void): void;
  kind: 'electron' | 'node';
}

function transport(): Transport {
  const parentPort = (process as unknown as { parentPort?: ParentPortLike }).parentPort;
  if (parentPort && typeof parentPort.postMessage === 'function') {
    return {
      kind: 'electron',
      send: (message) => parentPort.postMessage(message),
      onMessage: (listener) => {
        parentPort.on('message', (event) => listener(event?.data));
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
  return {
    kind: 'node',
    send: (message) => {
      if (process.connected) send(message);
    },
    onMessage: (listener) => {
      process.on('message', (message) => listener(message));
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
  });
  ready(handler);
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
