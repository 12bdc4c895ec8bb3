/**
 * The session browser: root sessions a page at a time from the utility (never the whole table
 * here), searched by title, sorted by size, creation or last activity, narrowed to one project
 * from the per-project totals, and pinned or unpinned (`keep` in the config file). A session
 * opens with its messages a page at a time from the paged API; attachments are links to the
 * attachment URL, never their bytes in the page. With a server configured, its sessions the file
 * no longer holds are listed too, each row marked where it lives; such a session pages from the
 * server and has "Restore to this computer".
 */
import { SPACE_KINDS, type BrowseResult, type BrowseRow, type BrowseSort, type SessionWhere, type SpaceKind } from '../core/browse.js';
import type { PlanResult, RunEnd, SessionKeeperApi } from '../core/utility-protocol.js';
import { ApiError, attachmentUrl } from './api.js';
import { confirmationText, count } from './confirm.js';
import { followRun } from './run-view.js';
import { bytes, day, h } from './util.js';

const PAGE = 50;

const WHERE_LABEL: Record<SessionWhere, string> = { local: 'local', both: 'both', server: 'server only' };
const WHERE_HELP: Record<SessionWhere, string> = {
  local: 'Only on this computer: not on the server yet',
  both: 'On this computer and on the server',
  server: 'Only on the server: this computer no longer holds it',
};

function whereBadge(where: SessionWhere | undefined): HTMLElement | '' {
  return where ? h('span', { class: `where where-${where}`, 'data-where': where, title: WHERE_HELP[where] }, WHERE_LABEL[where]) : '';
}

/** The column a sort by kind adds, and what its dash means. */
const KIND_COLUMN: Record<SpaceKind, string> = { attachments: 'Attachments', events: 'Event log', text: 'Text' };
const NO_KIND = 'Not known for a session only on the server: its parts are not indexed on this computer';

function isKind(sort: string): sort is SpaceKind {
  return (SPACE_KINDS as readonly string[]).includes(sort);
}

