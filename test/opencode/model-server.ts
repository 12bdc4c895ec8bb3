/**
 * A scripted OpenAI-compatible chat-completions server on 127.0.0.1, standing in for a model so
 * the real OpenCode binary can run offline. The last user message steers it:
 *   [[read PATH]]   call the `read` tool with that filePath
 *   [[bash CMD]]    call the `bash` tool with that command
 *   [[task PROMPT]] call the `task` tool (OpenCode starts a child session with PROMPT)
 *   [[write PATH]]  call the `write` tool with a few lines of content
 *   [[edit PATH]]   call the `edit` tool, replacing the first line the write tool wrote
 *   [[todo]]        call `todowrite` with two todos
 *   [[reason]]      stream `reasoning_content` deltas before the answer
 * A task's prompt may carry directives for the child session as {{verb arg}}.
 * Several directives in one prompt run one tool call per round trip, in order; once every tool
 * result is back (or when there is none) it streams a text answer in several deltas.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { appendFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';

export const MODEL_ID = 'scripted-1';
export const PROVIDER_ID = 'scripted';

/** One request as the server saw it, kept for debugging failed runs. */
export interface LoggedRequest {
  time: number;
  method: string;
  path: string;
  kind: 'models' | 'title' | 'summary' | 'tool-call' | 'text' | 'other';
  stream: boolean;
  lastUserText: string;
  tools: string[];
  /** The conversation's shape, e.g. `system user assistant+tool tool user`. */
  shape: string;
  reply: string;
}

export interface ModelServer {
  /** The value for the provider's `options.baseURL` (ends in /v1). */
  baseURL: string;
  port: number;
  requests: LoggedRequest[];
  close(): Promise<void>;
}

export interface ModelServerOptions {
  /** Append one JSON line per request here. */
  logFile?: string;
  /** Milliseconds between streamed deltas: OpenCode writes one update per delta it sees. */
  deltaDelayMs?: number;
  /** Sees every chat request body as parsed, e.g. to check what OpenCode sent. */
  onChatRequest?: (body: unknown) => void;
}

/** The parts of an OpenAI chat message this server reads. */
interface ChatMessage {
  role: string;
  content?: string | Array<{ type: string; text?: string }> | null;
  tool_calls?: Array<{ id: string; function: { name: string; arguments: string } }>;
  tool_call_id?: string;
}

interface ChatRequest {
  model?: string;
  stream?: boolean;
  messages?: ChatMessage[];
  tools?: Array<{ type: string; function: { name: string; parameters?: { properties?: Record<string, unknown> } } }>;
}

export interface ToolCall {
  name: string;
  args: Record<string, unknown>;
}

interface Reply {
  kind: LoggedRequest['kind'];
  reasoning?: string[];
  text?: string[];
  toolCall?: ToolCall;
}

const DIRECTIVE = /\[\[(read|bash|task|write|edit|todo|reason)(?:\s+([^\]]*))?\]\]/g;

function textOf(message: ChatMessage): string {
  const content = message.content;
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((c) => (c.type === 'text' ? (c.text ?? '') : '')).join('\n');
  return '';
}

/**
 * The tool a directive asks for, with arguments named as the offered tool's schema names them:
 * the classic tools take `filePath`, the newer session API's tools take `path`.
 */
export function toolCallFor(verb: string, argument: string, parameterNames: ReadonlySet<string> = new Set()): ToolCall | undefined {
  const pathKey = parameterNames.has('path') && !parameterNames.has('filePath') ? 'path' : 'filePath';
  const describe = parameterNames.size === 0 || parameterNames.has('description');
  switch (verb) {
    case 'read':
      return { name: 'read', args: { [pathKey]: argument } };
    case 'bash':
      return { name: 'bash', args: describe ? { command: argument, description: `Run ${argument.slice(0, 40)}` } : { command: argument } };
    case 'task':
      return {
        name: 'task',
        args: { description: 'Scripted subtask', prompt: argument.replace(/\{\{/g, '[[').replace(/\}\}/g, ']]') || 'Say hello from the subtask.', subagent_type: 'general' },
      };
    case 'write':
      return { name: 'write', args: { [pathKey]: argument, content: 'first line written by the model\nsecond line\nthird line\n' } };
    case 'edit':
      return { name: 'edit', args: { [pathKey]: argument, oldString: 'first line written by the model', newString: 'first line, edited by the model' } };
    case 'todo':
      return {
        name: 'todowrite',
        args: { todos: [{ content: 'Write the report', status: 'in_progress', priority: 'high' }, { content: 'Review the report', status: 'pending', priority: 'medium' }] },
      };
    default:
      return undefined;
  }
}

