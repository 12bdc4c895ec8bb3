/**
 * The renderer: a small page with the database overview and the settings panel; the size-check
 * dialog opens by itself when the utility process reports a threshold crossed at startup.
 * `#settings` opens the settings panel directly, `#sessions` the session browser, `#archives` the archives and history; `#size-check` opens the dialog.
 */
import type { ProtocolEvent, SessionKeeperApi, StartupResult } from '../core/utility-protocol.js';
import type { SpaceKind } from '../core/browse.js';
import { connectApi } from './api.js';
import { renderArchives } from './archives.js';
import { renderBrowser } from './browser.js';
import { renderSettings } from './settings.js';
import { chart, openSizeCheck, spaceBreakdown } from './size-check.js';
import { byId, bytes, h, plural } from './util.js';

const api: SessionKeeperApi = connectApi();
const dialog = byId<HTMLDialogElement>('size-dialog');
const banner = byId('banner');
const home = byId('view-home');
const settingsView = byId('view-settings');
const sessionsView = byId('view-sessions');
const archivesView = byId('view-archives');
let startup: StartupResult | null = null;

const settings = renderSettings(settingsView, api, () => void refreshHome());
const browser = renderBrowser(sessionsView, api, () => void refreshHome());
const archives = renderArchives(archivesView, api, () => void refreshHome());

type View = 'home' | 'settings' | 'sessions' | 'archives';
const VIEWS: readonly View[] = ['home', 'settings', 'sessions', 'archives'];
const viewOfHash = (): View => VIEWS.find((v) => location.hash === `#${v}`) ?? 'home';

function show(view: View, load = true): void {
  home.hidden = view !== 'home';
  settingsView.hidden = view !== 'settings';
  sessionsView.hidden = view !== 'sessions';
  archivesView.hidden = view !== 'archives';
  byId('nav-archives').setAttribute('aria-current', String(view === 'archives'));
  byId('nav-size').setAttribute('aria-current', String(view === 'home'));
  byId('nav-sessions').setAttribute('aria-current', String(view === 'sessions'));
  byId('nav-settings').setAttribute('aria-current', String(view === 'settings'));
  if (view === 'sessions' && load) void browser.load();
  if (view === 'archives') void archives.load();
  if (view === 'settings') {
    void settings.load();
    (settingsView.querySelector('input, select') as HTMLElement | null)?.focus();
  }
}

function note(text: string, kind: 'info' | 'bad' = 'info'): void {
  banner.hidden = text === '';
  banner.className = `banner ${kind}`;
  banner.textContent = text;
}

async function refreshHome(): Promise<void> {
  const body = byId('home-body');
  try {
    const [stats, settings] = await Promise.all([api.request('stats', { largest: 5 }), api.request('getSettings').catch(() => null)]);
    const resolved = settings?.resolved ?? {};
    const retentionOn = ['maxSizeMB', 'maxAgeDays', 'maxSessions'].some((k) => resolved[k] !== undefined && resolved[k] !== null);
    const total = stats.fileBytes + stats.walBytes;
    byId('db-line').textContent = `${stats.path} · ${bytes(total)}`;
    const openBtn = h('button', { type: 'button', id: 'btn-size-check', class: 'primary' }, 'Size check and clean-up…');
    openBtn.addEventListener('click', () => void openDialog());
    body.replaceChildren(
      h('p', {}, `${plural(stats.rootSessions, 'session')} (${stats.sessions} with subtasks), ${plural(stats.messages, 'message')}, ${bytes(stats.attachments.bytes)} of attachments.`),
      stats.warnings[0]
        ? h('p', { class: 'warn', id: 'home-warning' }, stats.warnings[0].message.replace(/^Warning: /, '').replace(' Consider archiving or enabling auto-retention.', retentionOn ? ' Auto-retention is on: it runs at the next start.' : ' Consider archiving or enabling auto-retention.'))
        : '',
      chart(spaceBreakdown(stats), total, openSessions),
      h('div', { class: 'actions' }, openBtn),
    );
  } catch (error) {
    body.replaceChildren(h('p', { class: 'field-error', role: 'alert' }, (error as Error).message));
  }
}

