/**
 * The one owner of `$XDG_DATA_HOME/session-keeper/state.json`: which size thresholds have warned
 * for each database (each warns once until the size drops below it again), and the oldest root
 * session remembered between startups. Written atomically (a temp file renamed), mode 0600.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { dataHome } from '../core/paths.js';

/** The oldest root session's times, remembered between startups; trusted for a day. */
export interface OldestRoot {
  created: number | null;
  updated: number | null;
  /** When this was read. */
  at: number;
}

interface StateFile {
  warned: Record<string, number[]>;
  oldest?: Record<string, OldestRoot>;
  /** The event log's mark when it was last compacted: startup compacts again only once it has grown. */
  compacted?: Record<string, number>;
}

export function defaultStatePath(env: Record<string, string | undefined> = process.env): string {
  return join(dataHome(env), 'session-keeper', 'state.json');
}

export class WarnState {
  private state: StateFile;
  private changed = false;

  private constructor(
    readonly path: string,
    state: StateFile,
  ) {
    this.state = state;
  }

  /** The state as saved; an unreadable or missing file is an empty state (nothing warned yet). */
  static load(path: string = defaultStatePath()): WarnState {
    try {
      const parsed = JSON.parse(readFileSync(path, 'utf8')) as StateFile;
      if (parsed && typeof parsed.warned === 'object' && parsed.warned !== null) return new WarnState(path, parsed);
    } catch {
      // no state yet
    }
    return new WarnState(path, { warned: {} });
  }

  private static key(db: string): string {
    return resolve(db);
  }

  warned(db: string): ReadonlySet<number> {
    return new Set(this.state.warned[WarnState.key(db)] ?? []);
  }

  /** Records the thresholds a database is over now; those not over any more will warn again. */
  setCrossed(db: string, thresholdsMB: readonly number[]): void {
    const key = WarnState.key(db);
    const next = [...thresholdsMB].sort((a, b) => a - b);
    const before = this.state.warned[key] ?? [];
    if (before.length !== next.length || before.some((v, i) => v !== next[i])) this.changed = true;
    this.state.warned[key] = next;
  }

  /** "Remind me later": every crossed threshold warns again at the next start. */
  forgetWarnings(db: string): void {
    const key = WarnState.key(db);
    if (!(key in this.state.warned)) return;
    delete this.state.warned[key];
    this.changed = true;
  }

  oldest(db: string): OldestRoot | undefined {
    return this.state.oldest?.[WarnState.key(db)];
  }

  setOldest(db: string, oldest: OldestRoot): void {
    this.state.oldest = { ...this.state.oldest, [WarnState.key(db)]: oldest };
    this.changed = true;
  }

  /** After evictions or a restore the remembered oldest root may be wrong: read it afresh next time. */
  forgetOldest(db: string): void {
    const key = WarnState.key(db);
    if (!this.state.oldest?.[key]) return;
    delete this.state.oldest[key];
    this.changed = true;
  }

  compactedAt(db: string): number | undefined {
    return this.state.compacted?.[WarnState.key(db)];
  }

  setCompacted(db: string, mark: number): void {
    this.state.compacted = { ...this.state.compacted, [WarnState.key(db)]: mark };
    this.changed = true;
  }

  /** Writes the file when something changed. */
  save(): void {
    if (!this.changed) return;
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    writeFileSync(`${this.path}.tmp`, JSON.stringify(this.state), { mode: 0o600 });
    renameSync(`${this.path}.tmp`, this.path);
    this.changed = false;
  }
}
