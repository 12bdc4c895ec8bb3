/**
 * With an external primary (the config's `storage` names a server), the local file is a cache:
 * a session may leave it without an archive once the server holds a verified copy of exactly the
 * version the file holds now. This asks the mirror's state which sessions that is, after letting
 * the mirror catch up on those not sent yet.
 */
import { SkError } from '../core/errors.js';
import { openMirrorTarget } from '../store/open-store.js';
import type { ChangeMarks, SessionReader } from '../store/reader.js';
import { Mirror } from '../store/transfer/mirror.js';
import { sourceIdFor } from './sync.js';

export interface MirrorCheck {
  /** Sessions the server holds exactly as they are here now (verified by digest). */
  mirrored: Set<string>;
  /** Their change marks at the check: a delete goes ahead only while each is still the same. */
  marks: Map<string, string>;
  /** Why nothing could be counted as mirrored (the server unreachable), for the log. */
  unavailable: string | null;
}

const hasMarks = (reader: SessionReader): reader is SessionReader & ChangeMarks => typeof (reader as Partial<ChangeMarks>).sessionMarks === 'function';

/**
 * Which of `ids` the server `connectionString` holds exactly (this source's last mirrored version,
 * still the held one, and the file's rows digesting to it now); with `catchUp`, those not mirrored
 * yet are sent first.
 */
export async function mirroredExactly(
  db: string,
  reader: SessionReader,
  connectionString: string,
  ids: readonly string[],
  options: { catchUp: boolean; stateDir?: string },
): Promise<MirrorCheck> {
  const none = (unavailable: string | null): MirrorCheck => ({ mirrored: new Set(), marks: new Map(), unavailable });
  if (!hasMarks(reader) || ids.length === 0) return none(null);
  let target;
  try {
    target = await openMirrorTarget(connectionString);
  } catch (error) {
    if (error instanceof SkError && error.code !== 'usage') return none(error.message);
    throw error;
  }
  try {
    const { sourceId, name } = sourceIdFor(db, options.stateDir);
    if (options.catchUp) {
      const mirror = await Mirror.start(reader, target, sourceId, name);
      const pending = new Set(await mirror.scan());
      for (const id of ids) if (pending.has(id)) await mirror.mirrorOne(id);
    }
    const [bases, held, marks] = await Promise.all([target.mirrorBases(sourceId), target.heldVersions(ids), reader.sessionMarks(ids)]);
    const check: MirrorCheck = { mirrored: new Set(), marks: new Map(), unavailable: null };
    for (const id of ids) {
      const base = bases.get(id);
      const mark = marks.get(id)?.mark;
      if (!base || mark !== base.mark || held.get(id)?.digest !== base.digest) continue;
      // Marks see what OpenCode's writes change; an eviction is sure: the file's rows digested as the server stores them.
      if ((await target.digestOf(reader.exportSessions([id]))).digest !== base.digest) continue;
      check.mirrored.add(id);
      check.marks.set(id, mark);
    }
    return check;
  } catch (error) {
    if (error instanceof SkError && error.code === 'connection') return none(error.message);
    throw error;
  } finally {
    await target.close();
  }
}
