/**
 * `storage/session_diff/<sessionID>.json` beside the database: OpenCode's per-session diffs,
 * which it never deletes itself. They leave and come back with their sessions.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Diff files larger than this stay on disk only (an archive holds each one in memory once). */
export const MAX_DIFF_FILE = 64 * 1024 * 1024;

export function diffFilePath(dbPath: string, sessionId: string): string {
  return join(dirname(dbPath), 'storage', 'session_diff', `${sessionId}.json`);
}

/** The session's diff file as written, or null when there is none (or it is too big to carry). */
export function readDiffFile(dbPath: string, sessionId: string): Buffer | null {
  const path = diffFilePath(dbPath, sessionId);
  if (!existsSync(path) || statSync(path).size > MAX_DIFF_FILE) return null;
  return readFileSync(path);
}

/** Writes a diff file back unless one is there already (atomically: a temp file renamed). */
export function restoreDiffFile(dbPath: string, sessionId: string, bytes: Buffer): void {
  const target = diffFilePath(dbPath, sessionId);
  if (existsSync(target)) return;
  mkdirSync(dirname(target), { recursive: true });
  writeFileSync(`${target}.tmp`, bytes, { mode: 0o600 });
  renameSync(`${target}.tmp`, target);
}

export function removeDiffFile(dbPath: string, sessionId: string): void {
  rmSync(diffFilePath(dbPath, sessionId), { force: true });
}
