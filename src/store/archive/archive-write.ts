/**
 * Sessions into an archive file: a JSON array of OpenCode export objects (src/core/archive-format.ts),
 * written from a stream of session items. Message and part objects are each row's own JSON bytes
 * behind their ids, so a restore gets exactly what was stored; a digest of every object is kept
 * per session for the read-back verification.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  ARCHIVE_FORMAT,
  EXTRA_KEY,
  idPrefix,
  isWellFormedJson,
  MESSAGE_ID_KEYS,
  PART_ID_KEYS,
  TABLES_KEY,
  wrapRowJson,
  wrapRowJsonChunks,
  type MessageExtras,
  type SessionExtras,
} from '../../core/archive-format.js';
import { SkError } from '../../core/errors.js';
import { toSessionInfo, type SessionRow } from '../../core/opencode-format.js';
import { encodeTableRowPieces } from '../../core/table-row.js';
import { isSyncIterable, rowId, type SessionItem, type SessionItems, type TableCounts } from '../session-items.js';
import { ArchiveSink, loadSessionDigests, SessionDigest, type ArchivedSessionSummary } from './archive-sink.js';
import { compareSummaries, verifyArchive } from './archive-read.js';
import { canVerifyBehind, VerifyBehind } from './verify-behind.js';
import { canWriteSecondHalf, SecondHalf } from './second-half.js';
import { abortable } from './thread-outcome.js';
import { ARCHIVE_EXPORT, type SessionReader } from '../reader.js';

export interface ArchiveWriteResult {
  path: string;
  sessions: ArchivedSessionSummary[];
  /** Uncompressed bytes written. */
  bytes: number;
  /** The peak V8 heap of the thread that verified behind the writer, when one did. */
  verifierHeapPeak?: number;
  /** Sessions a second thread read and wrote, when one did, and its peak V8 heap. */
  secondHalfSessions?: number;
  secondHalfHeapPeak?: number;
}

/**
 * An archive verified behind its writer only once its file holds this much: a thread's start-up
 * costs more than reading a small archive again afterwards.
 */
const VERIFY_BEHIND_FROM_BYTES = 64 * 1024 * 1024;

/**
 * A second exporter starts once this much is written and the rest looks at least four times as
 * much: its start-up (modules, a connection) costs about what it saves on a smaller archive.
 */
const SECOND_HALF_AFTER_BYTES = 32 * 1024 * 1024;
/**
 * The part of the sessions left that this thread keeps once a second exporter starts. Half: what
 * remains to read back after the seal is shared by both threads (splitPoint), so neither
 * exporter should finish long before the other.
 */
const FIRST_THREAD_SHARE = 0.5;
/** UTF-16 units past which an encoded row given as a string is made a Buffer once, not encoded into each staging buffer. */
const LONG_ROW_TEXT = 4096;
/** What comes between two sessions of an archive, the halves' too. */
const SESSION_SEPARATOR = ',\n';
/**
 * Where, from the first half's end, the second half's check starts: at the separator before the
 * session nearest the segment's middle (`ends` are the segment's bytes after each session), or
 * before the segment itself when it holds one session.
 */
function splitPoint(ends: readonly number[], segmentBytes: number, separatorBytes: number): number {
  let best = 0;
  for (const end of ends.slice(0, -1)) if (Math.abs(end - segmentBytes / 2) < Math.abs(best - segmentBytes / 2)) best = end;
  return best === 0 ? 0 : separatorBytes + best;
}

/** Fewer sessions left than this stay on one thread. */
const SECOND_HALF_FROM_SESSIONS = 16;

/** The items' sessions, in the order they come, in a SQLite file another thread may read too. */
export interface SecondHalfSource {
  db: string;
  ids: readonly string[];
  /** Bytes written before a second thread may start (default 32 MB); for tests. */
  afterBytes?: number;
}

/**
 * The items to archive `ids` from `reader` into `path`, and for a SQLite file the source
 * writeArchive may hand the second half of a large archive's rest to another thread from. A
 * gzipped archive is read on one thread: its members are cut where the writes fall, and a
 * copied-in segment would cut them elsewhere.
 */