export function renderBrowser(root: HTMLElement, api: SessionKeeperApi, onChanged: () => void = () => undefined): { load: () => Promise<void>; sortBy: (sort: BrowseSort) => Promise<void> } {
  const search = h('input', { type: 'search', id: 'browse-search', placeholder: 'Search titles', autocomplete: 'off', spellcheck: 'false' });
  const sort = h('select', { id: 'browse-sort' });
  for (const [value, label] of [
    ['size', 'Largest first'],
    ['updated', 'Most recently active first'],
    ['created', 'Newest first'],
    ['attachments', 'Most attachment bytes first'],
    ['events', 'Most event-log bytes first'],
    ['text', 'Most text first'],
  ] as const) {
    sort.append(h('option', { value }, label));
  }
  // Shown once a page says a server is configured.
  const whereSelect = h('select', { id: 'browse-where' });
  for (const [value, label] of [
    ['', 'Everywhere'],
    ['local', 'Only on this computer'],
    ['both', 'On both'],
    ['server', 'Only on the server'],
  ] as const) {
    whereSelect.append(h('option', { value }, label));
  }
  const whereControl = h('span', { class: 'browse-where', hidden: true }, h('label', { for: 'browse-where' }, 'Where'), whereSelect);
  const status = h('p', { id: 'browse-status', class: 'status', 'aria-live': 'polite' });
  const projects = h('ul', { class: 'projects', id: 'browse-projects', 'aria-label': 'Projects' });
  const table = h('table', { class: 'browse', id: 'browse-table' });
  const prev = h('button', { type: 'button', id: 'browse-prev' }, 'Previous');
  const next = h('button', { type: 'button', id: 'browse-next' }, 'Next');
  const range = h('span', { id: 'browse-range', class: 'muted' });
  /** Chosen rows, kept across pages and searches. */
  const selected = new Set<string>();
  const removeBtn = h('button', { type: 'button', class: 'danger', id: 'btn-remove-selected', disabled: true }, 'Archive and remove selected…');
  const clearBtn = h('button', { type: 'button', id: 'btn-clear-selection', disabled: true }, 'Clear selection');
  const selectionLine = h('span', { id: 'browse-selection', class: 'muted' }, 'None selected.');
  const action = h('div', { class: 'selection-action', id: 'selection-action', hidden: true });
  const syncSelection = (): void => {
    selectionLine.textContent = selected.size ? `${count(selected.size, 'session')} selected.` : 'None selected.';
    removeBtn.disabled = selected.size === 0;
    clearBtn.disabled = selected.size === 0;
  };
  root.replaceChildren(
    h('h2', { id: 'sessions-title' }, 'Sessions'),
    h(
      'div',
      { class: 'browse-controls' },
      h('label', { for: 'browse-search' }, 'Search'),
      search,
      h('label', { for: 'browse-sort' }, 'Sort'),
      sort,
      whereControl,
    ),
    h(
      'div',
      { class: 'browse-grid' },
      h('section', { 'aria-labelledby': 'projects-title' }, h('h3', { id: 'projects-title' }, 'By project'), projects),
      h('div', { class: 'browse-main' }, h('div', { class: 'actions selection-bar' }, selectionLine, removeBtn, clearBtn), action, h('div', { class: 'browse-table-wrap' }, table), h('div', { class: 'actions' }, prev, next, range), status),
    ),
  );

  let offset = 0;
  let project: string | undefined;
  let seq = 0;
  const viewer = h('section', { id: 'session-view', class: 'session-view', 'aria-live': 'polite', hidden: true });
  root.append(viewer);

  /** One part, as text a person reads: long text cut, tools by name, attachments as links. */
  const partView = (part: Record<string, unknown>): HTMLElement | null => {
    const type = String(part['type'] ?? '');
    const attachment = part['attachment'] as { ref: string; mime: string; filename: string | null; bytes: number } | undefined;
    if (attachment) {
      const link = h('a', { href: '#', class: 'attachment-link', 'data-ref': attachment.ref }, `${attachment.filename ?? attachment.ref} (${attachment.mime}, ${bytes(attachment.bytes)})`);
      link.addEventListener('click', (event) => {
        event.preventDefault();
        link.textContent = `${attachment.filename ?? attachment.ref} (preparing…)`;
        void api
          .request('attachment', { ref: attachment.ref })
          .then((file) => {
            link.href = attachmentUrl(file.relPath, file.mime);
            link.target = '_blank';
            link.rel = 'noopener';
            link.textContent = `${attachment.filename ?? attachment.ref} (${attachment.mime}, ${bytes(attachment.bytes)})`;
            window.open(link.href, '_blank', 'noopener');
          })
          .catch((error: unknown) => {
            link.textContent = `${attachment.filename ?? attachment.ref}: ${(error as Error).message}`;
          });
      });
      return h('p', { class: 'part part-file' }, 'Attachment: ', link);
    }
    if (type === 'text' || type === 'reasoning') {
      const text = String(part['text'] ?? '');
      return h('p', { class: `part part-${type}` }, type === 'reasoning' ? h('span', { class: 'muted' }, 'Thinking: ') : '', text.length > 2000 ? `${text.slice(0, 2000)}…` : text);
    }
    if (type === 'tool') return h('p', { class: 'part part-tool muted' }, `Tool: ${String(part['tool'] ?? 'tool')}`);
    return null;
  };

  /** What a restore did, in one line. */
  const restoreResult = (end: RunEnd): HTMLElement => {
    const r = end.restore;
    if (!r) return h('span', { class: 'field-error', role: 'alert', id: 'restore-result' }, `Not restored: ${end.error ?? 'unknown error'}`);
    const text = r.cancelled
      ? `Cancelled: ${count(r.restored.length, 'session')} restored and checked against the server; ${count(r.notReached?.length ?? 0, 'session')} left on the server.`
      : r.restored.length
        ? `Restored to this computer: ${count(r.restored.length, 'session')}, checked against the server.`
        : 'This computer already holds it: nothing restored.';
    return h('span', { class: 'status ok', id: 'restore-result', 'data-restored': r.restored.length, 'data-cancelled': r.cancelled ? 'yes' : 'no' }, text);
  };

  /**
   * "Restore to this computer": the session (with its subtasks) copied back from the server into
   * the file as a run (progress, Cancel, followed again after a reload); afterwards the list shows
   * it as in both.
   */
  const restoreButton = (row: BrowseRow, line: HTMLElement): HTMLElement => {
    const btn = h('button', { type: 'button', class: 'primary', id: 'btn-restore-server' }, 'Restore to this computer');
    btn.addEventListener('click', () => {
      btn.setAttribute('disabled', '');
      const own = api.request('restoreFromServer', { sessionId: row.id });
      const view = h('div', { class: 'run-view', id: 'restore-run' });
      line.replaceChildren(view);
      void followRun(view, api, { startedAt: Date.now(), progress: null, cancelling: false, kind: 'restore' }, own).ended.then((end) => {
        line.replaceChildren(restoreResult(end));
        if (end.restore && end.restore.restored.length + end.restore.skipped.length > 0 && !end.restore.notReached?.includes(row.id)) {
          viewer.querySelector('.where')?.replaceWith(whereBadge('both'));
          viewer.querySelector('#session-source')?.replaceChildren();
          viewer.dataset['where'] = 'both';
          btn.remove();
        } else {
          btn.removeAttribute('disabled');
        }
        onChanged();
        void load();
      });
    });
    return btn;
  };

  /** A restore already running (this page was reloaded, or another window started it): followed in the list's action area. */
  const followRunningRestore = async (): Promise<void> => {
    const status = await api.request('runStatus').catch(() => null);
    const running = status?.running;
    if (!running || running.kind !== 'restore') return;
    action.hidden = false;
    const view = h('div', { class: 'run-view', id: 'restore-run' });
    action.replaceChildren(view);
    const end = await followRun(view, api, { startedAt: running.startedAt, progress: running.progress, cancelling: running.cancelling, kind: 'restore' }).ended;
    action.replaceChildren(h('p', {}, restoreResult(end)));
    onChanged();
    await load();
  };

  const openSession = async (row: BrowseRow): Promise<void> => {
    const back = h('button', { type: 'button', id: 'btn-session-back' }, 'Back to the list');
    const more = h('button', { type: 'button', id: 'btn-session-more', hidden: true }, 'Load more messages');
    const list = h('ol', { class: 'messages', id: 'session-messages' });
    back.addEventListener('click', () => {
      viewer.hidden = true;
      for (const el of root.querySelectorAll<HTMLElement>('.browse-controls, .browse-grid')) el.hidden = false;
      (root.querySelector(`tr[data-session-id="${row.id}"] .open-session`) as HTMLElement | null)?.focus();
    });
    const restoreLine = h('p', { class: 'run-line', id: 'restore-line' });
    const onServer = row.where === 'server';
    viewer.dataset['where'] = row.where ?? '';
    viewer.replaceChildren(
      h('h3', { id: 'session-title' }, row.title || row.id),
      h('p', { class: 'help' }, `${row.project} · created ${day(row.timeCreated)} · ${bytes(row.bytes)} `, whereBadge(row.where), h('span', { id: 'session-source' }, onServer ? ' · read from the server' : '')),
      h('div', { class: 'actions' }, back, onServer ? restoreButton(row, restoreLine) : ''),
      restoreLine,
      list,
      more,
    );
    for (const el of root.querySelectorAll<HTMLElement>('.browse-controls, .browse-grid')) el.hidden = true;
    viewer.hidden = false;
    back.focus();
    let cursor: string | null = null;
    const page = async (): Promise<void> => {
      more.disabled = true;
      const result = await api.request('showSession', { sessionId: row.id, limit: 20, cursor });
      for (const message of result.messages) {
        const role = String(message.info['role'] ?? 'message');
        const parts = message.parts.map(partView).filter((p): p is HTMLElement => p !== null);
        list.append(h('li', { class: `message message-${role}` }, h('p', { class: 'role' }, role === 'user' ? 'You' : role === 'assistant' ? 'Assistant' : role), ...parts));
      }
      cursor = result.nextCursor;
      more.hidden = cursor === null;
      more.disabled = false;
      viewer.dataset['loaded'] = 'true';
    };
    more.addEventListener('click', () => void page());
    await page().catch((error: unknown) => list.append(h('li', { class: 'field-error' }, (error as Error).message)));
  };

  const pinButton = (row: BrowseRow): HTMLElement | string => {
    // Pins keep sessions in the file: one the file does not hold has nothing to keep.
    if (row.where === 'server') return '';
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

  const selectBox = (row: BrowseRow): HTMLElement | string => {
    // Archive-and-remove works on the file's sessions; a server-only one is not there to remove.
    if (row.where === 'server') return '';
    const box = h('input', { type: 'checkbox', 'data-select': row.id, 'aria-label': `Select "${row.title || row.id}"`, checked: selected.has(row.id) });
    box.addEventListener('change', () => {
      if (box.checked) selected.add(row.id);
      else selected.delete(row.id);
      syncSelection();
    });
    return box;
  };

  /** Archive and remove the chosen sessions: a plan of exactly those, said with its count and asked, then the run. */
  const removeSelected = async (): Promise<void> => {
    action.hidden = false;
    action.replaceChildren(h('p', {}, 'Planning…'));
    let plan: PlanResult;
    try {
      plan = await api.request('plan', { sessions: [...selected] });
    } catch (error) {
      action.replaceChildren(h('p', { class: 'field-error', role: 'alert' }, (error as Error).message));
      return;
    }
    const held = plan.held ?? [];
    const why = { pinned: 'pinned', active: 'active in the last hour', 'not-found': 'no longer in the database' } as const;
    const yes = h('button', { type: 'button', class: 'danger', id: 'btn-confirm-remove', disabled: plan.evict.length === 0 }, plan.archive ? `Archive and remove ${count(plan.evict.length, 'session')}` : `Remove ${count(plan.evict.length, 'session')} without an archive`);
    const no = h('button', { type: 'button', id: 'btn-cancel-remove' }, 'Cancel');
    no.addEventListener('click', () => {
      action.hidden = true;
      removeBtn.focus();
    });
    yes.addEventListener('click', () => void run(plan));
    action.replaceChildren(
      h('p', { id: 'remove-text', 'data-evict': plan.evict.length, 'data-plan-id': plan.planId }, `${confirmationText(plan)} About ${bytes(plan.freesBytes)} freed.`),
      held.length ? h('p', { class: 'note', id: 'remove-held' }, `Kept: ${held.map((x) => `${x.id} (${why[x.why]})`).join(', ')}.`) : '',
      h('div', { class: 'actions' }, no, yes),
    );
    no.focus();
  };

  const run = async (plan: PlanResult): Promise<void> => {
    const own = api.request('apply', { planId: plan.planId });
    const handle = followRun(action, api, { startedAt: Date.now(), progress: null, cancelling: false }, own);
    const end = await handle.ended;
    const refusal = await own.then(() => null, (error: unknown) => error);
    if (refusal instanceof ApiError && refusal.code === 'stale-plan') {
      action.replaceChildren(h('p', { class: 'warn', role: 'alert', id: 'remove-result' }, 'The database changed since the selection was planned, so nothing was removed. Choose Archive and remove again to see the new plan.'));
    } else if (end.outcome) {
      const o = end.outcome;
      for (const id of o.evicted) selected.delete(id);
      syncSelection();
      action.replaceChildren(
        h('p', { class: 'status ok', id: 'remove-result', 'data-evicted': o.evicted.length }, o.cancelled ? `Cancelled: ${count(o.evicted.length, 'session')} removed, the rest left as they were.` : `${count(o.evicted.length, 'session')} archived and removed: ${bytes(o.bytesBefore)} → ${bytes(o.bytesAfter)}.`),
      );
    } else {
      action.replaceChildren(h('p', { class: 'field-error', role: 'alert', id: 'remove-result' }, `Not removed: ${end.error ?? 'unknown error'}`));
    }
    onChanged();
    await load();
  };

  const openButton = (row: BrowseRow, label: string): HTMLElement => {
    const btn = h('button', { type: 'button', class: 'link open-session', 'data-open-session': row.id }, label);
    btn.addEventListener('click', () => void openSession(row));
    return btn;
  };

  const show = (page: BrowseResult): void => {
    const kind = isKind(sort.value) ? sort.value : null;
    table.dataset['sort'] = sort.value;
    table.replaceChildren(
      h('caption', {}, project === undefined ? 'All projects' : (page.projects.find((p) => p.id === project)?.name ?? project)),
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Select')),
          h('th', { scope: 'col' }, 'Session'),
          h('th', { scope: 'col' }, 'Project'),
          h('th', { scope: 'col' }, 'Created'),
          h('th', { scope: 'col' }, 'Last active'),
          h('th', { scope: 'col', class: 'num' }, 'Size'),
          kind ? h('th', { scope: 'col', class: 'num', 'data-kind': kind }, KIND_COLUMN[kind]) : null,
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
          { 'data-session-id': row.id, 'data-bytes': row.bytes, 'data-where': row.where },
          h('td', {}, selectBox(row)),
          h('td', { class: 'title-cell', title: row.id }, row.where ? h('div', { class: 'title-line' }, whereBadge(row.where), openButton(row, `${row.title || row.id}${kids}`)) : openButton(row, `${row.title || row.id}${kids}`)),
          h('td', { class: 'project-cell' }, row.project),
          h('td', {}, day(row.timeCreated)),
          h('td', {}, day(row.timeUpdated)),
          h('td', { class: 'num' }, bytes(row.bytes)),
          kind ? h('td', { class: 'num kind-cell', 'data-kind-bytes': row.space ? row.space[kind] : '' }, row.space ? bytes(row.space[kind]) : h('span', { title: NO_KIND }, '—')) : null,
          h('td', {}, pinButton(row)),
        ),
      );
    }
    if (page.sessions.length === 0) body.append(h('tr', {}, h('td', { colspan: kind ? 8 : 7 }, search.value.trim() ? `No session title contains "${search.value.trim()}".` : 'No sessions.')));
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
        ...(whereSelect.value ? { where: whereSelect.value as SessionWhere } : {}),
      });
      if (mine !== seq) return;
      show(page);
      whereControl.hidden = page.server === undefined;
      status.textContent = page.server?.error ? `Sessions on the server (${page.server.target}) are not shown: ${page.server.error}` : '';
      root.dataset['loaded'] = 'true';
    } catch (error) {
      if (mine === seq) status.textContent = `Cannot list sessions: ${(error as Error).message}`;
    } finally {
      if (mine === seq) root.setAttribute('aria-busy', 'false');
    }
  };

  removeBtn.addEventListener('click', () => void removeSelected());
  clearBtn.addEventListener('click', () => {
    selected.clear();
    syncSelection();
    for (const box of table.querySelectorAll<HTMLInputElement>('input[data-select]')) box.checked = false;
  });

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
  whereSelect.addEventListener('change', () => {
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
  /** Opens sorted by `value` (the size check's chart opens it by a kind of bytes), from the first page. */
  const sortBy = async (value: BrowseSort): Promise<void> => {
    sort.value = value;
    offset = 0;
    await load();
  };

  void followRunningRestore();
  return { load, sortBy };
}
