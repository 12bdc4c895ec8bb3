/**
 * The startup size-check dialog: how big the database is and which threshold it crossed, what
 * the space is made of (chart), the largest sessions, and the actions: archive and clean up now
 * (dry-run plan first, then progress, then the space reclaimed), open settings, remind me later.
 */
import type { ApplyOutcome, PlanResult, ProgressView, RunKind, SessionKeeperApi, StartupResult } from '../core/utility-protocol.js';
import type { StatsResult } from '../core/api.js';
import { SPACE_KINDS, type SpaceKind } from '../core/browse.js';
import { ApiError } from './api.js';
import { confirmationText, count, needsConfirmation } from './confirm.js';
import { followRun } from './run-view.js';
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

/** Why a slice does not open the session browser: it belongs to the file, not to any session. */
const NOT_PER_SESSION: Partial<Record<string, string>> = {
  free: 'Free pages belong to the file, not to any session: a VACUUM gives them back',
  other: 'Indexes and row overhead are shared by every session: not counted per session',
  folder: "A place in OpenCode's data folder, beside the database: not counted per session",
};

function isKind(key: string): key is SpaceKind {
  return (SPACE_KINDS as readonly string[]).includes(key);
}

/**
 * The space chart; with `onSlice`, the slices that belong to sessions (attachments, events, text)
 * are buttons that open the session browser sorted by that kind, the others say why they are not.
 */
export function chart(slices: SpaceSlice[], total: number, onSlice?: (kind: SpaceKind) => void): HTMLElement {
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
    const key = s.key;
    let label: HTMLElement;
    if (onSlice && isKind(key)) {
      label = h('button', { type: 'button', class: 'link bar-label slice-open', 'data-slice': key, title: `Show the sessions with the most ${s.label.toLowerCase()}, largest first` }, s.label);
      label.addEventListener('click', () => onSlice(key));
    } else {
      label = h('span', { class: 'bar-label', 'data-slice': key, title: onSlice ? (NOT_PER_SESSION[key] ?? s.label) : s.label }, s.label);
    }
    rows.append(
      h(
        'li',
        { class: 'bar-row' },
        h('span', { class: `swatch seg-${s.key}`, 'aria-hidden': 'true' }),
        label,
        h('span', { class: 'bar-track', 'aria-hidden': 'true' }, h('span', { class: `bar-fill seg-${s.key}`, style: `width:${(s.bytes / max) * 100}%` })),
        h('span', { class: 'bar-value' }, `${bytes(s.bytes)} (${pct}%)`),
      ),
    );
  }
  return h('figure', { class: 'chart', role: 'group', 'aria-label': `What the space is made of. ${summary}` }, stack, rows);
}

/** The largest sessions; with `onRemove`, each can be archived and removed on its own. */
function largestTable(stats: StatsResult, rows = 5, onRemove?: (id: string) => void): HTMLElement {
  const table = h('table', { class: 'largest' }, h('caption', {}, 'Largest sessions'));
  table.append(h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Session'), h('th', { scope: 'col', class: 'num' }, 'Size'), onRemove ? h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Remove')) : null)));
  const body = h('tbody');
  for (const s of stats.largest.slice(0, rows)) {
    let remove: HTMLElement | null = null;
    if (onRemove) {
      const btn = h('button', { type: 'button', class: 'small', 'data-remove': s.id, 'aria-label': `Archive and remove "${s.title || s.id}"` }, 'Remove…');
      btn.addEventListener('click', () => onRemove(s.id));
      remove = h('td', {}, btn);
    }
    body.append(h('tr', { 'data-session-id': s.id }, h('td', { class: 'title-cell', title: s.id }, s.title || s.id), h('td', { class: 'num' }, bytes(s.bytes)), remove));
  }
  if (stats.largest.length === 0) body.append(h('tr', {}, h('td', { colspan: onRemove ? 3 : 2 }, 'No sessions.')));
  table.append(body);
  return table;
}

/**
 * The sessions a plan removes, the first `limit` rows and a button for the rest (never a dead
 * "...and 1133 more"); with `onKeep`, each row can be kept out of this clean-up.
 */
