/**
 * Main-process wiring, one call: `installSessionKeeper(app, options)` before `app` is ready.
 * - forks the utility process (`utilityProcess.fork` of dist/main/utility.js) and restarts it
 *   with backoff when it dies, telling every window (`restarting`, `restarted` events);
 * - registers the attachment scheme (`sk-attachment://cache/<sha256[0:2]>/<sha256>`) with
 *   `protocol.handle`: the bytes come from the utility process, which reads them from the file
 *   handle its worker decoded into and sends them in bounded chunks over a MessagePortMain of
 *   their own; Range is answered with 206. This process never opens the attachment cache;
 * - answers the renderer's typed requests (`ipcMain.handle`, validated) and forwards events;
 * - opens the size-check dialog when the utility reports a threshold crossed at startup.
 *
 * Electron is loaded when the call is made (not when this module is imported), so the package's
 * entry can be imported under plain Node too.
 */
import { createRequire } from 'node:module';
import type { App, BrowserWindow, BrowserWindowConstructorOptions, WebContents } from 'electron';
import { defaultCacheDir, defaultDbPath } from '../../core/paths.js';
import type { ProtocolEvent, StartupResult } from '../../core/utility-protocol.js';
import { packagePath } from '../../store/package-files.js';
import { attachmentResponse } from '../attachment-http.js';
import { UtilityClient, utilityArgs, type ClientOptions, type UtilityChild } from '../client.js';
import { ATTACHMENT_SCHEME, EVENT_CHANNEL, REQUEST_CHANNEL } from './channels.js';

type ElectronModule = typeof import('electron');

export interface SessionKeeperOptions {
  /** OpenCode's database; default `$OPENCODE_DB` or the XDG path. */
  db?: string;
  /** Attachment cache; default `$XDG_CACHE_HOME/session-keeper/attachments`. */
  cacheDir?: string;
  /** Config file to read and save; default the global opencode.json[c]. */
  configPath?: string;
  /** Open the size-check window when a threshold is crossed at startup (default true). */
  showSizeDialog?: boolean;
  /** The renderer to load: a URL, or default dist/renderer/index.html of this package. */
  rendererUrl?: string;
  /** Preload for windows we open; default dist/electron/preload.cjs of this package. */
  preload?: string;
  /** The renderer's index.html on disk (when not `rendererUrl`); default dist/renderer/index.html. */
  rendererFile?: string;
  /** The utility-process entry; default dist/main/utility.js of this package (bundlers: point at it). */
  utilityEntry?: string;
  /** Extra options for windows we open. */
  window?: BrowserWindowConstructorOptions;
  client?: ClientOptions;
  /** Called with the startup report (e.g. to show your own UI instead of ours). */
  onStartup?: (report: StartupResult) => void;
}

export interface SessionKeeperHandle {
  client: UtilityClient;
  /** Opens (or focuses) the session-keeper window; `view` 'settings' opens the settings panel. */
  openWindow(view?: 'size-check' | 'settings'): Promise<BrowserWindow>;
  dispose(): Promise<void>;
}

export const UTILITY_ENTRY_PATH = packagePath('dist', 'main', 'utility.js');
export const PRELOAD_PATH = packagePath('dist', 'electron', 'preload.cjs');
export const RENDERER_INDEX = packagePath('dist', 'renderer', 'index.html');

function loadElectron(): ElectronModule {
  return createRequire(import.meta.url)('electron') as ElectronModule;
}

export function installSessionKeeper(app: App, options: SessionKeeperOptions = {}): SessionKeeperHandle {
  const electron = loadElectron();
  const { BrowserWindow: Window, ipcMain, MessageChannelMain, protocol, utilityProcess } = electron;

  // Must happen before `ready`.
  protocol.registerSchemesAsPrivileged([{ scheme: ATTACHMENT_SCHEME, privileges: { standard: true, secure: true, stream: true, supportFetchAPI: true } }]);

  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const args = utilityArgs({ db: options.db ?? defaultDbPath(), cacheDir, configPath: options.configPath });
  const client = new UtilityClient((): UtilityChild => {
    const child = utilityProcess.fork(options.utilityEntry ?? UTILITY_ENTRY_PATH, args, { serviceName: 'session-keeper', stdio: 'inherit' });
    return {
      get pid() {
        return child.pid;
      },
      postMessage: (message) => child.postMessage(message),
      onMessage: (listener) => child.on('message', listener),
      onExit: (listener) => child.on('exit', (code) => listener(code, null)),
      openStream: (open) => {
        // A port per stream: its end is the stream's end, and the utility sees it close if we go.
        const { port1, port2 } = new MessageChannelMain();
        child.postMessage(open, [port2]);
        port1.start();
        return {
          post: (body) => port1.postMessage(body),
          onMessage: (listener) => port1.on('message', (event) => listener(event.data)),
          onClose: (listener) => port1.on('close', listener),
          close: () => port1.close(),
        };
      },
      kill: () => {
        child.kill();
      },
    };
  }, options.client);

  const contents = new Set<WebContents>();
  const broadcast = (event: ProtocolEvent): void => {
    for (const wc of contents) if (!wc.isDestroyed()) wc.send(EVENT_CHANNEL, event);
  };
  client.onEvent(broadcast);

  let win: BrowserWindow | null = null;
  const openWindow = async (view: 'size-check' | 'settings' = 'size-check'): Promise<BrowserWindow> => {
    await app.whenReady();
    if (win && !win.isDestroyed()) {
      win.focus();
      return win;
    }
    win = new Window({
      width: 800,
      height: 600,
      minWidth: 640,
      minHeight: 480,
      title: 'OpenCode storage',
      ...options.window,
      webPreferences: { preload: options.preload ?? PRELOAD_PATH, contextIsolation: true, sandbox: true, nodeIntegration: false, ...options.window?.webPreferences },
    });
    const wc = win.webContents;
    contents.add(wc);
    wc.once('destroyed', () => contents.delete(wc));
    const hash = view === 'settings' ? 'settings' : 'size-check';
    if (options.rendererUrl) await win.loadURL(`${options.rendererUrl}#${hash}`);
    else await win.loadFile(options.rendererFile ?? RENDERER_INDEX, { hash });
    return win;
  };

  ipcMain.handle(REQUEST_CHANNEL, async (event, body: unknown) => {
    contents.add(event.sender);
    return client.send(body); // validated inside; malformed bodies get an error reply
  });

  client.onEvent((event) => {
    if (event.event !== 'startup') return;
    options.onStartup?.(event.report);
    if (event.report.showDialog && options.showSizeDialog !== false) void openWindow('size-check');
  });

  void app.whenReady().then(() => {
    protocol.handle(ATTACHMENT_SCHEME, async (request) => {
      try {
        return await attachmentResponse(client, request);
      } catch (error) {
        return new Response(`attachment unavailable: ${(error as Error).message}`, { status: 503, headers: { 'content-type': 'text/plain; charset=utf-8' } });
      }
    });
    client.start();
  });

  app.on('will-quit', () => {
    void client.close();
  });

  return {
    client,
    openWindow,
    dispose: async () => {
      ipcMain.removeHandler(REQUEST_CHANNEL);
      protocol.unhandle(ATTACHMENT_SCHEME);
      await client.close();
    },
  };
}
