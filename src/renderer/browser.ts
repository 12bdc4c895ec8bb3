/**
 * The session browser: root sessions a page at a time from the utility (never the whole table
 * here), searched by title, sorted by size, creation or last activity, narrowed to one project
 * from the per-project totals, and pinned or unpinned (`keep` in the config file).
 */
import type { BrowseResult, BrowseRow, BrowseSort } from '../core/browse.js';
import type { SessionKeeperApi } from '../core/utility-protocol.js';
import { count } from './confirm.js';
import { bytes, day, h } from './util.js';

const PAGE = 50;

export function renderBrowser(root: HTMLElement, api: SessionKeeperApi): { load: () => Promise<void> } {
  const search = h('input', { type: 'search', id: 'browse-search', placeholder: 'Search titles', autocomplete: 'off', spellcheck: 'false' });
  const sort = h('select', { id: 'browse-sort' });
  for (const [value, label] of [
    ['size', 'Largest first'],
    ['updated', 'Most recently active first'],
    ['created', 'Newest first'],
  ] as const) {
    sort.append(h('option', { value }, label));
  }
  const status = h('p', { id: 'browse-status', class: 'status', 'aria-live': 'polite' });
  const projects = h('ul', { class: 'projects', id: 'browse-projects', 'aria-label': 'Projects' });
  const table = h('table', { class: 'browse', id: 'browse-table' });
  const prev = h('button', { type: 'button', id: 'browse-prev' }, 'Previous');
  const next = h('button', { type: 'button', id: 'browse-next' }, 'Next');
  const range = h('span', { id: 'browse-range', class: 'muted' });
  root.replaceChildren(
    h('h2', { id: 'sessions-title' }, 'Sessions'),
    h(
      'div',
      { class: 'browse-controls' },
      h('label', { for: 'browse-search' }, 'Search'),
      search,
      h('label', { for: 'browse-sort' }, 'Sort'),
      sort,
    ),
    h('div', { class: 'browse-grid' }, h('section', { 'aria-labelledby': 'projects-title' }, h('h3', { id: 'projects-title' }, 'By project'), projects), h('div', {}, table, h('div', { class: 'actions' }, prev, next, range), status)),
  );

  let offset = 0;
  let project: string | undefined;
  let seq = 0;

  const pinButton = (row: BrowseRow): HTMLElement => {
    const btn = h('button', { type: 'button', class: 'small pin', 'aria-pressed': String(row.pinned), 'data-pin': row.id, 'aria-label': `${row.pinned ? 'Unpin' : 'Pin'} "${row.title || row.id}"` }, row.pinned ? 'Pinned' : 'Pin');
    btn.addEventListener('click', () => {
      btn.setAttribute('disabled', '');
      void api
        .request('setPinned', { sessionId: row.id, pinned: !row.pinned })
        .then(() => load())
        .catch((error: unknown) => {
          status.textContent = `Not changed: ${(error as Error).message}`;
          btn.removeAttribute('disabled');
        });
    });
    return btn;
  };

  const show = (page: BrowseResult): void => {
    table.replaceChildren(
      h('caption', {}, project === undefined ? 'All projects' : (page.projects.find((p) => p.id === project)?.name ?? project)),
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', { scope: 'col' }, 'Session'),
          h('th', { scope: 'col' }, 'Project'),
          h('th', { scope: 'col' }, 'Created'),
          h('th', { scope: 'col' }, 'Last active'),
          h('th', { scope: 'col', class: 'num' }, 'Size'),
          h('th', { scope: 'col' }, 'Pin'),
        ),
      ),
    );
    const body = h('tbody');
    for (const row of page.sessions) {
      const kids = row.subtasks ? ` (+${count(row.subtasks, 'subtask')})` : '';
      body.append(
        h(
          'tr',
          { 'data-session-id': row.id, 'data-bytes': row.bytes },
          h('td', { class: 'title-cell', title: row.id }, `${row.title || row.id}${kids}`),
          h('td', { class: 'project-cell' }, row.project),
          h('td', {}, day(row.timeCreated)),
          h('td', {}, day(row.timeUpdated)),
          h('td', { class: 'num' }, bytes(row.bytes)),
          h('td', {}, pinButton(row)),
        ),
      );
    }
    if (page.sessions.length === 0) body.append(h('tr', {}, h('td', { colspan: 6 }, search.value.trim() ? `No session title contains "${search.value.trim()}".` : 'No sessions.')));
    table.append(body);
    const from = page.total === 0 ? 0 : page.offset + 1;
    range.textContent = `${from.toLocaleString('en-US')}–${(page.offset + page.sessions.length).toLocaleString('en-US')} of ${count(page.total, 'session')}`;
    table.dataset['total'] = String(page.total);
    prev.disabled = page.offset === 0;
    next.disabled = page.offset + page.sessions.length >= page.total;

    const all = page.projects.reduce((n, p) => ({ sessions: n.sessions + p.sessions, bytes: n.bytes + p.bytes }), { sessions: 0, bytes: 0 });
    const item = (id: string | undefined, name: string, sessions: number, size: number): HTMLElement => {
      const btn = h('button', { type: 'button', class: 'project', 'aria-pressed': String(project === id), 'data-project': id ?? '' }, h('span', { class: 'project-name' }, name), h('span', { class: 'project-figures' }, `${count(sessions, 'session')}, ${bytes(size)}`));
      btn.addEventListener('click', () => {
        project = id;
        offset = 0;
        void load();
      });
      return h('li', {}, btn);
    };
    projects.replaceChildren(item(undefined, 'All projects', all.sessions, all.bytes), ...page.projects.map((p) => item(p.id, p.name, p.sessions, p.bytes)));
  };

  const load = async (): Promise<void> => {
    const mine = ++seq;
    root.setAttribute('aria-busy', 'true');
    try {
      const page = await api.request('browseSessions', {
        sort: sort.value as BrowseSort,
        offset,
        limit: PAGE,
        ...(search.value.trim() ? { search: search.value.trim() } : {}),
        ...(project !== undefined ? { project } : {}),
      });
      if (mine !== seq) return;
      show(page);
      status.textContent = '';
      root.dataset['loaded'] = 'true';
    } catch (error) {
      if (mine === seq) status.textContent = `Cannot list sessions: ${(error as Error).message}`;
    } finally {
      if (mine === seq) root.setAttribute('aria-busy', 'false');
    }
  };

  let timer: number | undefined;
  search.addEventListener('input', () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => {
      offset = 0;
      void load();
    }, 200);
  });
  sort.addEventListener('change', () => {
    offset = 0;
    void load();
  });
  prev.addEventListener('click', () => {
    offset = Math.max(0, offset - PAGE);
    void load();
  });
  next.addEventListener('click', () => {
    offset += PAGE;
    void load();
  });
  return { load };
}