export function archiveSource(reader: Pick<SessionReader, 'kind' | 'location' | 'exportSessions'>, ids: readonly string[], path: string): { items: SessionItems; secondHalf?: SecondHalfSource } {
  // Rows come encoded by the store only into a plain file: a gzipped archive's members are cut where
  // the writes fall, and a row written whole rather than piece by piece would cut them elsewhere.
  const gzip = path.endsWith('.gz');
  const items = reader.exportSessions(ids, gzip ? {} : ARCHIVE_EXPORT);
  if (reader.kind !== 'sqlite' || gzip || !canWriteSecondHalf()) return { items };
  return { items, secondHalf: { db: reader.location, ids } };
}

/**
 * `archive`: our own members beside the export fields, so a restore is exact; `export`: only
 * OpenCode's export shape (`{info, messages}`), which `opencode import` reads.
 */
type Shape = 'archive' | 'export';

/** Turns items into archive text, one session object at a time. */
export class ArchiveSerializer {
  readonly sessions: ArchivedSessionSummary[] = [];
  private digest = new SessionDigest();
  private sessionId = '';
  private headerCounts: TableCounts = {};
  private messageOpen = false;
  private messagesOpen = false;
  private firstMessage = true;
  private firstPart = true;
  /** The table whose rows are being written, or null before the first. */
  private table: string | null = null;
  private firstRow = true;
  /** The message whose parts' ids after their own are `partIdsAfterId` (`"sessionID":…,"messageID":…,`). */
  private partIdsOf: string | null = null;
  private partIdsAfterId = '';

  constructor(
    private sink: ArchiveSink,
    private readonly shape: Shape = 'archive',
  ) {}

  /** Writes the next session into another file (one file per session). */
  switchTo(sink: ArchiveSink): void {
    this.sink = sink;
    this.sessions.length = 0;
  }

  /** Sessions written so far are separate documents, not an array: no separator before the next. */
  private get separator(): string {
    return this.shape === 'archive' && this.sessions.length > 0 ? SESSION_SEPARATOR : '';
  }