/** OpenCode sends a read tool's images and PDFs back as a user message of their own: not a prompt. */
function isPrompt(text: string): boolean {
  return text.trim() !== '' && !text.startsWith('Attached media from tool result');
}

function isTitleRequest(request: ChatRequest): boolean {
  // OpenCode's title agent sends a system prompt about titles and offers no tools.
  const system = (request.messages ?? []).filter((m) => m.role === 'system').map(textOf).join('\n');
  return (request.tools === undefined || request.tools.length === 0) && /title/i.test(system);
}

/** Compaction (`/summarize`) hands the model the conversation as text and asks for a summary. */
function isSummaryRequest(request: ChatRequest): boolean {
  const users = (request.messages ?? []).filter((m) => m.role === 'user').map(textOf);
  return users.some((t) => t.startsWith('Here is the conversation so far'));
}

const VERB_TOOL: Record<string, string> = { todo: 'todowrite' };

/** Decides what to answer from the conversation so far. */
export function planReply(request: ChatRequest): Reply {
  const messages = request.messages ?? [];
  if (isSummaryRequest(request)) {
    return { kind: 'summary', text: ['## Summary\n', 'The user asked for ', 'scripted work; ', 'it was done.'] };
  }
  if (isTitleRequest(request)) {
    const user = [...messages].reverse().find((m) => m.role === 'user');
    // Attached files arrive as synthetic "Called the Read tool ..." lines before the prompt.
    const prompt = (user ? textOf(user) : '').split('\n').filter((line) => !line.startsWith('Called the ') && !/read successfully$/.test(line)).join(' ');
    const words = prompt.replace(DIRECTIVE, ' ').replace(/<[^>]*>/g, ' ').replace(/[^\w\s-]/g, ' ').split(/\s+/).filter((w) => w !== '');
    return { kind: 'title', text: [`Scripted: ${words.slice(0, 4).join(' ') || 'session'}`] };
  }
  let lastUser = -1;
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i]?.role === 'user' && isPrompt(textOf(messages[i]!))) {
      lastUser = i;
      break;
    }
  }
  const userText = lastUser >= 0 ? textOf(messages[lastUser]!) : '';
  // Tool rounds already answered since that prompt decide which directive comes next.
  const roundsDone = messages.slice(lastUser + 1).filter((m) => m.role === 'assistant' && (m.tool_calls?.length ?? 0) > 0).length;
  const directives = [...userText.matchAll(DIRECTIVE)].map((m) => ({ verb: m[1] ?? '', argument: (m[2] ?? '').trim() }));
  const reasoning = directives.some((d) => d.verb === 'reason') && roundsDone === 0
    ? ['Thinking about ', 'the request, ', 'step by step.']
    : undefined;
  const toolDirectives = directives.filter((d) => d.verb !== 'reason');
  const offered = new Map((request.tools ?? []).map((t) => [t.function.name, new Set(Object.keys(t.function.parameters?.properties ?? {}))]));
  const next = toolDirectives[roundsDone];
  const parameterNames = next === undefined ? undefined : offered.get(VERB_TOOL[next.verb] ?? next.verb);
  if (next !== undefined && parameterNames !== undefined) {
    const call = toolCallFor(next.verb, next.argument, parameterNames);
    if (call !== undefined) return { kind: 'tool-call', reasoning, toolCall: call };
  }
  const answer = roundsDone > 0
    ? ['Done: ', `${roundsDone} tool call(s) `, 'finished ', 'as asked.']
    : ['Here is ', 'a scripted ', 'answer ', 'in several ', 'pieces.'];
  return { kind: 'text', reasoning, text: answer };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function streamReply(res: ServerResponse, reply: Reply, model: string, delayMs: number): Promise<void> {
  const id = `chatcmpl-${Date.now().toString(36)}`;
  const created = Math.floor(Date.now() / 1000);
  const send = (delta: Record<string, unknown>, finish: string | null = null): void => {
    res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`);
  };
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  send({ role: 'assistant', content: '' });
  for (const piece of reply.reasoning ?? []) {
    send({ reasoning_content: piece });
    await sleep(delayMs);
  }
  for (const piece of reply.text ?? []) {
    send({ content: piece });
    await sleep(delayMs);
  }
  if (reply.toolCall !== undefined) {
    const args = JSON.stringify(reply.toolCall.args);
    const half = Math.ceil(args.length / 2);
    send({ tool_calls: [{ index: 0, id: `call_${Date.now().toString(36)}`, type: 'function', function: { name: reply.toolCall.name, arguments: args.slice(0, half) } }] });
    await sleep(delayMs);
    send({ tool_calls: [{ index: 0, function: { arguments: args.slice(half) } }] });
  }
  send({}, reply.toolCall !== undefined ? 'tool_calls' : 'stop');
  res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [], usage: { prompt_tokens: 120, completion_tokens: 12, total_tokens: 132 } })}\n\n`);
  res.write('data: [DONE]\n\n');
  res.end();
}

