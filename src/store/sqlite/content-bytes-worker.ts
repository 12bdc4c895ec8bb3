/** The thread of `contentBytesAside` (content-bytes.ts): one sum on a read connection of its own. */
import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';
import { contentBytesOf, type ContentBytesData } from './content-bytes.js';

/** Pages are read once each: a small cache keeps the thread's memory small. */
const CACHE_KB = 2_000;

const data = workerData as ContentBytesData;
const db = new Database(data.path, { readonly: true, fileMustExist: true });
try {
  db.pragma(`cache_size = -${CACHE_KB}`);
  parentPort?.postMessage(contentBytesOf(db, data.ids));
} finally {
  db.close();
}
