/** The mirror's status as the CLI and the dialog show it (pure: numbers in, one line out). */

export interface SyncStatusView {
  /** `off`: no server is the primary store; `stopped`: the mirror ended on an error (see `error`). */
  state: 'off' | 'starting' | 'syncing' | 'idle' | 'offline' | 'stopped';
  /** The server, password masked (null when off). */
  target: string | null;
  mirrored: number;
  pending: number;
  conflicts: number;
  serverNewer: number;
  /** When a session was last verified on the server (or found already there), epoch ms. */
  lastSyncedAt: number | null;
  error: string | null;
}

/** "mirrored 2,341 sessions; 3 pending; last 4 s ago". */
export function syncStatusLine(s: Omit<SyncStatusView, 'target' | 'error'>, now = Date.now()): string {
  if (s.state === 'off') return 'no mirror: the sessions live in the SQLite file only';
  const ago = s.lastSyncedAt === null ? 'nothing yet' : `last ${Math.max(0, Math.round((now - s.lastSyncedAt) / 1000))} s ago`;
  const extra = [s.conflicts ? `${s.conflicts.toLocaleString('en-US')} in conflict` : '', s.serverNewer ? `${s.serverNewer.toLocaleString('en-US')} newer on the server` : ''].filter(Boolean).join('; ');
  const prefix = s.state === 'offline' ? 'offline: ' : s.state === 'stopped' ? 'stopped: ' : '';
  return `${prefix}mirrored ${s.mirrored.toLocaleString('en-US')} sessions; ${s.pending.toLocaleString('en-US')} pending; ${ago}${extra ? `; ${extra}` : ''}`;
}
