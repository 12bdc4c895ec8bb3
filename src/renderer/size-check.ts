/**
 * The startup size-check dialog: how big the database is and which threshold it crossed, what
 * the space is made of (chart), the largest sessions, and the actions: archive and clean up now
 * (dry-run plan first, then progress, then the space reclaimed), open settings, remind me later.
 */
import type { ApplyOutcome, PlanResult, ProgressView, SessionKeeperApi, StartupResult } from '../core/utility-protocol.js';
import type { StatsResult } from '../core/api.js';
import { ApiError } from './api.js';
import { bytes, day, h, plural } from './util.js';

export interface SpaceSlice {
  key: string;
  label: string;
  bytes: number;
}

/** What the file is made of: attachments, events, text, free pages, and the rest (indexes, rows). */
export function spaceBreakdown(stats: StatsResult): SpaceSlice[] {
  const payload = (name: string): number => stats.tables.find((t) => t.name === name)?.payloadBytes ?? 0;
  const attachments = stats.attachments.encodedBytes;
  const events = payload('event');
  const text = Math.max(0, payload('message') + payload('part') + payload('session') + payload('todo') - attachments);
  const free = stats.freeBytes;
  const total = stats.fileBytes + stats.walBytes;
  const other = Math.max(0, total - attachments - events - text - free);
  return [
    { key: 'attachments', label: 'Attachments (as stored, base64)', bytes: attachments },
    { key: 'events', label: 'Events', bytes: events },
    { key: 'text', label: 'Text (messages, parts)', bytes: text },
    { key: 'free', label: 'Free pages (reclaimable)', bytes: free },
    { key: 'other', label: 'Indexes and other', bytes: other },
  ];
}

const FOLDER_LABELS: Partial<Record<string, string>> = {
  snapshot: 'Snapshots (undo/revert history)',
  'session-diffs': 'Session diffs',
  'legacy-json': 'Pre-SQLite JSON files',
  'tool-output': 'Full tool outputs',
  log: 'Logs',
  repos: 'Fetched repositories',
  archive: 'Archives',
  'other-databases': "Other channels' databases",
};

/** The rest of OpenCode's data folder (stats' `files`), one slice per place that holds anything. */
export function folderSlices(stats: StatsResult): SpaceSlice[] {
  return (stats.files ?? [])
    .filter((f) => f.inDataFolder && f.bytes > 0 && FOLDER_LABELS[f.name])
    .map((f) => ({ key: 'folder', label: `${FOLDER_LABELS[f.name]}${f.reclaimable > 0 ? ` (${bytes(f.reclaimable)} unused)` : ''}`, bytes: f.bytes }));
}

export function chart(slices: SpaceSlice[], total: number): HTMLElement {
  const max = Math.max(1, ...slices.map((s) => s.bytes));
  const summary = slices.map((s) => `${s.label}: ${bytes(s.bytes)}`).join('; ');
  const stack = h('div', { class: 'stack', 'aria-hidden': 'true' });
  for (const s of slices) {
    if (s.bytes <= 0) continue;
    stack.append(h('span', { class: `seg seg-${s.key}`, style: `flex-grow:${s.bytes}`, title: `${s.label}: ${bytes(s.bytes)}` }));
  }
  const rows = h('ul', { class: 'bars' });
  for (const s of slices) {
    const pct = total > 0 ? Math.round((s.bytes / total) * 100) : 0;
    rows.append(
      h(
        'li',
        { class: 'bar-row' },
        h('span', { class: `swatch seg-${s.key}`, 'aria-hidden': 'true' }),
        h('span', { class: 'bar-label' }, s.label),
        h('span', { class: 'bar-track', 'aria-hidden': 'true' }, h('span', { class: `bar-fill seg-${s.key}`, style: `width:${(s.bytes / max) * 100}%` })),
        h('span', { class: 'bar-value' }, `${bytes(s.bytes)} (${pct}%)`),
      ),
    );
  }
  return h('figure', { class: 'chart', role: 'group', 'aria-label': `What the space is made of. ${summary}` }, stack, rows);
}

