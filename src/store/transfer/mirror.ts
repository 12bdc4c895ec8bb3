/**
 * The mirror's decisions, against the interfaces alone: which local sessions changed since this
 * source last mirrored them (change marks), and for each whether to write it, record that the
 * server already holds it, keep the server's newer copy, or report a conflict. Never guessed:
 * a version is written over the held one only when the held one is what this source last saw
 * (or no mirror owns it and ours is not older); when both sides changed since they last agreed,
 * the session is reported and left alone until it changes again.
 */
import { SkError } from '../../core/errors.js';
import type { MirrorBase, MirrorTarget } from '../mirror-target.js';
import { SERVER_EXPORT, type ChangeMarks, type SessionMark, type SessionReader } from '../reader.js';
import { isSyncIterable, type SessionItem } from '../session-items.js';

export type MirrorSource = SessionReader & ChangeMarks;

export type Verdict =
  /** written now, verified */
  | 'written'
  /** the server already held exactly this version */
  | 'same'
  /** the server holds a newer version written elsewhere: ours is older, theirs kept */
  | 'server-newer'
  /** both sides changed since they last agreed: reported, nothing written */
  | 'conflict'
  /** deleted locally before it was read (the server keeps its copy) */
  | 'gone';

export interface MirrorConflict {
  id: string;
  reason: string;
}

export interface SessionResult {
  id: string;
  verdict: Verdict;
  rows: number;
  bytes: number;
  conflict?: MirrorConflict;
}

export interface MirrorStatus {
  /** Local sessions whose current version the server holds (verified) for this source. */
  mirrored: number;
  /** Local sessions changed since their last mirrored version (not counting conflicts). */
  pending: number;
  conflicts: number;
  /** Local sessions whose newer copy on the server was kept. */
  serverNewer: number;
  sessions: number;
}

export class Mirror {
  /** Local marks at which a session was settled without a write (server newer, conflict): not looked at again until they change. */
  private readonly settled = new Map<string, { mark: string; verdict: 'server-newer' | 'conflict' }>();
  private marks = new Map<string, SessionMark>();

  private constructor(
    readonly source: MirrorSource,
    readonly target: MirrorTarget,
    readonly sourceId: string,
    private readonly bases: Map<string, MirrorBase>,
  ) {}

  /** Registers the source and loads what it mirrored before: a restarted mirror resumes where it was. */
  static async start(source: MirrorSource, target: MirrorTarget, sourceId: string, name: string): Promise<Mirror> {
    await target.registerSource(sourceId, name);
    return new Mirror(source, target, sourceId, await target.mirrorBases(sourceId));
  }

  /** Reads every session's mark: the local sessions changed since they were last mirrored, newest first. */
  async scan(): Promise<string[]> {
    this.marks = await this.source.sessionMarks();
    const pending: { id: string; updated: number }[] = [];
    for (const [id, local] of this.marks) {
      if (this.bases.get(id)?.mark === local.mark) continue;
      if (this.settled.get(id)?.mark === local.mark) continue;
      pending.push({ id, updated: local.updated });
    }
    // The newest first: what OpenCode is writing now reaches the server soonest.
    pending.sort((a, b) => b.updated - a.updated || (a.id < b.id ? -1 : 1));
    return pending.map((p) => p.id);
  }

  status(): MirrorStatus {
    let mirrored = 0;
    let conflicts = 0;
    let serverNewer = 0;
    for (const [id, local] of this.marks) {
      const settled = this.settled.get(id);
      if (this.bases.get(id)?.mark === local.mark) mirrored++;
      else if (settled?.mark === local.mark && settled.verdict === 'conflict') conflicts++;
      else if (settled?.mark === local.mark) serverNewer++;
    }
    return { mirrored, pending: this.marks.size - mirrored - conflicts - serverNewer, conflicts, serverNewer, sessions: this.marks.size };
  }

  /**
   * Splits pending sessions into those the server holds no finished copy of (a first sync's
   * pipelined path: nothing there to conflict with) and the rest (one transaction each).
   */
  async split(pending: readonly string[]): Promise<{ fresh: string[]; held: string[] }> {
    const versions = await this.target.heldVersions(pending);
    const fresh: string[] = [];
    const held: string[] = [];
    for (const id of pending) {
      const version = versions.get(id);
      (!version || version.digest === null ? fresh : held).push(id);
    }
    return { fresh, held };
  }