  async take(item: SessionItem): Promise<void> {
    const sink = this.sink;
    switch (item.kind) {
      case 'session': {
        const { session, project, todos, share, diff, trimmed } = item.header;
        this.sessionId = rowId(session);
        this.digest = new SessionDigest();
        this.partIdsOf = null;
        this.headerCounts = { todo: todos.length, session_share: share ? 1 : 0 };
        this.firstMessage = true;
        this.messagesOpen = true;
        this.table = null;
        const info = JSON.stringify(toSessionInfo(session as unknown as SessionRow));
        if (this.shape === 'export') {
          this.digest.beginExtras('sessionInfo');
          this.digest.updateText(info);
          await sink.write('{"info":', info, ',"messages":[');
          return;
        }
        const extras: Omit<SessionExtras, 'diff'> = { format: ARCHIVE_FORMAT, project, session, todos, share, ...(trimmed ? { trimmed } : {}) };
        const extrasHead = JSON.stringify(extras).slice(0, -1);
        const diffJson = diff && isWellFormedJson(diff) ? diff : 'null';
        // Digested as the reader meets them: the extras object (its diff inside), then the info.
        this.digest.beginExtras('sessionExtras');
        for (const piece of [extrasHead, ',"diff":', diffJson, '}']) {
          if (typeof piece === 'string') this.digest.updateText(piece);
          else this.digest.update(piece);
        }
        this.digest.beginExtras('sessionInfo');
        this.digest.updateText(info);
        await sink.write(this.separator, `{${JSON.stringify(EXTRA_KEY)}:`, extrasHead, ',"diff":', diffJson, '},"info":', info, ',"messages":[');
        return;
      }
      case 'message': {
        await this.closeMessage();
        const { message } = item;
        const messageExtras: MessageExtras = { time: [message.timeCreated, message.timeUpdated], parts: item.partTimes };
        const prefix = idPrefix([message.id, this.sessionId], MESSAGE_ID_KEYS);
        let head = '{"info":';
        if (this.shape !== 'export') {
          const extrasJson = JSON.stringify(messageExtras);
          this.digest.beginExtras('messageExtras');
          this.digest.updateText(extrasJson);
          head = `{${JSON.stringify(EXTRA_KEY)}:${extrasJson},"info":`;
        }
        this.digest.begin('message');
        await sink.write(this.firstMessage ? '' : ',', head);
        await this.writeDigested(Buffer.isBuffer(message.data) ? wrapRowJson(prefix, message.data, message.jsonValid) : wrapRowJsonChunks(prefix, message.data));
        await sink.write(',"parts":[');
        this.firstMessage = false;
        this.messageOpen = true;
        this.firstPart = true;
        return;
      }
      case 'part': {
        const { part } = item;
        this.digest.begin('part');
        if (!this.firstPart) await sink.write(',');
        const data = part.data;
        if (Buffer.isBuffer(data) && part.jsonValid === true && data[0] === 0x7b && data[1] !== 0x7d) {
          // wrapRowJson's bytes for a known-valid object, without its Buffers: the ids' text goes into the digest's and the sink's staging as it is.
          if (this.partIdsOf !== part.messageId) {
            this.partIdsOf = part.messageId;
            this.partIdsAfterId = `${idPrefix([this.sessionId, part.messageId], PART_ID_KEYS.slice(1)).slice(1)},`;
          }
          const ids = `{"id":${JSON.stringify(part.id)},${this.partIdsAfterId}`;
          this.digest.updateText(ids);
          const body = data.subarray(1);
          this.digest.update(body);
          // Two writes, as writeDigested makes: a gzipped archive's members are cut where the writes fall.
          const writingIds = sink.write(ids);
          if (writingIds) await writingIds;
          const writing = sink.write(body);
          if (writing) await writing;
          this.firstPart = false;
          return;
        }
        const prefix = idPrefix([part.id, this.sessionId, part.messageId], PART_ID_KEYS);
        // A large value goes through in chunks: hashed and written as it is read, never whole.
        await this.writeDigested(Buffer.isBuffer(part.data) ? wrapRowJson(prefix, part.data, part.jsonValid) : wrapRowJsonChunks(prefix, part.data));
        this.firstPart = false;
        return;
      }
      case 'rows':
      case 'encodedRows': {
        if (this.messagesOpen) await this.closeMessages();
        // OpenCode's export shape has no place for them; the archive keeps them.
        if (this.shape === 'export') return;
        if (this.table !== item.table) {
          await sink.write(this.table === null ? `,${JSON.stringify(TABLES_KEY)}:[` : ']},', `{"table":${JSON.stringify(item.table)},"rows":[`);
          this.table = item.table;
          this.firstRow = true;
        }
        if (item.kind === 'encodedRows') {
          for (const given of item.rows) {
            // A long string is encoded once, for the digest and the file both.
            const row = typeof given === 'string' && given.length > LONG_ROW_TEXT ? Buffer.from(given) : given;
            this.digest.beginRow(item.table);
            if (typeof row === 'string') this.digest.updateText(row);
            else this.digest.update(row);
            const writing = this.firstRow ? sink.write(row) : sink.write(',', row);
            if (writing) await writing;
            this.firstRow = false;
          }
          return;
        }
        for (const [i, row] of item.rows.entries()) {
          this.digest.beginRow(item.table);
          if (!this.firstRow) await sink.write(',');
          await this.writeDigested(encodeTableRowPieces(row, item.jsonValid?.[i]));
          this.firstRow = false;
        }
        return;
      }
      case 'end': {
        await this.closeMessages();
        if (this.table !== null) await sink.write(']}]');
        await sink.write('}');
        const summary = this.digest.finish(this.sessionId, this.headerCounts);
        // What was written must be what the store sent: a row lost on the way stops here.
        for (const [table, rows] of Object.entries(item.counts)) {
          // OpenCode's export shape carries messages and parts only.
          if (this.shape === 'export' && table !== 'message' && table !== 'part') continue;
          if ((summary.counts[table] ?? 0) !== rows) throw new SkError('archive', `session ${this.sessionId}: the store sent ${rows} ${table} rows, ${summary.counts[table] ?? 0} were written`);
        }
        this.sessions.push(summary);
        return;
      }
    }
  }

