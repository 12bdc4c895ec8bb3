/**
 * The check the OpenCode plugin starts in the background, under Node, each time OpenCode starts
 * (and, warnings only, when a session goes idle): `enforceAtStartup` beside a running OpenCode
 * (OpenCode is the writer, so deletes are short transactions and the VACUUM waits), turned into
 * the report the plugin shows. The report is written to a temporary name and renamed, mode 0600:
 * a report under its name is always whole.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { SessionConfig } from '../core/config.js';
import { fixFor, PLUGIN_REPORT_VERSION, type PluginReport } from '../core/plugin-report.js';
import { openReader } from '../store/open-store.js';
import { enforceAtStartup } from './retention.js';

export interface PluginCheckOptions {
  db: string;
  config: SessionConfig;
  cacheDir: string;
  /** `warnings`: the size check alone (a session went idle); `startup`: retention and compaction too. */
  mode: 'startup' | 'warnings';
  statePath?: string;
  now?: number;
}

/** Runs the check; throws (one line) when it cannot, having changed nothing unsafe. */
export async function pluginCheck(options: PluginCheckOptions): Promise<Extract<PluginReport, { ok: true }>> {
  const notes: string[] = [];
  const config: SessionConfig =
    options.mode === 'warnings'
      ? { ...options.config, maxSizeMB: undefined, maxAgeDays: undefined, maxSessions: undefined, compactEvents: false }
      : options.config;
  const report = await enforceAtStartup({
    db: options.db,
    config,
    cacheDir: options.cacheDir,
    ...(options.statePath === undefined ? {} : { statePath: options.statePath }),
    ...(options.now === undefined ? {} : { now: options.now }),
    // OpenCode has the file open and writes to it: only steps safe beside a writer.
    besideWriter: true,
    log: (line) => notes.push(line),
  });
  const warningLines = new Set(report.newWarnings.map((w) => w.message));
  let liveBytes: number | null = null;
  if (report.newWarnings.length > 0) {
    const reader = await openReader(options.db);
    try {
      liveBytes = (await reader.storeSize()).liveBytes;
    } finally {
      await reader.close();
    }
  }
  return {
    version: PLUGIN_REPORT_VERSION,
    ok: true,
    mode: options.mode,
    db: options.db,
    bytes: report.bytes,
    newWarnings: report.newWarnings.map((w) => ({ ...w, fix: fixFor({ thresholdMB: w.thresholdMB, fileBytes: report.bytes, liveBytes }) })),
    notes: notes.filter((line) => !warningLines.has(line)),
    evicted: report.retention?.evicted.length ?? 0,
    archive: report.retention?.archive ?? null,
    elapsedMs: report.elapsedMs,
  };
}

/** Writes `report` to `path` whole or not at all: a temporary name, fsynced, renamed, mode 0600. */
export function writePluginReport(path: string, report: PluginReport): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const temp = `${path}.${process.pid}.tmp`;
  const fd = openSync(temp, 'w', 0o600);
  try {
    writeSync(fd, `${JSON.stringify(report)}\n`);
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    rmSync(temp, { force: true });
    throw error;
  }
  closeSync(fd);
  renameSync(temp, path);
}
