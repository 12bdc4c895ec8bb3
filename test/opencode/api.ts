/**
 * OpenCode 1.18's two HTTP APIs as `opencode serve` offers them: the classic one (`/session/...`,
 * conversation in `message`/`part`) and the newer one (`/api/session/...`, conversation in
 * `session_message`). Each only sees the sessions of its own storage layout.
 */

/** A JSON object as OpenCode returns it; fields beyond the named ones are kept as they are. */
export type JsonObject = { [key: string]: unknown };

/** `GET /session/:id/message` items: `message.data` + ids, and its parts. */
export interface ClassicMessage {
  info: JsonObject & { id: string; sessionID: string; role: string };
  parts: Array<JsonObject & { id: string; type: string }>;
}

/** `GET /api/session/:id/message` items: one `session_message` row's data plus its id and type. */
export type SessionMessage = JsonObject & { id: string; type: string };

export interface ClassicSessionInfo extends JsonObject {
  id: string;
  title: string;
  directory: string;
  parentID?: string;
}

export interface SessionV2Info extends JsonObject {
  id: string;
  title: string;
}

export interface SessionInputAdmitted extends JsonObject {
  id: string;
  sessionID: string;
  admittedSeq: number;
}

/** What the newer API takes as a prompt: text and attachments by URI (`data:` or `file://`). */
export interface PromptInput {
  text: string;
  files?: Array<{ uri: string; name?: string; description?: string }>;
}

