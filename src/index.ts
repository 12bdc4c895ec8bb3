/**
 * session-keeper as a dependency of an Electron app (OpenCode Desktop):
 *
 *   main:     installSessionKeeper(app, { db })          forks the utility process, protocol, IPC
 *   preload:  dist/electron/preload.cjs (PRELOAD_PATH),  or `exposeSessionKeeper()` from
 *             'session-keeper/preload' in your own preload script
 *   renderer: dist/renderer (RENDERER_INDEX), or your own UI over `SessionKeeperApi`
 *
 * Importing this module does not load Electron (installSessionKeeper does, when called).
 */
export { installSessionKeeper, PRELOAD_PATH, RENDERER_INDEX, UTILITY_ENTRY_PATH } from './main/electron/install.js';
export type { SessionKeeperHandle, SessionKeeperOptions } from './main/electron/install.js';
export { ATTACHMENT_SCHEME, EVENT_CHANNEL, REQUEST_CHANNEL } from './main/electron/channels.js';
export { UtilityClient, nodeSpawner, type UtilityChild, type SpawnUtility, type ClientOptions } from './main/client.js';
export { registerConnectionTester, type ConnectionTester } from './main/connection-test.js';
export { resolveAttachmentRequest, parseRange, type AttachmentHttpResponse } from './main/attachment-http.js';
export { startWebServer, type WebServer, type WebServerOptions } from './web/server.js';
export { SessionService, type ServiceOptions } from './main/service.js';
export { openReader, openWriter } from './store/open-store.js';
export type { PageReader, SessionReader } from './store/reader.js';
export type { SessionWriter } from './store/writer.js';
export { apiFromBridge, ApiError } from './core/utility-protocol.js';
export type {
  SessionKeeperApi,
  SessionKeeperBridge,
  Method,
  ParamsOf,
  ResultOf,
  ResultMap,
  ProtocolEvent,
  Reply,
  StartupResult,
  PlanResult,
  ApplyOutcome,
  SettingsResult,
  SettingsInput,
  TestConnectionResult,
} from './core/utility-protocol.js';