  /** Writes pieces of one archived object, each into the session's digest on its way. */
  private async writeDigested(pieces: Iterable<Buffer>): Promise<void> {
    for (const piece of pieces) {
      this.digest.update(piece);
      // Most pieces only join the staging buffer: no await (a microtask each) unless a write is under way.
      const writing = this.sink.write(piece);
      if (writing) await writing;
    }
  }

  /** Ends the session's messages array (before its other tables, or its end). */
  private async closeMessages(): Promise<void> {
    await this.closeMessage();
    if (!this.messagesOpen) return;
    await this.sink.write(']');
    this.messagesOpen = false;
  }

  private async closeMessage(): Promise<void> {
    if (!this.messageOpen) return;
    await this.sink.write(']}');
    this.messageOpen = false;
  }
}

/**
 * A pause for the event loop every 50 ms: a loop of resolved promises runs only microtasks, so a
 * Ctrl-C (or a request to the utility process) would otherwise wait for the whole archive.
 */
function eventLoopTurns(): () => Promise<void> | undefined {
  let last = performance.now();
  return () => {
    const now = performance.now();
    if (now - last < 50) return undefined;
    last = now;
    return new Promise((resolve) => setImmediate(resolve));
  };
}

export interface ArchiveWriteOptions {
  /**
   * Read the file back and check every session's counts and digest before it takes its name, so
   * an archive under its name has always been verified and an interrupted check leaves nothing.
   */
  verify?: boolean;
  /**
   * Runs once the sessions are written, before verification (with the file's temporary path); it
   * may change the file (a test's damage), so the whole verification then waits for it.
   */
  beforeVerify?: (tempPath: string) => void | Promise<void>;
  /** Runs once the sessions are written and sealed, while the verification finishes; must not change the file. */
  afterWrite?: (tempPath: string) => void;
  /**
   * false: verify only after the writing, on this thread; else an archive is verified behind its
   * writer, on another, once it holds `fromBytes` (default 64 MB).
   */
  verifyBehind?: boolean | { fromBytes: number };
  /** The verifying thread's module, for tests of a thread that fails. */
  verifyBehindWorker?: URL;
  /** Where another thread may read the second half of a large archive's rest from, meanwhile (see archiveSource). */
  secondHalf?: SecondHalfSource;
  /** After each session written: how many so far and the uncompressed bytes written. */
  onSession?: (sessions: number, bytes: number) => void;
  /** After each session read back by the verification. */
  onVerified?: (sessions: number) => void;
  /** Aborted: stops before the next session; the temporary file is removed, nothing takes the name. */
  signal?: AbortSignal;
}

