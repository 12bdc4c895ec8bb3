/**
 * The renderer's one way to the back end: the same `SessionKeeperApi` whether the preload script
 * exposed it (Electron, contextIsolation) or we are in a browser (web mode: fetch + server-sent
 * events). In web mode every request carries the token in a header (the server refuses a POST on
 * the cookie alone): from the URL the page was opened with, else from `GET /api/token`, which the
 * server answers only to its own origin's page holding the cookie.
 */
import { ApiError, apiFromBridge, type Method, type ParamsOf, type ProtocolEvent, type ReplyError, type ResultOf, type SessionKeeperApi, type SessionKeeperBridge } from '../core/utility-protocol.js';

declare global {
  interface Window {
    sessionKeeperBridge?: SessionKeeperBridge;
  }
}

/** The token from the URL or this tab's storage; else asked of the server with the cookie. */
async function webToken(): Promise<string> {
  const params = new URLSearchParams(location.search);
  const known = params.get('token') ?? sessionStorage.getItem('sk-token');
  // Keep the token out of the address bar (and of screenshots, and of history).
  if (params.has('token')) history.replaceState(null, '', location.pathname + location.hash);
  if (known) {
    sessionStorage.setItem('sk-token', known);
    return known;
  }
  const response = await fetch('/api/token', { credentials: 'same-origin' });
  if (!response.ok) return '';
  const body = (await response.json()) as { token?: unknown };
  const token = typeof body.token === 'string' ? body.token : '';
  sessionStorage.setItem('sk-token', token);
  return token;
}

function webApi(): SessionKeeperApi {
  const tokenReady = webToken().catch(() => '');
  const listeners = new Set<(event: ProtocolEvent) => void>();
  let opened = false;
  const open = async (): Promise<void> => {
    const token = await tokenReady;
    const source = new EventSource(`/api/events?token=${encodeURIComponent(token)}`);
    source.onmessage = (message: MessageEvent<string>) => {
      let event: ProtocolEvent;
      try {
        event = JSON.parse(message.data) as ProtocolEvent;
      } catch {
        return;
      }
      if (event?.type !== 'event') return;
      for (const listener of listeners) listener(event);
    };
  };
  return {
    transport: 'web',
    async request<M extends Method>(method: M, params?: ParamsOf<M>): Promise<ResultOf<M>> {
      let response: Response;
      const token = await tokenReady;
      try {
        response = await fetch('/api', {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-session-keeper-token': token },
          body: JSON.stringify(params === undefined ? { method } : { method, params }),
        });
      } catch (error) {
        throw new ApiError({ code: 'unavailable', message: `session-keeper is not reachable (${(error as Error).message})` });
      }
      let reply: { ok: boolean; result?: unknown; error?: ReplyError };
      try {
        reply = (await response.json()) as typeof reply;
      } catch {
        throw new ApiError({ code: 'internal', message: `unexpected answer (HTTP ${response.status})` });
      }
      if (!reply.ok) throw new ApiError(reply.error ?? { code: 'internal', message: `HTTP ${response.status}` });
      return reply.result as ResultOf<M>;
    },
    onEvent(listener) {
      listeners.add(listener);
      if (!opened) {
        opened = true;
        void open();
      }
      return () => listeners.delete(listener);
    },
  };
}

export function connectApi(): SessionKeeperApi {
  return window.sessionKeeperBridge ? apiFromBridge(window.sessionKeeperBridge) : webApi();
}

export { ApiError };

/**
 * The URL an extracted attachment is served at (relative to the cache: `AttachmentView.relPath`):
 * Electron's registered scheme, or web mode's `/attachment/` route (the cookie opens it). Never a
 * data: URL: the bytes stay in the utility's file.
 */
export function attachmentUrl(relPath: string, mime: string): string {
  const path = relPath.split('/').map(encodeURIComponent).join('/');
  const bridge = window.sessionKeeperBridge;
  if (bridge) return `${bridge.attachmentScheme}://cache/${path}`;
  return `/attachment/${path}?mime=${encodeURIComponent(mime)}`;
}
