/**
 * A clean-up as it runs: each phase (archive, verify, delete, reclaim) with its sessions and
 * bytes as the utility reports them from the work, one bar over the whole run with the time left,
 * and Cancel, which stops between two session trees. The run lives in the utility, not in this
 * view: a dialog closed and opened again, or a reloaded page, follows the same run.
 */
import type { ApplyOutcome, ProgressView, RestoreOutcome, RunEnd, RunKind, SessionKeeperApi } from '../core/utility-protocol.js';
import { count } from './confirm.js';
import { bytes, h } from './util.js';

type Phase = 'archive' | 'verify' | 'delete' | 'reclaim' | 'restore';
interface PhaseStep {
  key: Phase;
  label: string;
  from: number;
  to: number;
}
const CLEAN_UP: PhaseStep[] = [
  { key: 'archive', label: 'Write the archive', from: 0, to: 0.4 },
  { key: 'verify', label: 'Read the archive back and check it', from: 0.4, to: 0.55 },
  { key: 'delete', label: 'Remove the sessions', from: 0.55, to: 0.9 },
  { key: 'reclaim', label: 'Give the space back to the disk', from: 0.9, to: 1 },
];
const RESTORE: PhaseStep[] = [{ key: 'restore', label: 'Copy the sessions back from the server and check them', from: 0, to: 1 }];

/** What each kind of run says about itself. */
const KIND_TEXT: Record<RunKind, { title: string; phases: PhaseStep[]; cancelHelp: string; stopping: string }> = {
  'clean-up': {
    title: 'Archiving and cleaning up',
    phases: CLEAN_UP,
    cancelHelp: 'Cancel stops after the session being removed: nothing is left half-deleted, and the archive is kept.',
    stopping: 'Stopping after the session being removed…',
  },
  restore: {
    title: 'Restoring from the server',
    phases: RESTORE,
    cancelHelp: 'Cancel stops after the session being restored: what came back is whole and checked against the server, the rest stays on the server.',
    stopping: 'Stopping after the session being restored…',
  },
};

/** How far a phase is, 0..1, from its own counts. */
function within(progress: ProgressView): number {
  if (progress.phase === 'delete') return progress.of ? (progress.deleted ?? 0) / progress.of : 0;
  if (progress.phase === 'reclaim') return progress.mode !== undefined ? 1 : 0;
  // A restore's sessions differ widely in size: its bytes say how far it is.
  if (progress.phase === 'restore' && progress.ofBytes) return (progress.bytes ?? 0) / progress.ofBytes;
  return progress.sessions ? (progress.done ?? 0) / progress.sessions : 0;
}

/** The whole run, 0..1. */
export function overall(progress: ProgressView | null, phases: readonly PhaseStep[] = CLEAN_UP): number {
  if (!progress) return 0;
  if (progress.phase === 'done') return 1;
  const phase = phases.find((p) => p.key === progress.phase);
  if (!phase) return 0;
  return phase.from + (phase.to - phase.from) * Math.min(1, within(progress));
}

/** "about 40 s left", from the pace so far; empty until there is enough to go on. */
export function timeLeft(fraction: number, elapsedMs: number): string {
  if (fraction < 0.03 || fraction >= 1 || elapsedMs < 1000) return '';
  const left = (elapsedMs * (1 - fraction)) / fraction / 1000;
  if (left < 60) return `about ${Math.max(1, Math.round(left))} s left`;
  return `about ${Math.round(left / 60)} min left`;
}

function phaseLine(key: Phase, progress: ProgressView): string {
  switch (key) {
    case 'archive':
      return `${(progress.done ?? 0).toLocaleString('en-US')} of ${count(progress.sessions ?? 0, 'session')}, ${bytes(progress.bytes ?? 0)} written`;
    case 'verify':
      return `${(progress.done ?? 0).toLocaleString('en-US')} of ${count(progress.sessions ?? 0, 'session')} checked (${bytes(progress.bytes ?? 0)})`;
    case 'delete':
      return `${(progress.deleted ?? 0).toLocaleString('en-US')} of ${count(progress.of ?? 0, 'session')}, ${bytes(progress.bytes ?? 0)} of ${bytes(progress.ofBytes ?? 0)}`;
    case 'restore':
      return `${(progress.done ?? 0).toLocaleString('en-US')} of ${count(progress.sessions ?? 0, 'session')}, ${bytes(progress.bytes ?? 0)} of ${bytes(progress.ofBytes ?? 0)}`;
    case 'reclaim':
      return progress.bytesAfter !== undefined ? `${bytes(progress.bytesBefore ?? 0)} → ${bytes(progress.bytesAfter)}` : `${bytes(progress.bytesBefore ?? 0)} file, compacting…`;
  }
}

export interface RunHandle {
  /** Resolves when the run ended, however it ended. */
  ended: Promise<RunEnd>;
}