function jsonReply(res: ServerResponse, reply: Reply, model: string): void {
  const message: Record<string, unknown> = { role: 'assistant', content: (reply.text ?? []).join('') || null };
  if (reply.reasoning !== undefined) message['reasoning_content'] = reply.reasoning.join('');
  if (reply.toolCall !== undefined) {
    message['tool_calls'] = [{ id: `call_${Date.now().toString(36)}`, type: 'function', function: { name: reply.toolCall.name, arguments: JSON.stringify(reply.toolCall.args) } }];
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({
    id: `chatcmpl-${Date.now().toString(36)}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{ index: 0, message, finish_reason: reply.toolCall !== undefined ? 'tool_calls' : 'stop' }],
    usage: { prompt_tokens: 120, completion_tokens: 12, total_tokens: 132 },
  }));
}

export async function startModelServer(options: ModelServerOptions = {}): Promise<ModelServer> {
  const requests: LoggedRequest[] = [];
  const delayMs = options.deltaDelayMs ?? 5;
  const log = (entry: LoggedRequest): void => {
    requests.push(entry);
    if (options.logFile !== undefined) appendFileSync(options.logFile, `${JSON.stringify(entry)}\n`);
  };
  const server = createServer((req, res) => {
    void (async () => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      if (req.method === 'GET' && path === '/v1/models') {
        log({ time: Date.now(), method: 'GET', path, kind: 'models', stream: false, lastUserText: '', tools: [], shape: '', reply: '' });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ object: 'list', data: [{ id: MODEL_ID, object: 'model', created: 0, owned_by: PROVIDER_ID }] }));
        return;
      }
      if (req.method === 'POST' && path === '/v1/chat/completions') {
        const body = JSON.parse(await readBody(req)) as ChatRequest;
        options.onChatRequest?.(body);
        const reply = planReply(body);
        const users = (body.messages ?? []).filter((m) => m.role === 'user');
        log({
          time: Date.now(), method: 'POST', path, kind: reply.kind, stream: body.stream === true,
          lastUserText: (users.length > 0 ? textOf(users[users.length - 1]!) : '').slice(0, 300),
          tools: (body.tools ?? []).map((t) => t.function.name),
          shape: (body.messages ?? []).map((m) => (m.tool_calls?.length ? `${m.role}+tool` : m.role)).join(' '),
          reply: reply.toolCall !== undefined ? `${reply.toolCall.name} ${JSON.stringify(reply.toolCall.args)}` : (reply.text ?? []).join(''),
        });
        if (body.stream === true) await streamReply(res, reply, body.model ?? MODEL_ID, delayMs);
        else jsonReply(res, reply, body.model ?? MODEL_ID);
        return;
      }
      log({ time: Date.now(), method: req.method ?? '?', path, kind: 'other', stream: false, lastUserText: '', tools: [], shape: '', reply: '404' });
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: `no route ${req.method} ${path}` } }));
    })().catch((error: unknown) => {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: String(error) } }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    port,
    requests,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
