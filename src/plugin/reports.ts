/**
 * The reports background checks leave in `$XDG_DATA_HOME/session-keeper/plugin/reports/`, and
 * taking them for showing: a report is claimed by renaming it (two OpenCodes starting together
 * never show one twice), validated, and kept in `delivered/` (the last few) once shown. A report
 * whose OpenCode exited before the check ended waits there for the next start.
 */
import { readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { dataHome } from '../core/paths.js';
import type { PluginReport } from '../core/plugin-report.js';

/** A finished check's report (`<epoch ms>-<pid>-<n>.json`), written whole by the CLI. */
const REPORT_NAME = /^\d{13}-\d+-\d+\.json$/;
const KEEP_DELIVERED = 10;

export interface ReportFolders {
  root: string;
  reports: string;
  delivered: string;
}

export function reportFolders(env: Record<string, string | undefined> = process.env): ReportFolders {
  const root = join(dataHome(env), 'session-keeper', 'plugin');
  return { root, reports: join(root, 'reports'), delivered: join(root, 'delivered') };
}

let sequence = 0;

/** A new report's id: sorts by time, unique per process. */
export function newReportId(): string {
  sequence += 1;
  return `${Date.now()}-${process.pid}-${sequence}`;
}

export type Taken = { id: string; report: PluginReport } | { id: string; unreadable: string };

/** Claims and reads every finished report, oldest first; each is moved to `delivered/`. */
export async function takeReports(folders: ReportFolders): Promise<Taken[]> {
  let names: string[];
  try {
    names = readdirSync(folders.reports).filter((n) => REPORT_NAME.test(n)).sort();
  } catch {
    return [];
  }
  if (names.length === 0) return [];
  // Loaded only when there is something to read: OpenCode's start does not pay for zod.
  const { pluginReportSchema } = await import('../core/plugin-report.js');
  const taken: Taken[] = [];
  for (const name of names) {
    const id = name.slice(0, -'.json'.length);
    const claimed = join(folders.reports, `${id}.claimed-${process.pid}`);
    try {
      renameSync(join(folders.reports, name), claimed);
    } catch {
      continue; // another OpenCode took it
    }
    try {
      const parsed = pluginReportSchema.safeParse(JSON.parse(readFileSync(claimed, 'utf8')));
      taken.push(parsed.success ? { id, report: parsed.data } : { id, unreadable: `report ${name} is not one this version reads` });
    } catch (error) {
      taken.push({ id, unreadable: `report ${name} could not be read: ${(error as Error).message}` });
    }
    try {
      renameSync(claimed, join(folders.delivered, name));
      rmSync(join(folders.reports, `${id}.log`), { force: true });
    } catch {
      rmSync(claimed, { force: true });
    }
  }
  pruneDelivered(folders);
  return taken;
}

function pruneDelivered(folders: ReportFolders): void {
  try {
    const names = readdirSync(folders.delivered).filter((n) => REPORT_NAME.test(n)).sort();
    for (const name of names.slice(0, Math.max(0, names.length - KEEP_DELIVERED))) rmSync(join(folders.delivered, name), { force: true });
  } catch {
    // nothing delivered yet
  }
}

/** The last line the check wrote to its stderr (its one-line reason), when it left no report. */
export function lastErrorLine(folders: ReportFolders, id: string): string | null {
  try {
    const lines = readFileSync(join(folders.reports, `${id}.log`), 'utf8').trim().split('\n').filter(Boolean);
    return lines.at(-1) ?? null;
  } catch {
    return null;
  }
}