/** Writes the sessions of `items` to `path` as one JSON array, atomically (`.gz` when the name ends so). */
export async function writeArchive(items: SessionItems, path: string, options: ArchiveWriteOptions = {}): Promise<ArchiveWriteResult> {
  await loadSessionDigests();
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const sink = new ArchiveSink(path);
  const serializer = new ArchiveSerializer(sink);
  let behind: VerifyBehind | null = null;
  // Sessions read back by the thread behind the writer and, when it verifies the second half, by the second exporter.
  const verified = { first: 0, second: 0 };
  const reportVerified = (): void => options.onVerified?.(verified.first + verified.second);
  if (options.verify && !options.beforeVerify && options.verifyBehind !== false && (options.verifyBehindWorker || canVerifyBehind())) {
    const from = typeof options.verifyBehind === 'object' ? options.verifyBehind.fromBytes : VERIFY_BEHIND_FROM_BYTES;
    const onFirstRead = (n: number): void => {
      verified.first = n;
      reportVerified();
    };
    sink.onFileBytes = (bytes) => {
      if (!behind && bytes >= from) behind = new VerifyBehind(sink.tempPath, sink.compressed, path, onFirstRead, options.verifyBehindWorker);
      behind?.reportWritten(bytes);
    };
  }
  let verifierHeapPeak: number | undefined;
  let secondHalfSessions: number | undefined;
  let secondHalfHeapPeak: number | undefined;
  let second: SecondHalf | null = null;
  try {
    // Progress counts both halves until the second is copied in (its bytes are then the sink's).
    let copied = false;
    const report = (): void => options.onSession?.(serializer.sessions.length + (copied ? 0 : (second?.sessions ?? 0)), sink.bytes + (copied ? 0 : (second?.bytes ?? 0)));
    /** The first session the second thread writes: this thread stops before it. */
    let stopAt: string | null = null;
    let firstHalf = 0;
    const source = options.secondHalf;
    const maybeSplit = (): void => {
      const done = serializer.sessions.length;
      if (!source || second || done === 0 || sink.bytes < (source.afterBytes ?? SECOND_HALF_AFTER_BYTES)) return;
      const rest = source.ids.length - done;
      if (rest < SECOND_HALF_FROM_SESSIONS || (sink.bytes / done) * rest < 4 * (source.afterBytes ?? SECOND_HALF_AFTER_BYTES)) return;
      // The items must be the source's sessions in its order, or the halves would overlap.
      if (serializer.sessions[done - 1]?.id !== source.ids[done - 1]) throw new SkError('internal', `archive ${path}: the sessions do not come in the order given`);
      firstHalf = done + Math.ceil(rest * FIRST_THREAD_SHARE);
      stopAt = source.ids[firstHalf] ?? null;
      second = new SecondHalf(source.db, source.ids.slice(firstHalf), path, report);
    };
    await sink.write('[');
    const take = async (item: SessionItem): Promise<void> => {
      if (item.kind === 'session') options.signal?.throwIfAborted();
      await serializer.take(item);
      if (item.kind !== 'end') return;
      if (source) maybeSplit();
      if (options.onSession || options.signal) report();
    };
    const startsSecondHalf = (item: SessionItem): boolean => stopAt !== null && item.kind === 'session' && rowId(item.header.session) === stopAt;
    // SQLite's items come synchronously: a plain loop spares a microtask per row.
    if (isSyncIterable(items)) {
      const turn = eventLoopTurns();
      for (const item of items) {
        if (startsSecondHalf(item)) break;
        await take(item);
        await turn();
      }
    } else {
      for await (const item of items) {
        if (startsSecondHalf(item)) break;
        await take(item);
      }
    }
    const other = second as SecondHalf | null; // set by maybeSplit
    /**
     * Where the second exporter starts reading the archive back (a separator before one of its
     * sessions), once it is sealed, and the thread behind the writer stops.
     */
    let joinedAt: number | null = null;
    if (other) {
      if (serializer.sessions.length !== firstHalf) throw new SkError('internal', `archive ${path}: ${serializer.sessions.length} sessions came before the second half, ${firstHalf} were expected`);
      const verifierNow = behind as VerifyBehind | null;
      const finished = await other.finished(options.signal);
      if (finished.sessions.length > 0 && verifierNow && !sink.compressed) {
        // Both threads read about half of what comes after the writing: the one behind the writer
        // reads on into the second half, up to the session boundary nearest its middle. Said
        // before a byte of the second half is written.
        joinedAt = sink.bytes + splitPoint(finished.ends, finished.bytes, SESSION_SEPARATOR.length);
        verifierNow.reportEnd(joinedAt);
      }
      const done = await other.copyInto(sink, SESSION_SEPARATOR, options.signal);
      // Every session of the second half, in its order, or a delete after this archive would take one it lacks.
      const wanted = (source as SecondHalfSource).ids.slice(firstHalf);
      if (done.sessions.length !== wanted.length || done.sessions.some((s, i) => s.id !== wanted[i])) {
        throw new SkError('internal', `archive ${path}: the second half holds ${done.sessions.length} sessions, ${wanted.length} were given to it`);
      }
      secondHalfSessions = done.sessions.length;
      secondHalfHeapPeak = done.heapPeak;
      serializer.sessions.push(...done.sessions);
      copied = true;
      report();
    }
    await sink.write(']\n');
    await sink.seal();
    const verifier = behind as VerifyBehind | null; // set by the sink's callback
    if (options.verify && verifier) {
      options.afterWrite?.(sink.tempPath);
      verifier.reportSealed();
      if (other && joinedAt !== null) {
        const secondRead = other.verify(sink.tempPath, joinedAt, SESSION_SEPARATOR, (n) => {
          verified.second = n;
          reportVerified();
        });
        const [first, rest] = await Promise.all([verifier.found(options.signal), abortable(secondRead, options.signal)]);
        // The second thread reports its progress now and then: the last count is the whole half.
        verified.first = first.length;
        verified.second = rest.found.length;
        reportVerified();
        // Each half read whole: as many sessions as were written, in the two halves' order.
        const found = [...first, ...rest.found];
        if (found.length !== serializer.sessions.length) throw new SkError('archive', `archive ${path} failed verification: ${found.length} sessions read back, ${serializer.sessions.length} written`);
        compareSummaries(path, found, serializer.sessions);
        secondHalfHeapPeak = Math.max(secondHalfHeapPeak ?? 0, rest.heapPeak);
      } else compareSummaries(path, await verifier.found(options.signal), serializer.sessions);
      verifierHeapPeak = verifier.heapPeak;
    } else if (options.verify) {
      options.afterWrite?.(sink.tempPath);
      await options.beforeVerify?.(sink.tempPath);
      await verifyArchive(sink.tempPath, serializer.sessions, {
        gzip: sink.compressed,
        name: path,
        onSessionRead: (n) => {
          options.signal?.throwIfAborted();
          options.onVerified?.(n);
        },
      });
    }
    sink.publish();
  } catch (error) {
    sink.abort();
    if (options.signal?.aborted && error === options.signal.reason) throw error;
    throw error instanceof SkError ? error : new SkError('archive', `cannot write the archive ${path}: ${(error as Error).message}`);
  } finally {
    await (second as SecondHalf | null)?.stop();
    await (behind as VerifyBehind | null)?.stop();
  }
  return {
    path,
    sessions: serializer.sessions,
    bytes: sink.bytes,
    ...(verifierHeapPeak === undefined ? {} : { verifierHeapPeak }),
    ...(secondHalfSessions === undefined ? {} : { secondHalfSessions, secondHalfHeapPeak }),
  };
}