/** Parts the classic `POST /session/:id/message` takes. */
export type ClassicPartInput =
  | { type: 'text'; text: string }
  | { type: 'file'; mime: string; url: string; filename?: string }
  | { type: 'agent'; name: string }
  | { type: 'subtask'; prompt: string; description: string; agent: string };

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** One request; a non-2xx answer throws with method, path, status and the start of the body. */
export async function requestJson(baseUrl: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path} -> ${response.status}: ${text.slice(0, 300)}`);
  if (text === '') return undefined;
  return JSON.parse(text) as unknown;
}

function expectArray(value: unknown, what: string): unknown[] {
  if (!Array.isArray(value)) throw new Error(`${what}: expected an array, got ${JSON.stringify(value)?.slice(0, 200)}`);
  return value;
}

function expectData(value: unknown, what: string): unknown {
  if (!isObject(value) || !('data' in value)) throw new Error(`${what}: expected {data}, got ${JSON.stringify(value)?.slice(0, 200)}`);
  return value['data'];
}

function asClassicMessage(value: unknown): ClassicMessage {
  if (!isObject(value) || !isObject(value['info']) || !Array.isArray(value['parts'])) throw new Error(`not a classic message: ${JSON.stringify(value).slice(0, 200)}`);
  return value as unknown as ClassicMessage;
}

function asSessionMessage(value: unknown): SessionMessage {
  if (!isObject(value) || typeof value['id'] !== 'string' || typeof value['type'] !== 'string') throw new Error(`not a session message: ${JSON.stringify(value).slice(0, 200)}`);
  return value as SessionMessage;
}

/** `GET /session/:id/message`, the whole list (the classic API does not page by default). */
export async function classicMessages(baseUrl: string, sessionId: string): Promise<ClassicMessage[]> {
  return expectArray(await requestJson(baseUrl, 'GET', `/session/${sessionId}/message`), 'classic messages').map(asClassicMessage);
}

/** `GET /api/session/:id/message` in creation order, following the cursor through every page. */
export async function v2Messages(baseUrl: string, sessionId: string, pageSize = 50): Promise<SessionMessage[]> {
  const all: SessionMessage[] = [];
  const seen = new Set<string>();
  let query = `order=asc&limit=${pageSize}`;
  for (let page = 0; page < 1000; page++) {
    const answer = await requestJson(baseUrl, 'GET', `/api/session/${sessionId}/message?${query}`);
    const items = expectArray(expectData(answer, 'v2 messages'), 'v2 messages').map(asSessionMessage);
    const fresh = items.filter((m) => !seen.has(m.id));
    for (const m of fresh) {
      seen.add(m.id);
      all.push(m);
    }
    const cursor = isObject(answer) && isObject(answer['cursor']) ? answer['cursor']['next'] : undefined;
    // The cursor is offered even on the last page: an empty or short page ends the list.
    if (typeof cursor !== 'string' || items.length < pageSize || fresh.length === 0) break;
    query = `cursor=${encodeURIComponent(cursor)}&limit=${pageSize}`;
  }
  return all;
}

/** Both APIs' view of one session: the classic list and the newer one. */
export async function apiMessages(baseUrl: string, sessionId: string): Promise<{ classic: ClassicMessage[]; v2: SessionMessage[] }> {
  const [classic, v2] = await Promise.all([classicMessages(baseUrl, sessionId), v2Messages(baseUrl, sessionId)]);
  return { classic, v2 };
}

/**
 * Sessions as each API lists them. The classic `GET /session` lists the server's directory (its
 * project) unless `directory` is given; the newer `GET /api/session` lists every project.
 */
export async function listSessions(baseUrl: string, options: { directory?: string } = {}): Promise<{ classic: ClassicSessionInfo[]; v2: SessionV2Info[] }> {
  const dir = options.directory === undefined ? '' : `?directory=${encodeURIComponent(options.directory)}`;
  const classic = expectArray(await requestJson(baseUrl, 'GET', `/session${dir}`), 'classic sessions') as ClassicSessionInfo[];
  const v2: SessionV2Info[] = [];
  let query = 'limit=100';
  for (let page = 0; page < 1000; page++) {
    const answer = await requestJson(baseUrl, 'GET', `/api/session?${query}`);
    const items = expectArray(expectData(answer, 'v2 sessions'), 'v2 sessions') as SessionV2Info[];
    const fresh = items.filter((s) => !v2.some((known) => known.id === s.id));
    v2.push(...fresh);
    const cursor = isObject(answer) && isObject(answer['cursor']) ? answer['cursor']['next'] : undefined;
    if (typeof cursor !== 'string' || items.length < 100 || fresh.length === 0) break;
    query = `cursor=${encodeURIComponent(cursor)}&limit=100`;
  }
  return { classic, v2 };
}

export async function createSessionV2(baseUrl: string, body: JsonObject = {}): Promise<SessionV2Info> {
  return expectData(await requestJson(baseUrl, 'POST', '/api/session', body), 'create session') as SessionV2Info;
}

export async function promptV2(baseUrl: string, sessionId: string, prompt: PromptInput): Promise<SessionInputAdmitted> {
  return expectData(await requestJson(baseUrl, 'POST', `/api/session/${sessionId}/prompt`, { prompt }), 'prompt') as SessionInputAdmitted;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until the newer API's session has answered its last prompt: `POST /api/session/:id/wait`
 * answers 503 ("not available yet") in 1.18.33, so this polls for a finished assistant message.
 */
export async function waitIdleV2(baseUrl: string, sessionId: string, timeoutMs = 60_000): Promise<SessionMessage[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const messages = await v2Messages(baseUrl, sessionId);
    const last = messages[messages.length - 1];
    const finish = last?.['finish'];
    if (last !== undefined && last.type === 'assistant' && (finish === 'stop' || finish === 'error' || finish === 'length')) return messages;
    if (Date.now() > deadline) throw new Error(`session ${sessionId} still busy after ${timeoutMs} ms (last: ${JSON.stringify(last)?.slice(0, 200)})`);
    await sleep(150);
  }
}

export async function createSessionClassic(baseUrl: string, body: JsonObject = {}): Promise<ClassicSessionInfo> {
  return (await requestJson(baseUrl, 'POST', '/session', body)) as ClassicSessionInfo;
}

/** `POST /session/:id/message`: answers when the assistant has finished. */
export async function promptClassic(baseUrl: string, sessionId: string, parts: ClassicPartInput[]): Promise<ClassicMessage> {
  return asClassicMessage(await requestJson(baseUrl, 'POST', `/session/${sessionId}/message`, { parts }));
}