/** The session browser sorted by a kind of bytes: where a chart slice of sessions leads. */
function openSessions(kind: SpaceKind): void {
  location.hash = '#sessions';
  show('sessions', false);
  void browser.sortBy(kind);
}

async function openDialog(): Promise<void> {
  startup ??= await api.request('startup');
  await openSizeCheck(dialog, {
    api,
    startup,
    openSettings: () => {
      location.hash = '#settings';
      show('settings');
    },
    openSessions,
    changed: () => void refreshHome(),
  });
}

api.onEvent((event: ProtocolEvent) => {
  if (event.event === 'restarting') note(`The session-keeper process stopped (${event.reason}); restarting in ${Math.round(event.delayMs / 100) / 10} s…`, 'bad');
  if (event.event === 'restarted') {
    note('The session-keeper process was restarted.');
    void refreshHome();
  }
  if (event.event === 'progress' && event.requestId === null) note(`Retention at startup: ${event.progress.phase}…`);
  if (event.event === 'runEnded') {
    // Whether or not the dialog was watching: say how it ended, and read every figure again.
    const { outcome, error, restore } = event.end;
    if (event.end.kind === 'restore') {
      if (!restore) note(`The restore from the server failed: ${error ?? 'unknown error'}. What was restored before is whole; nothing was deleted anywhere.`, 'bad');
      else if (restore.cancelled) note(`The restore from the server was cancelled: ${plural(restore.restored.length, 'session')} restored, ${plural(restore.notReached?.length ?? 0, 'session')} left on the server.`);
      else note(`The restore from the server finished: ${plural(restore.restored.length, 'session')} restored, checked against the server.`);
    } else if (!outcome) note(`The clean-up failed: ${error ?? 'unknown error'}. Nothing was removed without a verified archive.`, 'bad');
    else if (outcome.cancelled) note(`The clean-up was cancelled: ${plural(outcome.evicted.length, 'session')} removed, ${plural(outcome.notReached?.length ?? 0, 'session')} left as they were.`);
    else note(`The clean-up finished: ${plural(outcome.evicted.length, 'session')} removed, ${bytes(outcome.bytesBefore)} → ${bytes(outcome.bytesAfter)}.`);
    banner.dataset['run'] = 'ended';
    void refreshHome();
    if (!sessionsView.hidden) void browser.load();
    if (!archivesView.hidden) void archives.load();
  }
});

byId('nav-size').addEventListener('click', () => {
  location.hash = '';
  show('home');
});
byId('nav-settings').addEventListener('click', () => {
  location.hash = '#settings';
  show('settings');
});
byId('nav-archives').addEventListener('click', () => {
  location.hash = '#archives';
  show('archives');
});
byId('nav-sessions').addEventListener('click', () => {
  location.hash = '#sessions';
  show('sessions');
});
window.addEventListener('hashchange', () => show(viewOfHash()));

async function boot(): Promise<void> {
  show(viewOfHash());
  startup = await api.request('startup');
  if (startup.error) note(startup.error, 'bad');
  else if (startup.retention && startup.retention.evicted.length > 0) {
    note(`Retention at startup removed ${plural(startup.retention.evicted.length, 'session')}: ${bytes(startup.retention.bytesBefore)} → ${bytes(startup.retention.bytesAfter)}.`);
  }
  await refreshHome();
  if ((startup.showDialog && viewOfHash() === 'home') || location.hash === '#size-check') await openDialog();
  document.body.dataset['ready'] = 'true';
}

void boot().catch((error: unknown) => {
  note(`session-keeper: ${(error as Error).message}`, 'bad');
  document.body.dataset['ready'] = 'true';
});
