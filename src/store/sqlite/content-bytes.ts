/**
 * The progress total of a copy (bytes of message and part data of its sessions), on the caller's
 * connection or on a thread of its own: summing it reads every page of both tables, which a copy
 * can leave to the other core while it opens its target.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import { builtModule } from '../package-files.js';
import { statement } from './rows.js';

/** What the thread is given: the file and the sessions (all when null). */
export interface ContentBytesData {
  path: string;
  ids: readonly string[] | null;
}

/** Bytes of message and part data of `ids` (every row when null). */
export function contentBytesOf(db: Database.Database, ids: readonly string[] | null): number {
  const where = ids ? 'WHERE session_id IN (SELECT value FROM json_each(?))' : '';
  const args = ids ? [JSON.stringify(ids)] : [];
  const sum = (table: string): number => statement(db, `SELECT coalesce(sum(octet_length(data)), 0) FROM ${table} ${where}`).pluck().get(...args) as number;
  return sum('message') + sum('part');
}

const WORKER_FILE = builtModule('store/sqlite/content-bytes-worker.js');

/**
 * `contentBytesOf` on a thread with its own read connection; null where the thread's compiled file
 * is absent (sources run as TypeScript). A failed thread rejects: the caller sums it itself.
 */
export function contentBytesAside(data: ContentBytesData): Promise<number> | null {
  if (!existsSync(fileURLToPath(WORKER_FILE))) return null;
  const worker = new Worker(WORKER_FILE, { workerData: data });
  const answer = new Promise<number>((resolve, reject) => {
    worker.once('message', (bytes: unknown) => (typeof bytes === 'number' ? resolve(bytes) : reject(new TypeError('content bytes: not a number'))));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`content bytes: the thread exited (${code}) without an answer`)));
  });
  // The thread ends itself after its answer; it never keeps the process alive.
  worker.unref();
  return answer;
}
