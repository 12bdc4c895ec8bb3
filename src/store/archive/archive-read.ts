/**
 * Archive files read back as a stream (gunzipped when the name ends in .gz): for verification
 * against what was written, and as session items for a restore. Nothing here holds a whole
 * archive in memory; a part is collected whole only when a restore asks for its bytes.
 */
import { randomUUID } from 'node:crypto';
import { closeSync, createReadStream, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import {
  describeArchiveIssue,
  exportInfoSchema,
  EXTRA_KEY,
  idPrefix,
  MESSAGE_ID_KEYS,
  messageExtrasSchema,
  PART_ID_KEYS,
  RAW_KEY,
  sessionExtrasSchema,
  TABLES_KEY,
  unwrapRowJson,
  type MessageExtras,
  type SessionExtras,
} from '../../core/archive-format.js';
import { JsonStringDecoder } from '../../core/json-string-decode.js';
import { decodeTableRow, decodeTableRowPieces, type RowPiece } from '../../core/table-row.js';
import { SkError } from '../../core/errors.js';
import { JsonStreamScanner, type PathItem } from '../../core/json-stream.js';
import { ChunkedValue, wholePayload, type Row, type SessionHeader, type SessionItem, type TableCounts } from '../session-items.js';
import { trackTempFile, untrackTempFile } from '../temp-files.js';
import { loadSessionDigests, SessionDigest, type ArchivedSessionSummary } from './archive-sink.js';

/** What the scan of an archive reports, in file order. */
type ArchiveEvent =
  | { kind: 'session'; index: number; extras: SessionExtras | null; info: Record<string, unknown> | null }
  | { kind: 'message'; extras: MessageExtras | null; raw: Buffer }
  | { kind: 'largeMessage'; extras: MessageExtras | null; spill: SpilledValue }
  | { kind: 'part'; raw: Buffer }
  | { kind: 'largePart'; spill: SpilledValue }
  | { kind: 'largeRow'; table: string; spill: SpilledValue }
  | { kind: 'row'; table: string; raw: Buffer }
  | { kind: 'sessionEnd'; summary: ArchivedSessionSummary };

type Slot = 'sessionExtras' | 'sessionInfo' | 'messageExtras' | 'messageInfo' | 'part' | 'tableName' | 'row' | null;

function slotOf(path: readonly PathItem[]): Slot {
  if (path.length === 2 && path[1] === EXTRA_KEY) return 'sessionExtras';
  if (path.length === 2 && path[1] === 'info') return 'sessionInfo';
  if (path.length === 4 && path[1] === 'messages' && path[3] === EXTRA_KEY) return 'messageExtras';
  if (path.length === 4 && path[1] === 'messages' && path[3] === 'info') return 'messageInfo';
  if (path.length === 5 && path[1] === 'messages' && path[3] === 'parts') return 'part';
  if (path.length === 4 && path[1] === TABLES_KEY && path[3] === 'table') return 'tableName';
  if (path.length === 5 && path[1] === TABLES_KEY && path[3] === 'rows') return 'row';
  return null;
}

/** A message, part or row at least this big is spilled to a file of ours as it streams by, never collected whole. */
export const SPILL_BYTES = 8 * 1024 * 1024;
const READ_CHUNK_BYTES = 1024 * 1024;

/**
 * A spill file that cannot be written (the temp dir's disk or quota full) as one line saying where
 * and how much, not as an unreadable archive: the archive is fine, the room is not.
 */
function spillError(error: unknown, path: string, written: number, needed: number): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  if (code !== 'ENOSPC' && code !== 'EDQUOT' && code !== 'EFBIG') return error;
  return new SkError(
    'disk-full',
    `disk full while writing ${path}, a temporary copy of a large value of the archive (${written} bytes written, at least ${needed} needed): free space there or set TMPDIR to a folder with room; the session it belongs to was not restored`,
  );
}

/** Bytes of one archived object in a temporary file (mode 0600), removed when its session is done. */
class SpilledValue {
  readonly path: string;
  private fd: number | undefined;
  bytes = 0;

  constructor(dir: string) {
    this.path = join(dir, `${randomUUID()}.part`);
    try {
      this.fd = openSync(this.path, 'wx+', 0o600);
    } catch (error) {
      throw spillError(error, this.path, 0, 1);
    }
    trackTempFile(this.path);
  }

  append(bytes: Buffer): void {
    let written = 0;
    try {
      while (written < bytes.length) written += writeSync(this.fd as number, bytes, written, bytes.length - written, this.bytes + written);
    } catch (error) {
      throw spillError(error, this.path, this.bytes + written, this.bytes + bytes.length);
    }
    this.bytes += bytes.length;
  }

