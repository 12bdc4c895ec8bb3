/** Comparing a mirror with its source: every session as one line of text per session. */
import { createHash } from 'node:crypto';
import { openReader } from '../../src/store/open-store.js';
import type { SessionItem } from '../../src/store/session-items.js';

/** Every item of every session, as a comparable text: ids, times, exact bytes of every value, every table. */
export async function sessionsAsText(location: string, ids?: readonly string[]): Promise<Map<string, string>> {
  const reader = await openReader(location);
  try {
    const out = new Map<string, string>();
    const all = ids ?? (await reader.allSessionIds());
    const items = reader.exportSessions(all);
    let hash = createHash('sha256');
    const norm = (value: unknown): unknown =>
      Buffer.isBuffer(value) ? `b:${createHash('sha256').update(value).digest('hex')}` : value && typeof value === 'object' && 'bytes' in (value as object) ? `B:${createHash('sha256').update((value as { bytes: Buffer }).bytes).digest('hex')}` : typeof value === 'bigint' ? value.toString() : value;
    const rowText = (row: Record<string, unknown>): string => JSON.stringify(Object.keys(row).sort().map((k) => [k, norm(row[k])]));
    const take = (item: SessionItem): void => {
      switch (item.kind) {
        case 'session':
          hash = createHash('sha256');
          hash.update(rowText(item.header.session)).update(JSON.stringify(item.header.todos.map(rowText))).update(item.header.share ? rowText(item.header.share) : '-');
          hash.update(item.header.diff ?? Buffer.alloc(0));
          return;
        case 'message':
          hash.update(`m${item.message.id}${item.message.timeCreated}${item.message.timeUpdated}`).update(item.message.data);
          return;
        case 'part':
          hash.update(`p${item.part.id}${item.part.messageId}${item.part.timeCreated}${item.part.timeUpdated}`).update(item.part.data);
          return;
        case 'rows':
          for (const row of item.rows) hash.update(`${item.table}:${rowText(row)}`);
          return;
        case 'end':
          out.set(item.sessionId, `${JSON.stringify(Object.entries(item.counts).filter(([, n]) => n > 0).sort())}:${hash.digest('hex')}`);
      }
    };
    for await (const item of items as AsyncIterable<SessionItem>) take(item);
    return out;
  } finally {
    await reader.close();
  }
}

