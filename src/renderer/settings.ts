/**
 * The settings panel: retention on/off and its limits, archiving, warning thresholds, storage
 * backend with "Test connection", and a live preview of what the values would evict at the next
 * start. Values are checked on every keystroke with the same schema the utility uses (instant);
 * invalid values show next to their field and nothing is saved. Saving values that would remove
 * more than half the sessions at the next start, or that turn archiving off, asks first with the
 * count. Saving writes the `session` block back (comments kept).
 */
import { checkSettingsForm } from '../core/settings-form.js';
import type { FieldError, PlanResult, SessionKeeperApi, SettingsInput, SettingsResult } from '../core/utility-protocol.js';
import { ApiError } from './api.js';
import { count, needsConfirmation } from './confirm.js';
import { bytes, h } from './util.js';

const LIMITS = ['maxSizeMB', 'maxAgeDays', 'maxSessions'] as const;

function textValue(raw: unknown): string {
  if (raw === undefined || raw === null) return '';
  if (Array.isArray(raw)) return raw.join(', ');
  return String(raw);
}

/** A number when the text is one, else the text itself (so the error can quote it). */
function numberOrText(text: string): number | string | null {
  const t = text.trim();
  if (t === '') return null;
  const n = Number(t);
  return Number.isFinite(n) ? n : t;
}

interface Field {
  key: string;
  input: HTMLInputElement | HTMLSelectElement;
  error: HTMLElement;
}