/**
 * One file per session in OpenCode's export shape (`<dir>/<sessionID>.json`, what `opencode
 * import` reads), each written atomically and mode 0600. Returns the files with their digests.
 */
export async function writeExportFiles(items: SessionItems, dir: string, force: boolean, options: Pick<ArchiveWriteOptions, 'verify'> = {}): Promise<ArchiveWriteResult[]> {
  await loadSessionDigests();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const written: ArchiveWriteResult[] = [];
  let sink: ArchiveSink | null = null;
  let serializer: ArchiveSerializer | null = null;
  const take = async (item: SessionItem): Promise<void> => {
    if (item.kind === 'session') {
      const path = join(dir, `${rowId(item.header.session)}.json`);
      if (!force && existsSync(path)) throw new SkError('usage', `${path} exists (add --force to replace it)`);
      sink = new ArchiveSink(path);
      if (serializer) serializer.switchTo(sink);
      else serializer = new ArchiveSerializer(sink, 'export');
    }
    if (!serializer || !sink) return;
    await serializer.take(item);
    if (item.kind === 'end') {
      const done: ArchiveSink = sink;
      await done.write('\n');
      await done.seal();
      if (options.verify) await verifyArchive(done.tempPath, serializer.sessions, { gzip: done.compressed, name: done.path });
      done.publish();
      written.push({ path: done.path, sessions: [...serializer.sessions], bytes: done.bytes });
      sink = null;
    }
  };
  try {
    if (isSyncIterable(items)) for (const item of items) await take(item);
    else for await (const item of items) await take(item);
  } catch (error) {
    (sink as ArchiveSink | null)?.abort();
    throw error instanceof SkError ? error : new SkError('archive', `cannot write ${dir}: ${(error as Error).message}`);
  }
  return written;
}