export function planTable(plan: PlanResult, limit = 8, onKeep?: (id: string) => void): HTMLElement {
  const table = h('table', { class: 'plan', 'data-testid': 'plan-table' }, h('caption', {}, `Sessions to archive and remove (${plan.evict.length.toLocaleString('en-US')})`));
  const cols = onKeep ? 4 : 3;
  table.append(
    h(
      'thead',
      {},
      h('tr', {}, h('th', { scope: 'col' }, 'Session'), h('th', { scope: 'col' }, 'Created'), h('th', { scope: 'col', class: 'num' }, 'Size'), onKeep ? h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Keep')) : null),
    ),
  );
  const body = h('tbody');
  const rows = (from: number, to: number): void => {
    for (const e of plan.evict.slice(from, to)) {
      const kids = e.children.length ? ` (+${plural(e.children.length, 'subtask')})` : '';
      let keep: HTMLElement | null = null;
      if (onKeep) {
        const btn = h('button', { type: 'button', class: 'small', 'data-keep': e.id, 'aria-label': `Keep "${e.title || e.id}" this time` }, 'Keep');
        btn.addEventListener('click', () => onKeep(e.id));
        keep = h('td', {}, btn);
      }
      body.append(h('tr', { 'data-session-id': e.id }, h('td', { class: 'title-cell', title: e.id }, `${e.title || e.id}${kids}`), h('td', {}, day(e.timeCreated)), h('td', { class: 'num' }, bytes(e.bytes)), keep));
    }
  };
  rows(0, limit);
  if (plan.evict.length > limit) {
    const more = h('button', { type: 'button', class: 'link', id: 'btn-plan-all' }, `Show all ${plan.evict.length.toLocaleString('en-US')}`);
    const moreRow = h('tr', {}, h('td', { colspan: cols, class: 'more' }, `…and ${(plan.evict.length - limit).toLocaleString('en-US')} more. `, more));
    more.addEventListener('click', () => {
      moreRow.remove();
      rows(limit, plan.evict.length);
    });
    body.append(moreRow);
  }
  if (plan.evict.length === 0) body.append(h('tr', {}, h('td', { colspan: cols }, 'Nothing to remove with these limits.')));
  table.append(body);
  return table;
}

/** The target the dialog suggests: just below the threshold that fired, so the oldest sessions go and recent work stays. */
export function suggestedTarget(thresholdMB: number | null, totalBytes: number): number {
  const base = thresholdMB ?? totalBytes / 1024 / 1024;
  return Math.max(1, Math.floor(base * 0.9));
}

/** The size field, read the way a person types it; messages say what to type. */
export function parseTargetMB(text: string): { ok: true; value: number } | { ok: false; message: string } {
  const t = text.trim().replace(/\s*mb$/i, '');
  if (t === '') return { ok: false, message: 'Enter a size in MB, for example 500.' };
  const value = Number(t);
  if (!Number.isFinite(value)) return { ok: false, message: `"${text.trim().slice(0, 20)}" is not a number: enter a size in MB, for example 500.` };
  if (value <= 0) return { ok: false, message: 'Enter a size greater than 0 MB.' };
  return { ok: true, value };
}

/** Compaction's steps (the clean-up's run has its own view, run-view.ts). */
const PHASES: Record<ProgressView['phase'], { pct: number; text: string }> = {
  plan: { pct: 5, text: 'Planning…' },
  archive: { pct: 15, text: 'Writing the archive…' },
  verify: { pct: 45, text: 'Verifying the archive…' },
  delete: { pct: 65, text: 'Removing sessions…' },
  compact: { pct: 50, text: 'Removing superseded history…' },
  restore: { pct: 50, text: 'Restoring from the server…' },
  reclaim: { pct: 90, text: 'Reclaiming disk space…' },
  done: { pct: 100, text: 'Done.' },
};

export interface SizeCheckContext {
  api: SessionKeeperApi;
  startup: StartupResult;
  openSettings: () => void;
  /** Opens the session browser sorted by a kind of bytes (a chart slice that belongs to sessions). */
  openSessions?: (kind: SpaceKind) => void;
  /** Called after a clean-up so the rest of the page refreshes. */
  changed: () => void;
}

/** Set while a clean-up this page follows is running: closing the dialog then asks first. */
let following = false;
/** What the followed run is, as the close warning names it. */
let followingWhat = 'A clean-up';

/** "It has crossed the 1 GB warning threshold." from the figures now, not those at startup. */
function headline(stats: StatsResult): { title: string; summary: string } {
  const total = stats.fileBytes + stats.walBytes;
  const crossed = stats.warnings[0] ?? null;
  const mb = (n: number): string => (n >= 1024 ? `${n / 1024} GB` : `${n} MB`);
  const counts = `${count(stats.rootSessions, 'session')}, ${bytes(stats.attachments.bytes)} of attachments.`;
  return {
    title: `Your OpenCode database is ${bytes(total)}`,
    summary: crossed ? `It has crossed the ${mb(crossed.thresholdMB)} warning threshold. ${counts}` : `It is under every warning threshold. ${counts}`,
  };
}

/** Fills and opens the `<dialog>`; a clean-up running in the utility is shown instead of the overview. */
export async function openSizeCheck(dialog: HTMLDialogElement, ctx: SizeCheckContext): Promise<void> {
  const { api, startup } = ctx;
  const [firstStats, settings, status] = await Promise.all([api.request('stats', { largest: 5 }), api.request('getSettings'), api.request('runStatus')]);
  let stats = firstStats;
  const warning = h('div', { class: 'close-warning', id: 'close-warning', role: 'alertdialog', 'aria-labelledby': 'close-warning-text', hidden: true });
  const reallyClose = (): void => {
    warning.hidden = true;
    dialog.close();
  };
  /** Closing during a run says what happens to it, and asks. */
  const close = (): void => {
    if (!following) return reallyClose();
    const stay = h('button', { type: 'button', class: 'primary', id: 'btn-keep-watching' }, 'Keep watching');
    const leave = h('button', { type: 'button', id: 'btn-close-anyway' }, 'Close, let it run');
    stay.addEventListener('click', () => {
      warning.hidden = true;
      (dialog.querySelector('#btn-cancel-run') as HTMLButtonElement | null)?.focus();
    });
    leave.addEventListener('click', reallyClose);
    warning.replaceChildren(
      h('p', { id: 'close-warning-text' }, `${followingWhat} is running. If you close this window it goes on in the background, and a note says when it ends. To stop it, use Cancel.`),
      h('div', { class: 'actions' }, stay, leave),
    );
    warning.hidden = false;
    stay.focus();
  };
  // Escape: the same question, not a silent close.
  dialog.oncancel = (event) => {
    if (!following) return;
    event.preventDefault();
    close();
  };

  const configured = settings.resolved?.['maxSizeMB'];
  const suggested = typeof configured === 'number' ? configured : suggestedTarget(startup.crossed[0]?.thresholdMB ?? stats.warnings[0]?.thresholdMB ?? null, stats.fileBytes + stats.walBytes);

  const body = h('div', { class: 'dialog-body' });
  const render = (...children: (Node | string)[]): void => {
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
      h('div', { class: 'columns' }, chart([...spaceBreakdown(stats), ...folder], stats.fileBytes + stats.walBytes + folder.reduce((n, f) => n + f.bytes, 0), ctx.openSessions && ((kind) => {
          reallyClose();
          ctx.openSessions?.(kind);
        })), largestTable(stats, 5, (id) => void removeOne(id))),
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

  /**
   * The plan step. What is shown is a plan object; Apply sends its id. While a new plan is being
   * made the old one stays visible but marked out of date, and Apply waits for the new one.
   */
  const showPlan = async (initial?: { plan: PlanResult; notice: string; target: string }): Promise<void> => {
    const sizeInput = h('input', { id: 'plan-max-size', type: 'text', inputmode: 'decimal', value: initial?.target ?? String(suggested), 'aria-describedby': 'plan-max-size-help', size: 6 });
    const inputError = h('p', { class: 'field-error', id: 'plan-max-size-error', role: 'alert' });
    const staleNote = h('p', { class: 'stale-note', id: 'plan-stale', hidden: true }, 'Updating the plan for the new value… Apply waits for it.');
    const planView = h('div', { id: 'plan-view' }, h('p', {}, 'Planning…'));
    const planBox = h('div', { class: 'plan-box', 'aria-live': 'polite', id: 'plan-box', 'aria-busy': 'true' }, staleNote, planView);
    const goBtn = h('button', { type: 'button', class: 'primary', id: 'btn-apply', disabled: true }, 'Archive and clean up');
    const backBtn = h('button', { type: 'button', id: 'btn-back' }, 'Back');
    backBtn.addEventListener('click', overview);
    let current: PlanResult | null = initial?.plan ?? null;
    let stale = true;
    let seq = 0;
    /** Sessions kept out of this one clean-up (they stay; settings are not changed). */
    const excluded = new Set<string>(initial?.plan.exclude ?? []);
    const keepThisTime = (id: string): void => {
      excluded.add(id);
      ++seq;
      markStale();
      void refresh();
    };
    const markStale = (): void => {
      stale = true;
      goBtn.disabled = true;
      planBox.classList.add('stale');
      planBox.setAttribute('aria-busy', 'true');
      staleNote.hidden = current === null;
    };
    const showResult = (plan: PlanResult, notice = ''): void => {
      current = plan;
      stale = false;
      planBox.classList.remove('stale');
      planBox.setAttribute('aria-busy', 'false');
      staleNote.hidden = true;
      const archiveNote = plan.archive ? `Archived first to ${String(settings.resolved?.['archiveDir'] ?? 'the archive folder')}.` : 'Archiving is off in settings: removed sessions will not be kept.';
      planView.replaceChildren(
        notice ? h('p', { class: 'warn', id: 'plan-notice', role: 'alert' }, notice) : '',
        h(
          'p',
          { id: 'plan-summary', 'data-plan-id': plan.planId, 'data-evict': plan.evict.length, 'data-frees': plan.freesBytes, 'data-ids': plan.evict.map((e) => e.id).join(' ') },
          `${count(plan.evict.length, 'session')} of ${count(plan.rootSessions, 'session').replace(/ sessions?$/, '')} would be removed, freeing about ${bytes(plan.freesBytes)} (${bytes(plan.storeBytes)} → ${bytes(Math.max(0, plan.storeBytes - plan.freesBytes))}). ${archiveNote}`,
        ),
        plan.unmetSize ? h('p', { class: 'note' }, 'Pinned or recently active sessions keep the database above this size.') : '',
        excludedLine(),
        planTable(plan, 8, keepThisTime),
      );
      goBtn.disabled = plan.evict.length === 0;
    };
    const excludedLine = (): HTMLElement | string => {
      if (excluded.size === 0) return '';
      const undo = h('button', { type: 'button', class: 'link', id: 'btn-unexclude' }, 'put them back in the plan');
      undo.addEventListener('click', () => {
        excluded.clear();
        ++seq;
        markStale();
        void refresh();
      });
      return h('p', { id: 'plan-excluded', 'data-excluded': [...excluded].join(' ') }, `Kept out of this clean-up: ${count(excluded.size, 'session')} (`, undo, ').');
    };
    const refresh = async (): Promise<void> => {
      const mine = ++seq;
      const checked = parseTargetMB(sizeInput.value);
      if (!checked.ok) {
        inputError.textContent = checked.message;
        sizeInput.setAttribute('aria-invalid', 'true');
        markStale();
        staleNote.hidden = true;
        return;
      }
      inputError.textContent = '';
      sizeInput.removeAttribute('aria-invalid');
      try {
        const plan = await api.request('plan', { policy: { maxSizeMB: checked.value }, ...(excluded.size ? { exclude: [...excluded] } : {}) });
        if (mine !== seq) return;
        showResult(plan);
      } catch (error) {
        if (mine !== seq) return;
        current = null;
        planView.replaceChildren(h('p', { class: 'field-error', role: 'alert' }, (error as Error).message));
        markStale();
      }
    };
    let timer: number | undefined;
    sizeInput.addEventListener('input', () => {
      // At once, not after the pause: the plan on screen no longer answers what was typed.
      ++seq;
      markStale();
      window.clearTimeout(timer);
      timer = window.setTimeout(() => void refresh(), 250);
    });
    goBtn.addEventListener('click', () => {
      const plan = current;
      if (!plan || stale || plan.evict.length === 0) return;
      const target = sizeInput.value;
      if (needsConfirmation(plan)) confirmStep(plan, target);
      else void run(plan, target);
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
      inputError,
      planBox,
      h('div', { class: 'actions' }, goBtn, backBtn),
    );
    sizeInput.focus();
    if (initial) showResult(initial.plan, initial.notice);
    else await refresh();
  };

  /** Removing more than half the sessions, or without an archive, is said with its count and asked again. */
  /** "Remove this one" from the largest sessions: a plan of just that session, always asked about. */
  const removeOne = async (id: string): Promise<void> => {
    let plan: PlanResult;
    try {
      plan = await api.request('plan', { sessions: [id] });
    } catch (error) {
      render(h('p', { class: 'field-error', role: 'alert' }, (error as Error).message));
      return;
    }
    if (plan.evict.length === 0) {
      const back = h('button', { type: 'button', id: 'btn-back' }, 'Back');
      back.addEventListener('click', overview);
      const why = plan.held?.[0]?.why;
      render(
        h('p', { id: 'confirm-text', role: 'alert' }, why === 'pinned' ? 'This session is pinned: unpin it in Sessions first.' : why === 'active' ? 'This session was active in the last hour and may be open in OpenCode: it is not removed.' : 'This is a subtask: it is removed with the session it belongs to (find it in Sessions).'),
        h('div', { class: 'actions' }, back),
      );
      back.focus();
      return;
    }
    confirmStep(plan, String(suggested), overview);
  };

  const confirmStep = (plan: PlanResult, target: string, back?: () => void): void => {
    const n = plan.evict.length;
    const yes = h('button', { type: 'button', class: 'danger', id: 'btn-confirm-apply' }, plan.archive ? `Archive and remove ${count(n, 'session')}` : `Remove ${count(n, 'session')} without an archive`);
    const no = h('button', { type: 'button', id: 'btn-confirm-cancel' }, 'Cancel');
    yes.addEventListener('click', () => void run(plan, target));
    no.addEventListener('click', () => (back ? back() : void showPlan({ plan, notice: '', target })));
    render(
      h('h3', { id: 'confirm-title' }, `Remove ${count(n, 'session')} of ${plan.rootSessions.toLocaleString('en-US')}?`),
      h('p', { id: 'confirm-text', 'data-evict': n }, confirmationText(plan)),
      plan.evict.length === 1 ? h('p', {}, `"${plan.evict[0]!.title || plan.evict[0]!.id}", ${bytes(plan.evict[0]!.bytes)}.`) : '',
      h('div', { class: 'actions' }, no, yes),
    );
    // The safe answer has the focus: Enter twice along the default focus removes nothing.
    no.focus();
  };

  const run = (plan: PlanResult, target: string): Promise<void> => {
    const applying = api.request('apply', { planId: plan.planId });
    return follow({ startedAt: Date.now(), progress: null, cancelling: false }, applying, target);
  };

  /** Shows the run until it ends, then what it did, with every figure read again. */
  const follow = async (start: { startedAt: number; progress: ProgressView | null; cancelling: boolean; kind?: RunKind }, own: Promise<ApplyOutcome> | undefined, target: string): Promise<void> => {
    following = true;
    followingWhat = start.kind === 'restore' ? 'A restore from the server' : 'A clean-up';
    const view = h('div', { class: 'run-view' });
    render(view);
    (view.querySelector('#btn-cancel-run') as HTMLButtonElement | null)?.focus();
    const handle = followRun(view, api, start, own);
    (view.querySelector('#btn-cancel-run') as HTMLButtonElement | null)?.focus();
    const end = await handle.ended;
    following = false;
    warning.hidden = true;
    const refusal = own ? await own.then(() => null, (error: unknown) => error) : null;
    if (refusal instanceof ApiError && refusal.code === 'stale-plan' && refusal.plan) {
      await showPlan({ plan: refusal.plan, notice: 'The database changed since that plan was made, so nothing was removed. Here is the new plan.', target });
      return;
    }
    stats = await api.request('stats', { largest: 5 }).catch(() => stats);
    const line = headline(stats);
    heading.textContent = line.title;
    summary.textContent = line.summary;
    ctx.changed();
    if (end.kind === 'restore') {
      // A restore from the server (started in the session browser) followed here after a reload.
      const done = h('button', { type: 'button', class: 'primary', id: 'btn-done' }, 'Close');
      done.addEventListener('click', reallyClose);
      const r = end.restore;
      render(
        h('h3', { id: 'run-title' }, r ? (r.cancelled ? 'Cancelled' : 'Done') : 'Restore failed'),
        h('p', { id: 'restore-result', class: r ? '' : 'field-error' }, r ? `${count(r.restored.length, 'session')} restored from ${r.from}, checked against the server.${r.cancelled ? ` ${count(r.notReached?.length ?? 0, 'session')} left on the server.` : ''}` : (end.error ?? 'unknown error')),
        h('div', { class: 'actions' }, done),
      );
      done.focus();
      return;
    }
    const outcome = end.outcome;
    if (!outcome) {
      const back = h('button', { type: 'button', id: 'btn-back' }, 'Back');
      back.addEventListener('click', overview);
      render(h('h3', {}, 'Clean-up failed'), h('p', { class: 'field-error', role: 'alert' }, end.error ?? 'unknown error'), h('p', {}, 'Nothing was removed without a verified archive.'), h('div', { class: 'actions' }, back));
      back.focus();
      return;
    }
    const reclaimed = Math.max(0, outcome.bytesBefore - outcome.bytesAfter);
    const done = h('button', { type: 'button', class: 'primary', id: 'btn-done' }, 'Close');
    done.addEventListener('click', reallyClose);
    const bar = h('progress', { id: 'apply-progress', max: 100, value: outcome.cancelled ? 0 : 100 });
    render(
      h('h3', { id: 'run-title' }, outcome.cancelled ? 'Cancelled' : 'Done'),
      bar,
      h(
        'p',
        { id: 'apply-result', 'data-reclaimed': reclaimed, 'data-after': outcome.bytesAfter, 'data-evicted': outcome.evicted.length, 'data-cancelled': outcome.cancelled ? 'yes' : 'no' },
        outcome.cancelled
          ? `Cancelled: ${count(outcome.evicted.length, 'session')} removed, ${count(outcome.notReached?.length ?? 0, 'session')} left as they were. Nothing is half-deleted.`
          : `Reclaimed ${bytes(reclaimed)}: the database went from ${bytes(outcome.bytesBefore)} to ${bytes(outcome.bytesAfter)}. ${count(outcome.evicted.length, 'session')} removed.` +
              (outcome.reclaim === 'deferred' ? ' OpenCode is using the file, so the freed space stays inside it (SQLite reuses it) until a VACUUM runs with OpenCode closed.' : ''),
      ),
      outcome.archive ? h('p', {}, 'Archive: ', h('code', { id: 'apply-archive' }, outcome.archives.join(', '))) : h('p', {}, outcome.evicted.length ? 'No archive was written (archiving is off).' : 'Nothing was removed, so no archive was kept.'),
      h('div', { class: 'actions' }, done),
    );
    done.focus();
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

  const line = headline(stats);
  const heading = h('h2', { id: 'dialog-title' }, line.title);
  const summary = h('p', { id: 'dialog-summary' }, line.summary);
  const x = h('button', { type: 'button', class: 'close-x', 'aria-label': 'Close' }, '×');
  x.addEventListener('click', close);
  dialog.replaceChildren(h('div', { class: 'dialog-head' }, heading, x), warning, summary, body);
  if (!dialog.open) dialog.showModal();
  if (status.running) {
    // Opened again during a run (or after a reload): the run, not a new plan.
    void follow({ startedAt: status.running.startedAt, progress: status.running.progress, cancelling: status.running.cancelling, kind: status.running.kind }, undefined, String(suggested));
    return;
  }
  overview();
  (dialog.querySelector('#btn-clean') as HTMLButtonElement | null)?.focus();
}
