/**
 * Where backends meet: a location (a SQLite file path, or a connection string) becomes a reader
 * or a writer. Everything above the store floor opens stores here and sees only the interfaces;
 * server drivers load only when a connection string asks for them.
 */
import { statSync } from 'node:fs';
import { formatBytes } from '../core/bytes.js';
import type { CleanPlan, CleanResult, WriterPresence } from '../core/data-folder.js';
import { isConnectionString, type StorageKind } from '../core/storage.js';
import type { ChangeMarks, SessionReader } from './reader.js';
import type { MirrorTarget } from './mirror-target.js';
import { SkError } from '../core/errors.js';
import { SqliteReader } from './sqlite/sqlite-reader.js';
export { fileBytes } from './sqlite/connection.js';
import type { SessionWriter } from './writer.js';

export { isConnectionString };
/** The SQLite file and its WAL as the disk holds them (0 for what is missing). */

async function external(): Promise<typeof import('./external/external-store.js')['ExternalStore']> {
  return (await import('./external/external-store.js')).ExternalStore;
}

/** A reader for `location`; a server must already hold our schema. */
export async function openReader(location: string): Promise<SessionReader> {
  if (isConnectionString(location)) return (await external()).open(location);
  return SqliteReader.open(location);
}

/**
 * The SQLite file's reader, opened on this thread at once (a one-shot command, or a bad file failing
 * early). `mapped`: the file is read through a memory map, for a command that reads a bounded page.
 */
export function openFileReader(path: string, options: { mapped?: boolean } = {}): SessionReader {
  return SqliteReader.open(path, options.mapped ? { mapBytes: MAPPED_READ_BYTES } : {});
}

/** SQLite caps it at its build's SQLITE_MAX_MMAP_SIZE (2 GB here); only the pages a read touches become resident. */
const MAPPED_READ_BYTES = 2 ** 31;

export interface WriterOptions {
  /** SQLite: create the file in OpenCode's schema when it is missing. Servers always get our schema. */
  create?: boolean;
  /** Servers: a bulk copy (relaxed per-commit durability, one barrier at the end). */
  bulk?: boolean;
}

/** A writer for `location` (on a server, our schema is created or upgraded first). */
export async function openWriter(location: string, options: WriterOptions = {}): Promise<SessionWriter> {
  if (isConnectionString(location)) return (await external()).open(location, { create: true, bulk: options.bulk ?? false });
  // Loaded when first asked for: a reading command never loads the writer.
  const { SqliteWriter } = await import('./sqlite/sqlite-writer.js');
  return SqliteWriter.open(location, { create: options.create ?? false });
}

/**
 * The store a mirror writes into (a server: our schema created, or a newer one refused). Bulk
 * commits for a first sync's rows; every commit of the mirror's state is durable (`durableCommit`).
 */
export async function openMirrorTarget(location: string): Promise<MirrorTarget> {
  if (!isConnectionString(location)) throw new SkError('usage', `sync mirrors into a server: give a connection string (postgres://, mysql://, mariadb://, sqlserver://), not ${location}`);
  return (await external()).open(location, { create: true, bulk: true });
}

/** Refuses a connection string that no retry could make work (bad syntax, unknown scheme, no database), without connecting. */
export async function checkConnectionString(location: string): Promise<void> {
  const { parseConnectionString } = await import('./external/connection.js');
  try {
    await parseConnectionString(location);
  } catch (error) {
    throw error instanceof SkError ? new SkError('usage', error.message) : error;
  }
}

/**
 * The SQLite file's reader with its change marks, for the mirror (read-only: the mirror never writes
 * OpenCode's file). A small page cache: a first sync reads every page once, and a full 64 MB cache
 * would stay in the process's memory for as long as it follows the file.
 */
export function openMirrorSource(path: string): SessionReader & ChangeMarks {
  return SqliteReader.open(path, { cacheKb: 8_000 });
}

export interface LocationProbe {
  kind: StorageKind;
  /** The path, or the connection string with its password masked. */
  location: string;
  /** What was found there, in a few words. */
  detail: string;
}

/** Whether a location can be opened: a SQLite file is read (its sessions counted), a server connected to. */
export async function probeLocation(location: string): Promise<LocationProbe> {
  if (isConnectionString(location)) {
    const { connect } = await import('./external/connection.js');
    const opened = await connect(location, 1);
    await opened.db.destroy().catch(() => undefined);
    return { kind: opened.conn.kind, location: opened.conn.display, detail: `connected to ${opened.conn.display}` };
  }
  const reader = SqliteReader.open(location);
  try {
    const { rootSessions } = await reader.storeSize();
    return { kind: 'sqlite', location, detail: `SQLite file ${location} is readable: ${formatBytes(statSync(location).size)}, ${rootSessions} root sessions` };
  } finally {
    await reader.close();
  }
}

/** The data folder beside a SQLite file: who else has it open, and the clean-ups of what nothing references. */
// Loaded when first asked for, like the writer: `list` and `show` never walk the data folder.
export { refuseWhenLocked } from './sqlite/run-lock.js';

export async function detectWriters(...args: Parameters<typeof import('./sqlite/data-folder/writers.js')['detectWriters']>): Promise<WriterPresence> {
  return (await import('./sqlite/data-folder/writers.js')).detectWriters(...args);
}

export async function planFolderClean(...args: Parameters<typeof import('./sqlite/data-folder/clean.js')['planFolderClean']>): Promise<CleanPlan> {
  return (await import('./sqlite/data-folder/clean.js')).planFolderClean(...args);
}

export async function applyFolderClean(...args: Parameters<typeof import('./sqlite/data-folder/clean.js')['applyFolderClean']>): Promise<CleanResult> {
  return (await import('./sqlite/data-folder/clean.js')).applyFolderClean(...args);
}