/**
 * Renders the run into `root` and follows it until it ends. `own` is the apply request when this
 * page started the run (its answer may come before the event).
 */
export function followRun(
  root: HTMLElement,
  api: SessionKeeperApi,
  start: { startedAt: number; progress: ProgressView | null; cancelling: boolean; kind?: RunKind | undefined },
  own?: Promise<ApplyOutcome> | Promise<RestoreOutcome>,
): RunHandle {
  const kind = start.kind ?? 'clean-up';
  const text = KIND_TEXT[kind];
  const PHASES = text.phases;
  const bar = h('progress', { id: 'apply-progress', max: 100, value: 0, 'aria-labelledby': 'apply-phase' });
  const phaseText = h('span', { id: 'apply-phase', 'aria-live': 'polite' }, 'Starting…');
  const eta = h('span', { id: 'apply-eta', class: 'muted' });
  const rows = new Map<Phase, { row: HTMLElement; figure: HTMLElement }>();
  const list = h('ol', { class: 'phases', id: 'apply-phases' });
  for (const phase of PHASES) {
    const figure = h('span', { class: 'phase-figure', 'data-phase': phase.key });
    const row = h('li', { class: 'phase waiting', 'data-phase': phase.key }, h('span', { class: 'phase-label' }, phase.label), figure);
    rows.set(phase.key, { row, figure });
    list.append(row);
  }
  const cancelBtn = h('button', { type: 'button', id: 'btn-cancel-run' }, 'Cancel');
  const cancelHelp = h('p', { class: 'help', id: 'cancel-help' }, text.cancelHelp);
  root.replaceChildren(h('h3', { id: 'run-title' }, text.title), bar, h('p', { class: 'run-line' }, phaseText, ' ', eta), list, h('div', { class: 'actions' }, cancelBtn), cancelHelp);
  root.dataset['running'] = 'true';

  const show = (progress: ProgressView | null): void => {
    const fraction = overall(progress, PHASES);
    bar.value = Math.round(fraction * 100);
    bar.dataset['fraction'] = String(fraction);
    eta.textContent = timeLeft(fraction, Date.now() - start.startedAt);
    if (!progress) return;
    const at = PHASES.findIndex((p) => p.key === progress.phase);
    PHASES.forEach((phase, i) => {
      const entry = rows.get(phase.key)!;
      const state = progress.phase === 'done' || i < at ? 'done' : i === at ? 'running' : 'waiting';
      entry.row.className = `phase ${state}`;
      if (i === at) entry.figure.textContent = phaseLine(phase.key, progress);
      else if (state === 'done' && entry.figure.textContent === '') entry.figure.textContent = 'done';
    });
    const current = PHASES[at];
    phaseText.textContent = progress.phase === 'done' ? 'Finishing…' : progress.phase === 'plan' ? 'Checking the plan…' : `${current?.label ?? progress.phase}…`;
  };
  show(start.progress);
  const ticker = window.setInterval(() => show(last), 1000);
  let last = start.progress;

  const markCancelling = (): void => {
    cancelBtn.disabled = true;
    cancelBtn.textContent = 'Cancelling…';
    cancelHelp.textContent = text.stopping;
  };
  if (start.cancelling) markCancelling();
  cancelBtn.addEventListener('click', () => {
    markCancelling();
    void api.request('cancelRun').catch(() => undefined);
  });

  let off: () => void = () => undefined;
  let poll = 0;
  const ended = new Promise<RunEnd>((resolve) => {
    off = api.onEvent((event) => {
      if (event.event === 'progress' && event.requestId !== null) {
        last = event.progress;
        show(last);
      }
      if (event.event === 'runEnded') resolve(event.end);
    });
    const answered = (outcome: ApplyOutcome | RestoreOutcome): RunEnd =>
      'from' in outcome ? { requestId: 0, kind, endedAt: Date.now(), outcome: null, restore: outcome, error: null } : { requestId: 0, kind, endedAt: Date.now(), outcome, error: null };
    (own as Promise<ApplyOutcome | RestoreOutcome> | undefined)?.then(
      (outcome) => resolve(answered(outcome)),
      (error: unknown) => resolve({ requestId: 0, kind, endedAt: Date.now(), outcome: null, error: (error as Error).message }),
    );
    // A run that ended while no event could reach us (a reconnect) is found by asking.
    poll = window.setInterval(() => {
      void api
        .request('runStatus')
        .then((status) => {
          if (!status.running && status.last && status.last.endedAt >= start.startedAt) resolve(status.last);
        })
        .catch(() => undefined);
    }, 3000);
  }).finally(() => {
    off();
    window.clearInterval(ticker);
    window.clearInterval(poll);
    delete root.dataset['running'];
  });
  return { ended };
}
