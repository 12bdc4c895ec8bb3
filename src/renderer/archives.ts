/**
 * Archives and history: the session archives in the archive folder (sessions, size, date), the
 * sessions one holds with a Restore for each and for all, and the clean-ups done so far.
 */
import type { ArchiveListEntry, SessionKeeperApi } from '../core/utility-protocol.js';
import { count } from './confirm.js';
import { bytes, day, h } from './util.js';

function when(ms: number): string {
  return new Date(ms).toLocaleString('en-GB', { dateStyle: 'medium', timeStyle: 'short' });
}

export function renderArchives(root: HTMLElement, api: SessionKeeperApi, onRestored: () => void): { load: () => Promise<void> } {
  const folder = h('p', { class: 'help', id: 'archives-folder' });
  const list = h('table', { class: 'archives', id: 'archives-table' });
  const contents = h('section', { id: 'archive-contents', 'aria-live': 'polite' });
  const history = h('table', { class: 'history', id: 'history-table' });
  const status = h('p', { id: 'archives-status', class: 'status', role: 'status', 'aria-live': 'polite' });
  root.replaceChildren(
    h('h2', { id: 'archives-title' }, 'Archives'),
    folder,
    list,
    status,
    contents,
    h('h3', { id: 'history-title' }, 'Past clean-ups and restores'),
    history,
  );

  const restore = async (archive: ArchiveListEntry, ids?: string[]): Promise<void> => {
    status.className = 'status';
    status.textContent = 'Restoring…';
    try {
      const done = await api.request('restoreArchive', ids ? { name: archive.name, sessionIds: ids } : { name: archive.name });
      status.className = 'status ok';
      status.textContent = `Restored ${count(done.restored.length, 'session')}${done.skipped.length ? `; ${count(done.skipped.length, 'session')} already there were left as they are` : ''}.`;
      await open(archive);
      onRestored();
    } catch (error) {
      status.className = 'status bad';
      status.textContent = `Not restored: ${(error as Error).message}`;
    }
  };

  const open = async (archive: ArchiveListEntry): Promise<void> => {
    const result = await api.request('archiveContents', { name: archive.name });
    const all = h('button', { type: 'button', id: 'btn-restore-all' }, 'Restore all');
    all.addEventListener('click', () => void restore(archive));
    const table = h('table', { class: 'archive-sessions', id: 'archive-sessions' }, h('caption', {}, `In ${archive.name}`));
    table.append(h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Session'), h('th', { scope: 'col' }, 'Created'), h('th', { scope: 'col' }, ''))));
    const body = h('tbody');
    for (const s of result.sessions) {
      let action: HTMLElement;
      if (s.present) action = h('span', { class: 'muted' }, 'In the database');
      else {
        const btn = h('button', { type: 'button', class: 'small', 'data-restore': s.id, 'aria-label': `Restore "${s.title || s.id}"` }, 'Restore');
        btn.addEventListener('click', () => void restore(archive, [s.id]));
        action = btn;
      }
      const kids = s.subtasks ? ` (+${count(s.subtasks, 'subtask')})` : '';
      body.append(h('tr', { 'data-session-id': s.id, 'data-present': String(s.present) }, h('td', { class: 'title-cell', title: s.id }, `${s.title || s.id}${kids}`), h('td', {}, day(s.timeCreated)), h('td', {}, action)));
    }
    table.append(body);
    contents.replaceChildren(table, h('div', { class: 'actions' }, all));
  };

  const load = async (): Promise<void> => {
    try {
      const [archives, past] = await Promise.all([api.request('listArchives'), api.request('history')]);
      folder.textContent = `Archive folder: ${archives.archiveDir}`;
      list.replaceChildren(
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Written'), h('th', { scope: 'col', class: 'num' }, 'Sessions'), h('th', { scope: 'col', class: 'num' }, 'Size'), h('th', { scope: 'col' }, ''))),
      );
      const body = h('tbody');
      for (const a of archives.archives) {
        const show = h('button', { type: 'button', class: 'small', 'data-open': a.name, 'aria-label': `Show the sessions in ${a.name}` }, 'Show sessions');
        show.addEventListener('click', () => void open(a));
        body.append(
          h(
            'tr',
            { 'data-archive': a.name },
            h('td', { title: a.name }, when(a.time)),
            h('td', { class: 'num' }, a.error ? 'unreadable' : `${a.roots.toLocaleString('en-US')}${a.sessions > a.roots ? ` (+${a.sessions - a.roots})` : ''}`),
            h('td', { class: 'num' }, bytes(a.bytes)),
            h('td', {}, a.error ? h('span', { class: 'field-error' }, a.error) : show),
          ),
        );
      }
      if (archives.archives.length === 0) body.append(h('tr', {}, h('td', { colspan: 4 }, 'No archives yet: a clean-up writes one before it removes anything.')));
      list.append(body);

      history.replaceChildren(
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'When'), h('th', { scope: 'col' }, 'What'), h('th', { scope: 'col', class: 'num' }, 'Removed'), h('th', { scope: 'col', class: 'num' }, 'Size before → after'))),
      );
      const rows = h('tbody');
      for (const e of past.entries) {
        const what =
          e.kind === 'restore'
            ? `Restored ${count(e.restored ?? 0, 'session')} from ${e.from ?? 'the server'}${e.cancelled ? ' (cancelled)' : ''}`
            : `${e.kind === 'startup' ? 'Retention at startup' : 'Clean-up'}${e.cancelled ? ' (cancelled)' : ''}`;
        rows.append(h('tr', {}, h('td', {}, when(e.at)), h('td', { class: 'history-what' }, what), h('td', { class: 'num' }, e.kind === 'restore' ? h('span', { title: 'A restore removes nothing' }, '—') : count(e.removed, 'session')), h('td', { class: 'num' }, `${bytes(e.bytesBefore)} → ${bytes(e.bytesAfter)}`)));
      }
      if (past.entries.length === 0) rows.append(h('tr', {}, h('td', { colspan: 4 }, 'No clean-ups yet.')));
      history.append(rows);
      root.dataset['loaded'] = 'true';
    } catch (error) {
      status.className = 'status bad';
      status.textContent = `Cannot list the archives: ${(error as Error).message}`;
    }
  };
  return { load };
}