  /** Replaces one byte (the object's separator before the row text becomes the row's `{`). */
  put(byte: number, at: number): void {
    writeSync(this.fd as number, Buffer.from([byte]), 0, 1, at);
  }

  read(offset: number, length: number): Buffer {
    const bytes = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const n = readSync(this.fd as number, bytes, got, length - got, offset + got);
      if (n === 0) break;
      got += n;
    }
    return bytes.subarray(0, got);
  }

  *chunks(offset: number): Generator<Buffer> {
    for (const piece of this.pieces(offset)) yield piece.bytes;
  }

  /** The bytes from `offset` on, in chunks that say where they lie. */
  *pieces(offset: number): Generator<RowPiece> {
    for (let at = offset; at < this.bytes; at += READ_CHUNK_BYTES) yield { offset: at, bytes: this.read(at, Math.min(READ_CHUNK_BYTES, this.bytes - at)) };
  }

  remove(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    rmSync(this.path, { force: true });
    untrackTempFile(this.path);
  }
}

/** Rows archived with the session row itself. */
function headerCounts(extras: SessionExtras | null): TableCounts {
  return extras ? { todo: extras.todos?.length ?? 0, session_share: extras.share ? 1 : 0 } : {};
}

/**
 * Scans an archive. Sessions are reported when their first message (or their end) arrives, so
 * extras and info are known before any of their rows. With `parts: false` the bytes of messages,
 * their extras, parts and rows are only digested, never collected (verification).
 */