export function renderSettings(root: HTMLElement, api: SessionKeeperApi, onSaved: () => void): { load: () => Promise<void> } {
  const fields = new Map<string, Field>();
  let loaded: SettingsResult | null = null;

  const field = (key: string, label: string, input: HTMLInputElement | HTMLSelectElement, help?: string): HTMLElement => {
    input.id = `f-${key}`;
    input.name = key;
    const error = h('p', { class: 'field-error', id: `f-${key}-error`, 'aria-live': 'polite' });
    const helpEl = help ? h('p', { class: 'help', id: `f-${key}-help` }, help) : null;
    input.setAttribute('aria-describedby', [help ? `f-${key}-help` : '', `f-${key}-error`].filter(Boolean).join(' '));
    fields.set(key, { key, input, error });
    return h('div', { class: 'field', 'data-field': key }, h('label', { for: input.id }, label), input, helpEl, error);
  };
  const text = (placeholder = '', mode = 'text'): HTMLInputElement => h('input', { type: 'text', inputmode: mode, placeholder, autocomplete: 'off', spellcheck: 'false' });
  const check = (id: string, label: string): { box: HTMLInputElement; el: HTMLElement } => {
    const box = h('input', { type: 'checkbox', id });
    return { box, el: h('div', { class: 'check' }, box, h('label', { for: id }, label)) };
  };
  const select = (options: [string, string][]): HTMLSelectElement => {
    const el = h('select');
    for (const [value, label] of options) el.append(h('option', { value }, label));
    return el;
  };

  const retention = check('f-retention', 'Remove old sessions automatically at startup');
  const archive = check('f-archive', 'Archive sessions before removing them');
  const storage = select([
    ['sqlite', 'SQLite file (OpenCode default)'],
    ['postgres', 'PostgreSQL'],
    ['mysql', 'MySQL / MariaDB'],
    ['sqlserver', 'SQL Server'],
  ]);
  const orderBy = select([
    ['created', 'Oldest created first'],
    ['updated', 'Least recently updated first'],
  ]);
  const testBtn = h('button', { type: 'button', id: 'btn-test-connection' }, 'Test connection');
  const testResult = h('p', { id: 'test-result', class: 'status', 'aria-live': 'polite' });
  const preview = h('div', { id: 'preview', class: 'preview', 'aria-live': 'polite' }, h('p', {}, 'Preview appears here.'));
  const saveBtn = h('button', { type: 'submit', class: 'primary', id: 'btn-save' }, 'Save');
  const revertBtn = h('button', { type: 'button', id: 'btn-revert' }, 'Revert');
  const status = h('p', { id: 'save-status', class: 'status', role: 'status', 'aria-live': 'polite' });
  const confirmBox = h('div', { id: 'save-confirm', class: 'confirm-box', role: 'alertdialog', 'aria-labelledby': 'save-confirm-text', hidden: true });
  const fileLine = h('p', { class: 'help', id: 'settings-file' });

  const form = h(
    'form',
    { id: 'settings-form', novalidate: true, 'aria-describedby': 'settings-file' },
    fileLine,
    h(
      'div',
      { class: 'settings-grid' },
      h(
        'div',
        {},
        h(
          'fieldset',
          {},
          h('legend', {}, 'Retention'),
          retention.el,
          field('maxSizeMB', 'Largest database size (MB)', text('no limit', 'decimal'), 'Oldest sessions go first until the file fits.'),
          field('maxAgeDays', 'Oldest session to keep (days)', text('no limit', 'decimal')),
          field('maxSessions', 'Most sessions to keep', text('no limit', 'numeric')),
          field('orderBy', 'Which sessions count as oldest', orderBy),
        ),
        h(
          'fieldset',
          {},
          h('legend', {}, 'Archive'),
          archive.el,
          field('archiveDir', 'Archive folder', text('default: ~/.local/share/opencode/archive')),
        ),
      ),
      h(
        'div',
        {},
        h('fieldset', {}, h('legend', {}, 'Size warnings'), field('warnAtMB', 'Warn at (MB, comma-separated)', text('100, 500, 1024'))),
        h(
          'fieldset',
          {},
          h('legend', {}, 'Storage'),
          field('storage', 'Backend', storage),
          field('connectionString', 'Connection string', text('postgres://user@host/db')),
          h('div', { class: 'actions' }, testBtn),
          testResult,
        ),
        h('section', { class: 'preview-box', 'aria-labelledby': 'preview-title' }, h('h3', { id: 'preview-title' }, 'With these values'), preview),
      ),
    ),
    h('div', { class: 'actions sticky' }, confirmBox, saveBtn, revertBtn, status),
  );
  root.replaceChildren(h('h2', { id: 'settings-title' }, 'Settings'), form);

  const syncEnabled = (): void => {
    for (const key of [...LIMITS, 'orderBy']) (fields.get(key)?.input as HTMLInputElement).disabled = !retention.box.checked;
    (fields.get('archiveDir')?.input as HTMLInputElement).disabled = !archive.box.checked;
    (fields.get('connectionString')?.input as HTMLInputElement).disabled = storage.value === 'sqlite';
  };

  /** The form as settings: null removes a key; limits are removed when retention is off. */
  const values = (): SettingsInput => {
    const get = (key: string): string => fields.get(key)?.input.value ?? '';
    const out: SettingsInput = {};
    for (const key of LIMITS) out[key] = retention.box.checked ? numberOrText(get(key)) : null;
    out['orderBy'] = get('orderBy');
    out['archive'] = archive.box.checked;
    const dir = get('archiveDir').trim();
    out['archiveDir'] = dir === '' ? null : dir;
    const warn = get('warnAtMB').trim();
    out['warnAtMB'] = warn === '' ? null : warn.split(/[\s,]+/).filter(Boolean).map((t) => numberOrText(t));
    out['storage'] = get('storage');
    const conn = get('connectionString').trim();
    out['connectionString'] = storage.value === 'sqlite' || conn === '' ? null : conn;
    return out;
  };

  const showErrors = (errors: FieldError[]): void => {
    for (const f of fields.values()) {
      f.error.textContent = '';
      f.input.removeAttribute('aria-invalid');
    }
    for (const e of errors) {
      const key = e.field.replace(/[[.].*$/, '');
      const f = fields.get(key);
      if (!f) continue;
      f.error.textContent = f.error.textContent ? `${f.error.textContent} ${e.message}` : e.message;
      f.input.setAttribute('aria-invalid', 'true');
    }
  };

  /** The form checked here, at once: true when every value is fine. */
  const checkHere = (): boolean => {
    const errors = checkSettingsForm(values());
    showErrors(errors);
    return errors.length === 0;
  };

  const previewText = (plan: PlanResult): string =>
    `At next start: ${count(plan.evict.length, 'session')} of ${plan.rootSessions.toLocaleString('en-US')} would be removed, freeing about ${bytes(plan.freesBytes)} (${bytes(plan.storeBytes)} → ${bytes(Math.max(0, plan.storeBytes - plan.freesBytes))}).`;

  let previewSeq = 0;
  let previewTimer: number | undefined;
  const refreshPreview = async (): Promise<void> => {
    const mine = ++previewSeq;
    if (!checkHere()) {
      preview.replaceChildren(h('p', { id: 'preview-summary', 'data-evict': '' }, 'Fix the marked fields to see what these values would remove.'));
      return;
    }
    try {
      const plan = await api.request('plan', { settings: values() });
      if (mine !== previewSeq) return;
      showErrors([]);
      const limits = [plan.policy.maxSizeMB, plan.policy.maxAgeDays, plan.policy.maxSessions].some((v) => v !== null);
      preview.replaceChildren(
        limits
          ? h('p', { id: 'preview-summary', 'data-evict': plan.evict.length, 'data-frees': plan.freesBytes, class: needsConfirmation(plan) ? 'warn' : '' }, previewText(plan))
          : h('p', { id: 'preview-summary', 'data-evict': 0, 'data-frees': 0 }, 'No limits set: nothing is ever removed.'),
        plan.unmetSize ? h('p', { class: 'note' }, 'Pinned or recently active sessions keep the database above the size limit.') : '',
      );
    } catch (error) {
      if (mine !== previewSeq) return;
      if (error instanceof ApiError && error.fields.length) {
        showErrors(error.fields);
        preview.replaceChildren(h('p', {}, 'Fix the marked fields to see what these values would remove.'));
      } else {
        preview.replaceChildren(h('p', { class: 'field-error' }, (error as Error).message));
      }
    }
  };
  const schedulePreview = (): void => {
    window.clearTimeout(previewTimer);
    previewTimer = window.setTimeout(() => void refreshPreview(), 200);
  };

  const fill = (settings: SettingsResult): void => {
    loaded = settings;
    const raw = settings.raw;
    const resolved = settings.resolved ?? {};
    fileLine.textContent = `Saved to ${settings.path}${settings.exists ? '' : ' (will be created)'}.`;
    if (settings.error) fileLine.textContent += ` The file has an error: ${settings.error}`;
    retention.box.checked = LIMITS.some((k) => raw[k] !== undefined);
    for (const key of LIMITS) fields.get(key)!.input.value = textValue(raw[key]);
    orderBy.value = typeof raw['orderBy'] === 'string' ? raw['orderBy'] : 'created';
    archive.box.checked = raw['archive'] !== false;
    fields.get('archiveDir')!.input.value = textValue(raw['archiveDir']);
    (fields.get('archiveDir')!.input as HTMLInputElement).placeholder = `default: ${String(resolved['archiveDir'] ?? '')}`;
    fields.get('warnAtMB')!.input.value = textValue(raw['warnAtMB']);
    storage.value = typeof raw['storage'] === 'string' ? raw['storage'] : 'sqlite';
    fields.get('connectionString')!.input.value = textValue(raw['connectionString']);
    syncEnabled();
    showErrors([]);
    schedulePreview();
  };

  // A reply that arrives after the user started typing must not overwrite what they typed.
  let edits = 0;
  const load = async (): Promise<void> => {
    const at = edits;
    try {
      const settings = await api.request('getSettings');
      if (edits !== at && loaded) return;
      fill(settings);
      form.dataset['loaded'] = 'true';
    } catch (error) {
      status.textContent = `Cannot read settings: ${(error as Error).message}`;
    }
  };

  form.addEventListener('input', () => {
    edits += 1;
    syncEnabled();
    status.textContent = '';
    confirmBox.hidden = true;
    checkHere();
    schedulePreview();
  });
  form.addEventListener('change', () => {
    edits += 1;
    syncEnabled();
    schedulePreview();
  });
  revertBtn.addEventListener('click', () => {
    if (loaded) fill(loaded);
    status.textContent = 'Reverted to the saved values.';
  });
  testBtn.addEventListener('click', () => {
    testResult.className = 'status';
    testResult.textContent = 'Testing…';
    const conn = fields.get('connectionString')!.input.value.trim();
    void api
      .request('testConnection', storage.value === 'sqlite' ? { storage: 'sqlite' } : { storage: storage.value as 'postgres', connectionString: conn })
      .then((r) => {
        testResult.className = `status ${r.ok ? 'ok' : 'bad'}`;
        testResult.textContent = r.message;
      })
      .catch((error: unknown) => {
        testResult.className = 'status bad';
        testResult.textContent = (error as Error).message;
      });
  });
  const save = (): void => {
    confirmBox.hidden = true;
    status.className = 'status';
    status.textContent = 'Saving…';
    void api
      .request('saveSettings', { settings: values() })
      .then((saved) => {
        fill(saved);
        status.className = 'status ok';
        status.textContent = `Saved to ${saved.path}.`;
        onSaved();
      })
      .catch((error: unknown) => {
        status.className = 'status bad';
        if (error instanceof ApiError && error.fields.length) {
          showErrors(error.fields);
          status.textContent = 'Not saved: fix the marked fields.';
          fields.get(error.fields[0]!.field.replace(/[[.].*$/, ''))?.input.focus();
        } else {
          status.textContent = `Not saved: ${(error as Error).message}`;
        }
      });
  };

  /** Asks before values that remove more than half the sessions at the next start, or turn archiving off. */
  const confirmSave = (plan: PlanResult, archiveOff: boolean): void => {
    const n = plan.evict.length;
    const lines: string[] = [];
    if (n > 0) lines.push(`${previewText(plan)}${plan.archive ? ' They are archived first.' : ' They will not be archived and cannot be restored.'}`);
    if (archiveOff) lines.push('Archiving turns off: sessions removed from now on cannot be restored.');
    const yes = h('button', { type: 'button', class: 'danger', id: 'btn-confirm-save' }, n > 0 ? `Save: remove ${count(n, 'session')} at next start` : 'Save with archiving off');
    const no = h('button', { type: 'button', id: 'btn-cancel-save' }, 'Cancel');
    yes.addEventListener('click', save);
    no.addEventListener('click', () => {
      confirmBox.hidden = true;
      status.textContent = 'Not saved.';
      saveBtn.focus();
    });
    confirmBox.replaceChildren(h('p', { id: 'save-confirm-text', 'data-evict': n }, lines.join(' ')), h('div', { class: 'actions' }, no, yes));
    confirmBox.hidden = false;
    // The safe answer has the focus: Enter again does not save.
    no.focus();
  };

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!checkHere()) {
      status.className = 'status bad';
      status.textContent = 'Not saved: fix the marked fields.';
      const first = checkSettingsForm(values())[0];
      if (first) fields.get(first.field.replace(/[[.].*$/, ''))?.input.focus();
      return;
    }
    status.className = 'status';
    status.textContent = 'Checking what these values would remove…';
    const archiveOff = loaded?.raw['archive'] !== false && !archive.box.checked;
    void api
      .request('plan', { settings: values() })
      .then((plan) => {
        if (needsConfirmation(plan) || archiveOff) {
          status.textContent = '';
          confirmSave(plan, archiveOff);
        } else {
          save();
        }
      })
      .catch((error: unknown) => {
        status.className = 'status bad';
        if (error instanceof ApiError && error.fields.length) {
          showErrors(error.fields);
          status.textContent = 'Not saved: fix the marked fields.';
        } else {
          status.textContent = `Not saved: ${(error as Error).message}`;
        }
      });
  });

  return { load };
}