function largestTable(stats: StatsResult, count = 5): HTMLElement {
  const table = h('table', { class: 'largest' }, h('caption', {}, 'Largest sessions'));
  table.append(h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Session'), h('th', { scope: 'col', class: 'num' }, 'Size'))));
  const body = h('tbody');
  for (const s of stats.largest.slice(0, count)) {
    body.append(h('tr', {}, h('td', { class: 'title-cell', title: s.id }, s.title || s.id), h('td', { class: 'num' }, bytes(s.bytes))));
  }
  if (stats.largest.length === 0) body.append(h('tr', {}, h('td', { colspan: 2 }, 'No sessions.')));
  table.append(body);
  return table;
}

export function planTable(plan: PlanResult, limit = 8): HTMLElement {
  const table = h('table', { class: 'plan', 'data-testid': 'plan-table' }, h('caption', {}, `Sessions to archive and remove (${plan.evict.length})`));
  table.append(
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Session'), h('th', { scope: 'col' }, 'Created'), h('th', { scope: 'col', class: 'num' }, 'Size'))),
  );
  const body = h('tbody');
  for (const e of plan.evict.slice(0, limit)) {
    const kids = e.children.length ? ` (+${plural(e.children.length, 'subtask')})` : '';
    body.append(
      h('tr', { 'data-session-id': e.id }, h('td', { class: 'title-cell', title: e.id }, `${e.title || e.id}${kids}`), h('td', {}, day(e.timeCreated)), h('td', { class: 'num' }, bytes(e.bytes))),
    );
  }
  if (plan.evict.length > limit) body.append(h('tr', {}, h('td', { colspan: 3, class: 'more' }, `…and ${plan.evict.length - limit} more`)));
  if (plan.evict.length === 0) body.append(h('tr', {}, h('td', { colspan: 3 }, 'Nothing to remove with these limits.')));
  table.append(body);
  return table;
}

const PHASES: Record<ProgressView['phase'], { pct: number; text: string }> = {
  plan: { pct: 5, text: 'Planning…' },
  archive: { pct: 15, text: 'Writing the archive…' },
  verify: { pct: 45, text: 'Verifying the archive…' },
  delete: { pct: 65, text: 'Removing sessions…' },
  compact: { pct: 50, text: 'Removing superseded history…' },
  reclaim: { pct: 90, text: 'Reclaiming disk space…' },
  done: { pct: 100, text: 'Done.' },
};

export interface SizeCheckContext {
  api: SessionKeeperApi;
  startup: StartupResult;
  openSettings: () => void;
  /** Called after a clean-up so the rest of the page refreshes. */
  changed: () => void;
}

/** Fills and opens the `<dialog>`. */
export async function openSizeCheck(dialog: HTMLDialogElement, ctx: SizeCheckContext): Promise<void> {
  const { api, startup } = ctx;
  const [stats, settings] = await Promise.all([api.request('stats', { largest: 5 }), api.request('getSettings')]);
  const total = stats.fileBytes + stats.walBytes;
  const crossed = startup.crossed[0] ?? stats.warnings[0] ?? null;
  const close = (): void => dialog.close();

  const lowest = [...startup.crossed].map((w) => w.thresholdMB).sort((a, b) => a - b)[0];
  const configured = settings.resolved?.['maxSizeMB'];
  const suggested = typeof configured === 'number' ? configured : Math.max(1, Math.floor((lowest ?? total / 1024 / 1024) * 0.8));

  const body = h('div', { class: 'dialog-body' });
  const render = (...children: Node[]): void => {
    body.replaceChildren(...children);
  };

  const overview = (): void => {
    const cleanBtn = h('button', { type: 'button', class: 'primary', id: 'btn-clean' }, 'Archive and clean up now…');
    const settingsBtn = h('button', { type: 'button', id: 'btn-open-settings' }, 'Open settings');
    const laterBtn = h('button', { type: 'button', id: 'btn-later' }, 'Remind me later');
    cleanBtn.addEventListener('click', () => void showPlan());
    settingsBtn.addEventListener('click', () => {
      close();
      ctx.openSettings();
    });
    laterBtn.addEventListener('click', () => {
      void api.request('remindLater').finally(close);
    });
    // Compaction removes only snapshots a newer equal one supersedes: no session goes, so no plan to confirm.
    const compactBtn =
      stats.compactableBytes > 0
        ? h('button', { type: 'button', id: 'btn-compact', 'data-frees': stats.compactableBytes }, `Compact history: frees ${bytes(stats.compactableBytes)}, keeps every session`)
        : null;
    compactBtn?.addEventListener('click', () => void runCompact());
    const folder = folderSlices(stats);
    const mirrorLine = h('p', { class: 'sync-status', id: 'sync-status', 'aria-live': 'polite', hidden: true });
    render(
      h('div', { class: 'columns' }, chart([...spaceBreakdown(stats), ...folder], total + folder.reduce((n, f) => n + f.bytes, 0)), largestTable(stats)),
      mirrorLine,
      h('div', { class: 'actions' }, cleanBtn, settingsBtn, laterBtn, ...(compactBtn ? [compactBtn] : [])),
    );
    cleanBtn.focus();
    // With a server as the primary store: the mirror's line, refreshed while this view is shown.
    const showMirror = async (first = false): Promise<void> => {
      // Stops once this view is replaced or the dialog is gone.
      if (!first && !mirrorLine.isConnected) return;
      try {
        const status = await api.request('syncStatus');
        if (status.state === 'off') return;
        mirrorLine.hidden = false;
        mirrorLine.textContent = `Server copy (${status.target ?? ''}): ${status.line}`;
      } catch {
        return; // an older utility process without the request: no line
      }
      setTimeout(() => void showMirror(), 2000);
    };
    void showMirror(true);
  };

  const showPlan = async (): Promise<void> => {
    const sizeInput = h('input', { id: 'plan-max-size', type: 'text', inputmode: 'decimal', value: String(suggested), 'aria-describedby': 'plan-max-size-help', size: 6 });
    const planBox = h('div', { class: 'plan-box', 'aria-live': 'polite', id: 'plan-box' }, h('p', {}, 'Planning…'));
    const goBtn = h('button', { type: 'button', class: 'primary', id: 'btn-apply', disabled: true }, 'Archive and clean up');
    const backBtn = h('button', { type: 'button', id: 'btn-back' }, 'Back');
    backBtn.addEventListener('click', overview);
    let current: PlanResult | null = null;
    let seq = 0;
    const refresh = async (): Promise<void> => {
      const mine = ++seq;
      const value = Number(sizeInput.value);
      if (!Number.isFinite(value) || value <= 0) {
        planBox.replaceChildren(h('p', { class: 'field-error', role: 'alert' }, 'Enter a size in MB greater than 0.'));
        goBtn.disabled = true;
        return;
      }
      try {
        const plan = await api.request('plan', { policy: { maxSizeMB: value } });
        if (mine !== seq) return;
        current = plan;
        const archiveNote = settings.resolved?.['archive'] === false ? 'Archiving is off in settings: removed sessions will not be kept.' : `Archived first to ${String(settings.resolved?.['archiveDir'] ?? 'the archive folder')}.`;
        planBox.replaceChildren(
          h(
            'p',
            { id: 'plan-summary', 'data-evict': plan.evict.length, 'data-frees': plan.freesBytes, 'data-ids': plan.evict.map((e) => e.id).join(' ') },
            `${plural(plan.evict.length, 'session')} would be removed, freeing about ${bytes(plan.freesBytes)} (${bytes(plan.storeBytes)} → ${bytes(Math.max(0, plan.storeBytes - plan.freesBytes))}). ${archiveNote}`,
          ),
          plan.unmetSize ? h('p', { class: 'note' }, 'Pinned or recently active sessions keep the database above this size.') : '',
          planTable(plan),
        );
        goBtn.disabled = plan.evict.length === 0;
      } catch (error) {
        planBox.replaceChildren(h('p', { class: 'field-error', role: 'alert' }, (error as Error).message));
        goBtn.disabled = true;
      }
    };
    let timer: number | undefined;
    sizeInput.addEventListener('input', () => {
      window.clearTimeout(timer);
      timer = window.setTimeout(() => void refresh(), 250);
    });
    goBtn.addEventListener('click', () => {
      if (current) void run(Number(sizeInput.value));
    });
    render(
      h('h3', {}, 'Plan (dry run: nothing changes until you confirm)'),
      h(
        'p',
        { class: 'inline-field' },
        h('label', { for: 'plan-max-size' }, 'Keep the database under '),
        sizeInput,
        h('span', { id: 'plan-max-size-help' }, ' MB (oldest sessions go first; pinned and active ones stay)'),
      ),
      planBox,
      h('div', { class: 'actions' }, goBtn, backBtn),
    );
    sizeInput.focus();
    await refresh();
  };

  const run = async (maxSizeMB: number): Promise<void> => {
    const bar = h('progress', { id: 'apply-progress', max: 100, value: 0, 'aria-labelledby': 'apply-phase' });
    const phase = h('p', { id: 'apply-phase', 'aria-live': 'polite' }, 'Starting…');
    render(h('h3', {}, 'Archiving and cleaning up'), bar, phase);
    const off = api.onEvent((event) => {
      if (event.event !== 'progress') return;
      const step = PHASES[event.progress.phase];
      bar.value = step.pct;
      phase.textContent = step.text;
    });
    let outcome: ApplyOutcome;
    try {
      outcome = await api.request('apply', { policy: { maxSizeMB } });
    } catch (error) {
      off();
      const back = h('button', { type: 'button', id: 'btn-back' }, 'Back');
      back.addEventListener('click', overview);
      render(h('h3', {}, 'Clean-up failed'), h('p', { class: 'field-error', role: 'alert' }, error instanceof ApiError ? error.message : String(error)), h('p', {}, 'Nothing was removed without a verified archive.'), h('div', { class: 'actions' }, back));
      back.focus();
      return;
    }
    off();
    bar.value = 100;
    const reclaimed = Math.max(0, outcome.bytesBefore - outcome.bytesAfter);
    const done = h('button', { type: 'button', class: 'primary', id: 'btn-done' }, 'Close');
    done.addEventListener('click', close);
    render(
      h('h3', {}, 'Done'),
      bar,
      h(
        'p',
        { id: 'apply-result', 'data-reclaimed': reclaimed, 'data-after': outcome.bytesAfter },
        `Reclaimed ${bytes(reclaimed)}: the database went from ${bytes(outcome.bytesBefore)} to ${bytes(outcome.bytesAfter)}. ${plural(outcome.evicted.length, 'session')} removed.` +
          (outcome.reclaim === 'deferred' ? ' OpenCode is using the file, so the freed space stays inside it (SQLite reuses it) until a VACUUM runs with OpenCode closed.' : ''),
      ),
      outcome.archive ? h('p', {}, 'Archive: ', h('code', { id: 'apply-archive' }, outcome.archives.join(', '))) : h('p', {}, 'No archive was written (archiving is off).'),
      h('div', { class: 'actions' }, done),
    );
    done.focus();
    ctx.changed();
  };

  const runCompact = async (): Promise<void> => {
    const bar = h('progress', { id: 'compact-progress', max: 100, value: 0, 'aria-labelledby': 'compact-phase' });
    const phase = h('p', { id: 'compact-phase', 'aria-live': 'polite' }, 'Starting…');
    render(h('h3', {}, "Compacting OpenCode's history"), bar, phase);
    const off = api.onEvent((event) => {
      if (event.event !== 'progress') return;
      const p = event.progress;
      if (p.phase === 'compact' && p.of) {
        bar.value = Math.round((90 * (p.sessions ?? 0)) / p.of);
        phase.textContent = `Sessions ${(p.sessions ?? 0).toLocaleString()} of ${p.of.toLocaleString()}: ${bytes(p.bytes ?? 0)} of superseded snapshots removed…`;
      } else {
        bar.value = Math.max(bar.value, PHASES[p.phase].pct);
        phase.textContent = PHASES[p.phase].text;
      }
    });
    const back = h('button', { type: 'button', class: 'primary', id: 'btn-done' }, 'Close');
    back.addEventListener('click', close);
    try {
      const outcome = await api.request('compact');
      bar.value = 100;
      render(
        h('h3', {}, 'Done'),
        bar,
        h(
          'p',
          { id: 'compact-result', 'data-deleted': outcome.eventsDeleted, 'data-after': outcome.bytesAfter },
          `Removed ${plural(outcome.eventsDeleted, 'superseded snapshot')} (${bytes(outcome.bytesDeleted)}); every session kept. The database went from ${bytes(outcome.bytesBefore)} to ${bytes(outcome.bytesAfter)}.` +
            (outcome.reclaim === 'deferred' ? ' OpenCode is using the file, so the freed space stays inside it (SQLite reuses it) until a VACUUM runs with OpenCode closed.' : ''),
        ),
        h('div', { class: 'actions' }, back),
      );
      ctx.changed();
    } catch (error) {
      render(h('h3', {}, 'Compaction failed'), h('p', { class: 'field-error', role: 'alert' }, error instanceof ApiError ? error.message : String(error)), h('p', {}, 'Every session is as it was.'), h('div', { class: 'actions' }, back));
    } finally {
      off();
    }
    back.focus();
  };

  const heading = h('h2', { id: 'dialog-title' }, `Your OpenCode database is ${bytes(total)}`);
  const summary = h(
    'p',
    { id: 'dialog-summary' },
    crossed
      ? `It has crossed the ${crossed.thresholdMB >= 1024 ? `${crossed.thresholdMB / 1024} GB` : `${crossed.thresholdMB} MB`} warning threshold. ${plural(stats.rootSessions, 'session')}, ${bytes(stats.attachments.bytes)} of attachments.`
      : `${plural(stats.rootSessions, 'session')}, ${bytes(stats.attachments.bytes)} of attachments.`,
  );
  const x = h('button', { type: 'button', class: 'close-x', 'aria-label': 'Close' }, '×');
  x.addEventListener('click', close);
  dialog.replaceChildren(h('div', { class: 'dialog-head' }, heading, x), summary, body);
  overview();
  if (!dialog.open) dialog.showModal();
  (dialog.querySelector('#btn-clean') as HTMLButtonElement | null)?.focus();
}