async function* scanArchive(file: string, options: { parts: boolean; spillDir?: string } & ArchiveFileOptions): AsyncGenerator<ArchiveEvent> {
  // What messages call the file: its final name while a temporary copy is being checked.
  const path = options.name ?? file;
  await loadSessionDigests();
  const ready: ArchiveEvent[] = [];
  let sessionIndex = -1;
  let extras: SessionExtras | null = null;
  let info: Record<string, unknown> | null = null;
  let announced = false;
  let digest = new SessionDigest();
  let messageExtras: MessageExtras | null = null;
  let table = '';
  let collected: Buffer[] = [];
  let collectedBytes = 0;
  let spill: SpilledValue | null = null;

  const announce = (): void => {
    if (announced || sessionIndex < 0) return;
    announced = true;
    ready.push({ kind: 'session', index: sessionIndex, extras, info });
  };
  const closeSession = (): void => {
    if (sessionIndex < 0) return;
    announce();
    const id = String(extras?.session['id'] ?? info?.['id'] ?? '');
    if (!id) throw new SkError('archive', `${path}: session #${sessionIndex} has no id`);
    ready.push({ kind: 'sessionEnd', summary: digest.finish(id, headerCounts(extras)) });
  };

  const scanner = new JsonStreamScanner({
    select: (p) => {
      if (p.length === 1) {
        closeSession();
        sessionIndex = p[0] as number;
        extras = null;
        info = null;
        announced = false;
        digest = new SessionDigest();
        return false;
      }
      const slot = slotOf(p);
      if (slot === 'messageInfo' || slot === 'messageExtras' || slot === 'part' || slot === 'tableName' || slot === 'row') announce();
      if (slot === 'sessionExtras' || slot === 'sessionInfo' || slot === 'messageExtras') digest.beginExtras(slot);
      if (slot === 'messageInfo') digest.begin('message');
      if (slot === 'part') digest.begin('part');
      if (slot === 'row') digest.beginRow(table);
      collected = [];
      collectedBytes = 0;
      return slot !== null;
    },
    chunk: (p, bytes) => {
      const slot = slotOf(p);
      if (slot === 'messageInfo' || slot === 'part' || slot === 'row' || slot === 'sessionExtras' || slot === 'sessionInfo' || slot === 'messageExtras') digest.update(bytes);
      // Verification needs only the digest of rows and of a message's extras; a restore spills the large ones.
      const row = slot === 'part' || slot === 'row' || slot === 'messageInfo';
      if (options.parts || (!row && slot !== 'messageExtras')) {
        if (spill) spill.append(bytes);
        else if (row && options.spillDir && collectedBytes + bytes.length > SPILL_BYTES) {
          spill = new SpilledValue(options.spillDir);
          for (const piece of collected) spill.append(piece);
          spill.append(bytes);
          collected = [];
        } else {
          collected.push(Buffer.from(bytes));
          collectedBytes += bytes.length;
        }
      }
    },
    end: (p) => {
      const slot = slotOf(p);
      // The pieces are copies of their own: one piece is the value as it is (most extras, every small row).
      const raw = (): Buffer => (collected.length === 1 ? (collected[0] as Buffer) : Buffer.concat(collected));
      const parse = <T>(): T => {
        try {
          return JSON.parse(raw().toString('utf8')) as T;
        } catch {
          throw new SkError('archive', `${path}: unreadable ${String(slot)} in session #${sessionIndex}`);
        }
      };
      if (slot === 'sessionExtras') extras = parse<SessionExtras>();
      else if (slot === 'sessionInfo') info = parse<Record<string, unknown>>();
      // Their times are for a restore: verifying, the scanner has checked their syntax and the digest their bytes.
      else if (slot === 'messageExtras') messageExtras = options.parts ? parse<MessageExtras>() : null;
      else if (slot === 'messageInfo' && spill) {
        ready.push({ kind: 'largeMessage', extras: messageExtras, spill });
        spill = null;
        messageExtras = null;
      } else if (slot === 'messageInfo') {
        ready.push({ kind: 'message', extras: messageExtras, raw: raw() });
        messageExtras = null;
      } else if (slot === 'part' && spill) {
        ready.push({ kind: 'largePart', spill });
        spill = null;
      } else if (slot === 'part' && options.parts) ready.push({ kind: 'part', raw: raw() });
      else if (slot === 'tableName') table = parse<string>();
      else if (slot === 'row' && spill) {
        ready.push({ kind: 'largeRow', table, spill });
        spill = null;
      } else if (slot === 'row' && options.parts) ready.push({ kind: 'row', table, raw: raw() });
      collected = [];
    },
  });

  const gzipped = options.gzip ?? file.endsWith('.gz');
  // A plain source is scanned as it comes, each chunk done with before the next is asked for.
  const input = options.source && !gzipped ? null : options.source ? Readable.from(options.source, { objectMode: false }) : createReadStream(file, { highWaterMark: 1024 * 1024 });
  const stream: AsyncIterable<unknown> = input === null ? (options.source as AsyncIterable<Buffer>) : gzipped ? input.pipe(createGunzip()) : input;
  // A file of one session (`opencode export` output, `archive --split`) reads as an array of one.
  let single: boolean | null = null;
  try {
    for await (const chunk of stream) {
      const bytes = chunk as Buffer;
      if (single === null) {
        const first = bytes.find((b) => b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09);
        if (first !== undefined) {
          single = first === 0x7b;
          if (single) scanner.write(Buffer.from('['));
        }
      }
      scanner.write(bytes);
      yield* ready.splice(0);
    }
    if (single) scanner.write(Buffer.from(']'));
    scanner.finish();
    closeSession();
    yield* ready.splice(0);
  } catch (error) {
    if (error instanceof SkError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new SkError('not-found', `no archive at ${path}`);
    throw new SkError('archive', `${path} is not a readable archive (${(error as Error).message})`);
  } finally {
    input?.destroy();
    (spill as SpilledValue | null)?.remove(); // set by the scanner's callbacks
  }
}

export interface ArchiveFileOptions {
  /** Whether the file is gzipped, for a file whose name does not say (a temporary one). */
  gzip?: boolean;
  /** The name the file will have, for messages about a temporary file. */
  name?: string;
  /** After each session read back, with how many were read so far (progress; may throw to stop). */
  onSessionRead?: (sessions: number) => void;
  /** The file's bytes as they are read (a file still being written, read behind its writer); else the file is read. */
  source?: AsyncIterable<Buffer>;
}

/** Every session of an archive with its counts and digest, read back from the file. */
export async function readArchiveSummaries(path: string, options: ArchiveFileOptions = {}): Promise<ArchivedSessionSummary[]> {
  const found: ArchivedSessionSummary[] = [];
  for await (const event of scanArchive(path, { parts: false, gzip: options.gzip, name: options.name, source: options.source })) {
    if (event.kind !== 'sessionEnd') continue;
    found.push(event.summary);
    options.onSessionRead?.(found.length);
  }
  return found;
}

/**
 * Reads an archive back and checks it against what was written: every session present with the
 * same message and part counts and the same digest. Throws SkError('archive') on any difference.
 */
export async function verifyArchive(file: string, expected?: readonly ArchivedSessionSummary[], options: ArchiveFileOptions = {}): Promise<ArchivedSessionSummary[]> {
  const found = await readArchiveSummaries(file, options);
  if (expected) compareSummaries(options.name ?? file, found, expected);
  return found;
}

/** Throws SkError('archive') unless every expected session was found with the same counts and digest. */
export function compareSummaries(path: string, found: readonly ArchivedSessionSummary[], expected: readonly ArchivedSessionSummary[]): void {
  const byId = new Map(found.map((s) => [s.id, s]));
  for (const want of expected) {
    const got = byId.get(want.id);
    if (!got) throw new SkError('archive', `archive ${path} failed verification: session ${want.id} is missing`);
    for (const name of new Set([...Object.keys(want.counts), ...Object.keys(got.counts)])) {
      const [have, wanted] = [got.counts[name] ?? 0, want.counts[name] ?? 0];
      if (have !== wanted) throw new SkError('archive', `archive ${path} failed verification: session ${want.id} has ${have} ${name} rows, expected ${wanted}`);
    }
    if (got.digest !== want.digest) throw new SkError('archive', `archive ${path} failed verification: session ${want.id} differs`);
  }
}

/** The session row an `opencode export` object implies, for archives made without our extras. */
function rowFromInfo(info: Record<string, unknown>): Row {
  // Every value below is a JSON primitive of the export object (or null), as the row stores it.
  return rowFromInfoValues(info) as Row;
}

function rowFromInfoValues(info: Record<string, unknown>): Record<string, unknown> {
  const time = (info['time'] ?? {}) as Record<string, number | undefined>;
  const summary = info['summary'] as Record<string, unknown> | undefined;
  const tokens = (info['tokens'] ?? {}) as Record<string, unknown>;
  const cache = (tokens['cache'] ?? {}) as Record<string, unknown>;
  const json = (v: unknown): string | null => (v === undefined ? null : JSON.stringify(v));
  return {
    id: info['id'],
    project_id: info['projectID'] ?? 'global',
    workspace_id: info['workspaceID'] ?? null,
    parent_id: info['parentID'] ?? null,
    slug: info['slug'] ?? String(info['id']),
    directory: info['directory'] ?? '/',
    path: info['path'] ?? null,
    title: info['title'] ?? '',
    version: info['version'] ?? '',
    share_url: (info['share'] as { url?: string } | undefined)?.url ?? null,
    summary_additions: summary?.['additions'] ?? null,
    summary_deletions: summary?.['deletions'] ?? null,
    summary_files: summary?.['files'] ?? null,
    summary_diffs: json(summary?.['diffs']),
    cost: info['cost'] ?? 0,
    tokens_input: tokens['input'] ?? 0,
    tokens_output: tokens['output'] ?? 0,
    tokens_reasoning: tokens['reasoning'] ?? 0,
    tokens_cache_read: cache['read'] ?? 0,
    tokens_cache_write: cache['write'] ?? 0,
    revert: json(info['revert']),
    permission: json(info['permission']),
    agent: info['agent'] ?? null,
    model: json(info['model']),
    time_created: time['created'] ?? 0,
    time_updated: time['updated'] ?? time['created'] ?? 0,
    time_compacting: time['compacting'] ?? null,
    time_archived: time['archived'] ?? null,
  };
}

/** A wrapped object's own row text, from our prefix or (foreign archives) by dropping the id keys. */
function rowText(prefixFor: (id: string) => string, raw: Buffer, dropKeys: readonly string[]): { id: string; data: Buffer } {
  const id = /^\{"id":("(?:[^"\\]|\\.)*")/.exec(raw.toString('utf8', 0, 300))?.[1];
  const parsedId = id ? (JSON.parse(id) as string) : undefined;
  if (parsedId) {
    const exact = unwrapRowJson(prefixFor(parsedId), raw);
    if (exact) return { id: parsedId, data: exact };
  }
  // Not written by us: parse (bounded by V8's limit) and drop the ids the export form added.
  const object = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
  const rowId = String(object['id'] ?? '');
  for (const key of dropKeys) delete object[key];
  return { id: rowId, data: Buffer.from(JSON.stringify(object)) };
}

/**
 * rowText for a message or part spilled to a file: our own prefix is checked on the file's head
 * and the row text handed on in chunks from the file, its `{` written over the separator before
 * it; a row kept as a string (not JSON) is decoded chunk by chunk into a file `newSpill` gives;
 * an archive made by something else is read back whole.
 */
function spilledRowText(prefixFor: (id: string) => string, spill: SpilledValue, dropKeys: readonly string[], newSpill: () => SpilledValue, where: string): { id: string; data: ChunkedValue | Buffer } {
  const headText = spill.read(0, 4096);
  const id = /^\{"id":("(?:[^"\\]|\\.)*")/.exec(headText.toString('utf8', 0, 300))?.[1];
  const parsedId = id ? (JSON.parse(id) as string) : undefined;
  if (parsedId) {
    const head = Buffer.from(`${prefixFor(parsedId)},`);
    const raw = Buffer.from(`${JSON.stringify(RAW_KEY)}:`);
    const ours = headText.length > head.length && headText.compare(head, 0, head.length, 0, head.length) === 0;
    const kept = ours && headText.compare(raw, 0, raw.length, head.length, head.length + raw.length) === 0;
    if (ours && !kept) {
      const offset = head.length - 1;
      spill.put(0x7b, offset);
      return { id: parsedId, data: new ChunkedValue(spill.bytes - offset, () => spill.chunks(offset), { path: spill.path, offset }) };
    }
    const body = head.length + raw.length;
    if (kept && headText[body] === 0x22 && spill.read(spill.bytes - 2, 2).toString('latin1') === '"}') {
      return { id: parsedId, data: decodeSpilledString(spill, body + 1, spill.bytes - 2, newSpill, `${where} ${parsedId}`) };
    }
  }
  return rowText(prefixFor, spill.read(0, spill.bytes), dropKeys);
}

/** The bytes a JSON string body (from `from` to `to` in a spill file) stands for, decoded into a new spill file. */
function decodeSpilledString(spill: SpilledValue, from: number, to: number, newSpill: () => SpilledValue, where: string): ChunkedValue {
  const out = newSpill();
  const decoder = new JsonStringDecoder(where);
  for (const piece of spill.pieces(from)) {
    out.append(decoder.write(piece.bytes.subarray(0, Math.max(0, to - piece.offset))));
    if (piece.offset + piece.bytes.length >= to) break;
  }
  out.append(decoder.end());
  return new ChunkedValue(out.bytes, () => out.chunks(0), { path: out.path, offset: 0 });
}

/** The header of an archived session: our extras when present, else what the export object implies. */
function headerOf(path: string, index: number, extras: SessionExtras | null, info: Record<string, unknown> | null): SessionHeader {
  let trimmed: SessionHeader['trimmed'];
  const where = (what: string): string => `${path}: session #${index}${typeof info?.['id'] === 'string' ? ` (${info['id']})` : ''}: ${what}`;
  if (extras) {
    const checked = sessionExtrasSchema.safeParse(extras);
    if (!checked.success) throw new SkError('archive', where(`sessionKeeper.${describeArchiveIssue(checked.error)}`));
    trimmed = checked.data.trimmed;
  } else {
    const checked = exportInfoSchema.safeParse(info ?? undefined);
    if (!checked.success) throw new SkError('archive', where(info ? `info.${describeArchiveIssue(checked.error)}` : 'neither info nor sessionKeeper'));
  }
  const session = (extras?.session as Row | undefined) ?? rowFromInfo(info as Record<string, unknown>);
  const diff = extras?.diff;
  return {
    session,
    project: (extras?.project as Row | null | undefined) ?? null,
    todos: (extras?.todos as Row[] | undefined) ?? [],
    share: (extras?.share as Row | null | undefined) ?? null,
    diff: diff === undefined || diff === null ? null : Buffer.from(JSON.stringify(diff)),
    ...(trimmed ? { trimmed } : {}),
  };
}

/** An archive's sessions as items, for a restore: each row's own bytes, with the times it had. */
export async function* archiveItems(path: string): AsyncGenerator<SessionItem> {
  let sessionId = '';
  let messageId = '';
  let messageTimes: MessageExtras | null = null;
  let partIndex = 0;
  // Rows of one table are handed on in batches, as the store exports them.
  let rows: { table: string; rows: Row[]; bytes: number } | null = null;
  const flushRows = (): SessionItem | null => {
    const batch = rows;
    rows = null;
    return batch && batch.rows.length > 0 ? { kind: 'rows', table: batch.table, rows: batch.rows } : null;
  };
  // Large parts wait in files of ours until their session has been taken whole.
  let spillDir: string;
  try {
    spillDir = mkdtempSync(join(tmpdir(), 'session-keeper-restore-'));
  } catch (error) {
    throw spillError(error, join(tmpdir(), 'session-keeper-restore-*'), 0, 1);
  }
  let spilled: SpilledValue[] = [];
  /** A file for a value decoded on its way (a string or base64 payload), removed with its session's spills. */
  const newSpill = (): SpilledValue => {
    const spill = new SpilledValue(spillDir);
    spilled.push(spill);
    return spill;
  };
  try {
    for await (const event of scanArchive(path, { parts: true, spillDir })) {
      if (event.kind !== 'row') {
        const pending = flushRows();
        if (pending) yield pending;
      }
      switch (event.kind) {
        case 'session': {
          const header = headerOf(path, event.index, event.extras, event.info);
          sessionId = header.session['id'] as string;
          yield { kind: 'session', header };
          break;
        }
        case 'message':
        case 'largeMessage': {
          if (event.extras && !messageExtrasSchema.safeParse(event.extras).success) throw new SkError('archive', `${path}: session ${sessionId}: a message whose sessionKeeper times are not [created, updated]`);
          const prefixFor = (id: string): string => idPrefix([id, sessionId], MESSAGE_ID_KEYS);
          if (event.kind === 'largeMessage') spilled.push(event.spill);
          const { id, data } =
            event.kind === 'message' ? rowText(prefixFor, event.raw, MESSAGE_ID_KEYS) : spilledRowText(prefixFor, event.spill, MESSAGE_ID_KEYS, newSpill, `${path}: session ${sessionId}: message`);
          if (!id) throw new SkError('archive', `${path}: session ${sessionId}: a message without an id`);
          messageId = id;
          messageTimes = event.extras;
          partIndex = 0;
          // Without our extras the time is in the row (an archive made by something else, read whole).
          const created = event.extras?.time[0] ?? Number((JSON.parse(wholePayload(data).toString('utf8')) as { time?: { created?: number } }).time?.created ?? 0);
          yield {
            kind: 'message',
            message: { id, sessionId, timeCreated: created, timeUpdated: event.extras?.time[1] ?? created, data },
            partTimes: event.extras?.parts ?? [],
          };
          break;
        }
        case 'part': {
          const { id, data } = rowText((id) => idPrefix([id, sessionId, messageId], PART_ID_KEYS), event.raw, PART_ID_KEYS);
          if (!id) throw new SkError('archive', `${path}: session ${sessionId}: a part without an id`);
          const times = messageTimes?.parts[partIndex] ?? messageTimes?.time ?? [0, 0];
          partIndex++;
          yield { kind: 'part', part: { id, sessionId, messageId, timeCreated: times[0], timeUpdated: times[1], data } };
          break;
        }
        case 'largePart': {
          spilled.push(event.spill);
          const { id, data } = spilledRowText((id) => idPrefix([id, sessionId, messageId], PART_ID_KEYS), event.spill, PART_ID_KEYS, newSpill, `${path}: session ${sessionId}: part`);
          if (!id) throw new SkError('archive', `${path}: session ${sessionId}: a part without an id`);
          const times = messageTimes?.parts[partIndex] ?? messageTimes?.time ?? [0, 0];
          partIndex++;
          yield { kind: 'part', part: { id, sessionId, messageId, timeCreated: times[0], timeUpdated: times[1], data } };
          break;
        }
        case 'largeRow': {
          // Its large values stay in the spill file; the rest of the row is small.
          spilled.push(event.spill);
          const spill = event.spill;
          const row = decodeTableRowPieces(spill.pieces(0), `${path}: session ${sessionId}, ${event.table}`, {
            path: spill.path,
            reread: (from) => spill.pieces(from),
            largeBytes: SPILL_BYTES,
            spill: newSpill,
          });
          if (rows && rows.table !== event.table) {
            const pending = flushRows();
            if (pending) yield pending;
          }
          rows ??= { table: event.table, rows: [], bytes: 0 };
          rows.rows.push(row);
          break;
        }
        case 'row': {
          if (rows && (rows.table !== event.table || rows.rows.length >= 500 || rows.bytes >= 8 * 1024 * 1024)) {
            const pending = flushRows();
            if (pending) yield pending;
          }
          rows ??= { table: event.table, rows: [], bytes: 0 };
          rows.rows.push(decodeTableRow(event.raw, `${path}: session ${sessionId}, ${event.table}`));
          rows.bytes += event.raw.length;
          break;
        }
        case 'sessionEnd':
          yield { kind: 'end', sessionId: event.summary.id, counts: event.summary.counts };
          for (const spill of spilled) spill.remove();
          spilled = [];
          break;
      }
    }
  } finally {
    for (const spill of spilled) spill.remove();
    rmSync(spillDir, { recursive: true, force: true });
  }
}
