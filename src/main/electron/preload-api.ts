/**
 * The preload side: exposes `window.sessionKeeperBridge` (SessionKeeperBridge) through
 * contextBridge, so a renderer with contextIsolation (and sandbox) reaches the typed API without
 * Node. Import this from your own preload script and call `exposeSessionKeeper()`, or use the
 * ready-made dist/electron/preload.cjs. Only plain data crosses: request bodies, reply envelopes, events.
 */
import { contextBridge, ipcRenderer, type IpcRendererEvent } from 'electron';
import type { ProtocolEvent, Reply, SessionKeeperBridge } from '../../core/utility-protocol.js';
import { ATTACHMENT_SCHEME, EVENT_CHANNEL, REQUEST_CHANNEL } from './channels.js';

export function createBridge(): SessionKeeperBridge {
  return {
    transport: 'electron',
    attachmentScheme: ATTACHMENT_SCHEME,
    invoke: (body) => ipcRenderer.invoke(REQUEST_CHANNEL, body) as Promise<Reply>,
    onEvent: (listener) => {
      const handler = (_event: IpcRendererEvent, message: ProtocolEvent): void => listener(message);
      ipcRenderer.on(EVENT_CHANNEL, handler);
      return () => {
        ipcRenderer.removeListener(EVENT_CHANNEL, handler);
      };
    },
  };
}

/** Puts the bridge on `window.sessionKeeperBridge` (the name the renderer looks for). */
export function exposeSessionKeeper(name = 'sessionKeeperBridge'): void {
  contextBridge.exposeInMainWorld(name, createBridge());
}