  /**
   * Mirrors sessions the server holds no finished copy of, pipelined (see `MirrorTarget.mirrorNewSessions`);
   * stops between two sessions when `signal` aborts. Returns the ids left undone (stopped, or deleted locally meanwhile: `gone`).
   */
  async mirrorNew(ids: readonly string[], onResult: (result: SessionResult) => void, signal?: AbortSignal): Promise<string[]> {
    const marks = new Map<string, string>();
    const done = new Set<string>();
    const source = this.source;
    async function* items(): AsyncGenerator<SessionItem> {
      // One stream (the source may read several sessions per transaction); restarted after a session deleted meanwhile.
      let remaining: readonly string[] = ids;
      while (remaining.length > 0) {
        if (signal?.aborted) return;
        let ended = 0;
        let inSession = false;
        try {
          const all = source.exportSessions(remaining, SERVER_EXPORT);
          const take = async (item: SessionItem): Promise<SessionItem> => {
            if (item.kind === 'session') inSession = true;
            if (item.kind === 'end') {
              // Read while the session's read transaction is still open: the mark of exactly what was sent.
              marks.set(item.sessionId, (await source.sessionMarks([item.sessionId])).get(item.sessionId)?.mark ?? '');
              ended++;
              inSession = false;
            }
            return item;
          };
          if (isSyncIterable(all)) {
            for (const item of all) {
              // Stops between two sessions, never inside one.
              if (item.kind === 'session' && signal?.aborted) return;
              yield await take(item);
            }
          } else {
            for await (const item of all) {
              if (item.kind === 'session' && signal?.aborted) return;
              yield await take(item);
            }
          }
          remaining = [];
        } catch (error) {
          // Deleted locally since the scan (before its first row was read): the server keeps what it has, the rest goes on.
          const missing = remaining[ended];
          if (inSession || missing === undefined || !(error instanceof SkError) || error.code !== 'not-found' || (await source.sessionMarks([missing])).has(missing)) throw error;
          done.add(missing);
          onResult({ id: missing, verdict: 'gone', rows: 0, bytes: 0 });
          remaining = remaining.slice(ended + 1);
        }
      }
    }
    await this.target.mirrorNewSessions(items(), {
      sourceId: this.sourceId,
      ids,
      markOf: (id) => marks.get(id),
      onSession: (id, outcome) => {
        this.bases.set(id, { updated: outcome.updated, mark: outcome.mark, digest: outcome.digest });
        this.settled.delete(id);
        marks.delete(id);
        done.add(id);
        onResult({ id, verdict: 'written', rows: outcome.rows, bytes: outcome.bytes });
      },
    });
    return ids.filter((id) => !done.has(id));
  }

  /** Mirrors one session (see the file's comment for the rules). */
  async mirrorOne(id: string): Promise<SessionResult> {
    for (let attempt = 0; ; attempt++) {
      const result = await this.decide(id);
      if (result !== 'moved') return result;
      // Another mirror wrote this session between our look and our write: look again.
      if (attempt >= 3) throw new SkError('locked', `session ${id} keeps changing on ${this.target.location}: another mirror is writing it`);
    }
  }

  private async decide(id: string): Promise<SessionResult | 'moved'> {
    const local = this.marks.get(id);
    const base = this.bases.get(id);
    const held = (await this.target.heldVersions([id])).get(id);
    const items = () => this.source.exportSessions([id], SERVER_EXPORT);
    const mark = async (): Promise<string> => (await this.source.sessionMarks([id])).get(id)?.mark ?? '';
    const write = async (expect: string | null): Promise<SessionResult | 'moved'> => {
      const outcome = await this.target.mirrorSession(items, { sourceId: this.sourceId, mark, expect });
      if (outcome.kind === 'moved') return 'moved';
      if (outcome.kind === 'same') return { id, verdict: 'same', rows: 0, bytes: 0 };
      this.bases.set(id, { updated: outcome.updated, mark: outcome.mark, digest: outcome.digest });
      this.settled.delete(id);
      return { id, verdict: 'written', rows: outcome.rows, bytes: outcome.bytes };
    };
    if (!local) return { id, verdict: 'gone', rows: 0, bytes: 0 };
    try {
      // No copy there, or an unfinished one: ours goes in.
      if (!held || held.digest === null) return await write(null);
      // The held copy is the one this source last sent or saw: a local change goes over it.
      if (base && held.digest === base.digest) {
        if (local.updated < held.updated) return this.conflict(id, local, `the local copy (updated ${local.updated}) is older than the server's (${held.updated}) although the server has not changed since this machine last mirrored it`);
        return await write(held.digest);
      }
      // Otherwise the two are compared: equal copies only need this source's base recorded.
      const ours = await this.target.digestOf(items());
      if (ours.digest === held.digest) {
        const agreed: MirrorBase = { updated: ours.updated, mark: local.mark, digest: ours.digest };
        await this.target.recordBase(this.sourceId, id, agreed);
        this.bases.set(id, agreed);
        this.settled.delete(id);
        return { id, verdict: 'same', rows: 0, bytes: 0 };
      }
      const ownedElsewhere = held.source !== null && held.source !== this.sourceId;
      if (!base && !ownedElsewhere) {
        // A copy no mirror owns (migrate, offload) or our own: the newer one stands.
        if (local.updated >= held.updated) return await write(held.digest);
        this.settled.set(id, { mark: local.mark, verdict: 'server-newer' });
        return { id, verdict: 'server-newer', rows: 0, bytes: 0 };
      }
      if (!base && local.updated < held.updated) {
        // An older copy of a session another machine mirrors (restored from it, say): theirs is kept.
        this.settled.set(id, { mark: local.mark, verdict: 'server-newer' });
        return { id, verdict: 'server-newer', rows: 0, bytes: 0 };
      }
      return this.conflict(
        id,
        local,
        base
          ? `changed here (updated ${local.updated}) and on the server (updated ${held.updated}${held.source ? ` by source ${held.source}` : ''}) since this machine last mirrored it`
          : `the server holds another version (updated ${held.updated}${held.source ? ` by source ${held.source}` : ''}) than this machine's newer one (updated ${local.updated})`,
      );
    } catch (error) {
      if (error instanceof SkError && error.code === 'not-found' && !(await this.source.sessionMarks([id])).has(id)) return { id, verdict: 'gone', rows: 0, bytes: 0 };
      throw error;
    }
  }

  private conflict(id: string, local: SessionMark, reason: string): SessionResult {
    this.settled.set(id, { mark: local.mark, verdict: 'conflict' });
    const conflict = { id, reason: `session ${id}: ${reason}; neither copy was changed` };
    return { id, verdict: 'conflict', rows: 0, bytes: 0, conflict };
  }

  /** The version this source last mirrored of a session, if any (retention asks before evicting). */
  baseOf(id: string): MirrorBase | undefined {
    return this.bases.get(id);
  }
}
