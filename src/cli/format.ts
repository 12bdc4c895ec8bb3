/** Human-readable output for the CLI; `--json` bypasses all of this. */
import type { ListResult, ShowResult, StatsResult } from '../core/api.js';
import type { CompactionPlan } from '../core/compaction.js';
import type { FolderPlace } from '../core/data-folder.js';
import type { SessionConfig } from '../core/config.js';
import type { DryRunResult } from '../main/retention.js';
import { formatBytes as bytes } from '../core/bytes.js';

/**
 * Writes `value` as indented JSON (the same text as `JSON.stringify(value, null, 2)`) in pieces:
 * arrays and objects are walked, each element stringified on its own and written out in 64 KB
 * chunks, so a page of thousands of parts never exists as one string on the heap.
 */
export function writeJson(value: unknown, write: (text: string) => void = (text) => process.stdout.write(text)): void {
  let pending: string[] = [];
  let pendingLength = 0;
  const out = (text: string): void => {
    pending.push(text);
    pendingLength += text.length;
    if (pendingLength >= 65536) {
      write(pending.join(''));
      pending = [];
      pendingLength = 0;
    }
  };
  const walk = (node: unknown, indent: string): void => {
    const inner = `${indent}  `;
    if (Array.isArray(node) && node.length > 0) {
      out('[\n');
      node.forEach((item, i) => {
        out(inner);
        walk(item === undefined || typeof item === 'function' ? null : item, inner);
        out(i < node.length - 1 ? ',\n' : '\n');
      });
      out(`${indent}]`);
      return;
    }
    if (node !== null && typeof node === 'object' && !Array.isArray(node) && typeof (node as { toJSON?: unknown }).toJSON !== 'function') {
      const entries = Object.entries(node).filter(([, v]) => v !== undefined && typeof v !== 'function');
      if (entries.length > 0) {
        out('{\n');
        entries.forEach(([key, item], i) => {
          out(`${inner}${JSON.stringify(key)}: `);
          walk(item, inner);
          out(i < entries.length - 1 ? ',\n' : '\n');
        });
        out(`${indent}}`);
        return;
      }
    }
    out(JSON.stringify(node) ?? 'null');
  };
  walk(value, '');
  if (pending.length > 0) write(pending.join(''));
}

/** Prints a result: `--json` as indented JSON (streamed, see writeJson), else the human form. */
export function print(json: boolean, value: unknown, human: () => string): void {
  if (json) writeJson(value);
  else process.stdout.write(human());
  process.stdout.write('\n');
}

const count = (n: number): string => n.toLocaleString('en-US');
const date = (ms: number): string => new Date(ms).toISOString().slice(0, 16).replace('T', ' ');
/** Control characters from the database (a title with an escape sequence) are shown, never obeyed by the terminal. */
const printable = (text: string): string =>
  text.replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, (c) => (c === '\n' || c === '\t' ? ' ' : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
const clip = (text: string, width: number): string => {
  const shown = printable(text);
  return shown.length > width ? `${shown.slice(0, width - 1)}…` : shown;
};

const LAYOUTS: Record<string, string> = {
  '1.x': 'OpenCode 1.x (message/part)',
  '1.18': 'OpenCode 1.18 (message/part, and session_message for sessions made through its newer API)',
  '2.x': 'OpenCode 2.x (session_v2 and session_message)',
};

const VALUE_READS: Record<NonNullable<StatsResult['valueReads']>, string> = {
  chunked: 'large ones read in chunks (sk_chunks)',
  whole: 'large ones read whole (the sk_chunks extension is not loaded)',
};
const VALUE_WRITES: Record<NonNullable<StatsResult['valueWrites']>, string> = {
  lazy: 'written from a spill file, filled in place by SQLite (sk_text_zeros + sk_blob_write_file)',
  file: 'written from a spill file SQLite reads into the value (sk_file_text: the value twice in its memory)',
  whole: 'written whole from memory (the extension\'s write side is not loaded)',
};

/** The read and write paths large values take on this file, as one line. */
function valuePaths(s: StatsResult): string {
  return [s.valueReads ? VALUE_READS[s.valueReads] : '', s.valueWrites ? VALUE_WRITES[s.valueWrites] : ''].filter(Boolean).join('; ');
}

export function formatStats(s: StatsResult): string {
  const lines = [
    `Database     ${s.path}`,
    `Layout       ${LAYOUTS[s.layout] ?? s.layout}`,
    `Size         ${bytes(s.fileBytes)} file, ${bytes(s.walBytes)} WAL, ${bytes(s.freeBytes)} free pages (auto_vacuum ${s.autoVacuum})`,
    `Sessions     ${count(s.sessions)} (${count(s.rootSessions)} root)`,
    `Rows         ${count(s.messages)} messages, ${count(s.parts)} parts, ${count(s.events)} events`,
    `Attachments  ${count(s.attachments.count)} files, ${bytes(s.attachments.bytes)} decoded (${bytes(s.attachments.encodedBytes)} as base64)`,
  ];
  if (s.valueReads || s.valueWrites) lines.push(`Values       ${valuePaths(s)}`);
  if (s.mirror) lines.push(`Mirror       ${s.mirror.target}: ${count(s.mirror.sessions)} sessions, ${count(s.mirror.serverOnly)} only there (evicted from the file), ${count(s.mirror.localOnly)} not mirrored yet`);
  if (s.tables.length > 0) {
    lines.push('', 'Payload by table:');
    for (const t of s.tables) lines.push(`  ${t.name.padEnd(22)} ${bytes(t.payloadBytes).padStart(8)}  ${count(t.rows)} rows`);
  }
  if (s.largest.length > 0) {
    lines.push('', 'Largest sessions:');
    for (const l of s.largest) lines.push(`  ${l.id}  ${bytes(l.bytes).padStart(9)}  ${clip(l.title, 60)}`);
  }
  for (const o of s.oversize) {
    lines.push(
      `Oversize     ${o.table} ${o.id} holds ${bytes(o.bytes)} in one value${o.readable ? '' : ' (unreadable by this build)'}`,
    );
  }
  if (s.files && s.files.length > 0) lines.push('', ...formatFolder(s.files));
  if (s.warnings[0]) lines.push('', s.warnings[0].message);
  return lines.join('\n');
}

const PLACE_LABELS: Record<FolderPlace['name'], string> = {
  database: 'database (+ -wal, -shm)',
  'other-databases': 'other channels\' databases',
  snapshot: 'snapshot/',
  'session-diffs': 'storage/session_diff/',
  'legacy-json': 'pre-SQLite JSON tree',
  'storage-other': 'storage/ (the rest)',
  'tool-output': 'tool-output/',
  log: 'log/',
  repos: 'repos/',
  archive: 'archive/',
  other: 'everything else',
  'desktop-state': 'OpenCode Desktop state',
};

/** The data folder, place by place: size, what it is, what a clean-up frees now and what the rest costs. */
function formatFolder(files: FolderPlace[]): string[] {
  const inside = files.filter((f) => f.inDataFolder);
  const total = inside.reduce((n, f) => n + f.bytes, 0);
  const root = inside.find((f) => f.name === 'other')?.path;
  const lines = [root ? `Data folder ${root}: ${bytes(total)}` : 'Data folder (not walked: the database is not in an OpenCode data folder)'];
  for (const f of files) {
    if (f.name !== 'database' && f.bytes === 0) continue;
    const free = f.reclaimable > 0 ? `; ${bytes(f.reclaimable)} can go now: ${f.reclaim}` : '';
    const keys = f.keys?.length ? ` (${f.keys.slice(0, 2).map((k) => `${k.key} ${bytes(k.bytes)}`).join(', ')})` : '';
    lines.push(`  ${PLACE_LABELS[f.name].padEnd(26)} ${bytes(f.bytes).padStart(9)}  ${f.what}${keys}${free}`);
    lines.push(`  ${''.padEnd(26)} ${''.padStart(9)}  cost: ${f.cost}`);
  }
  return lines;
}

export function formatList(list: ListResult): string {
  const lines = list.sessions.map(
    (s) => `${s.id}  ${date(s.timeUpdated)}  ${bytes(s.bytes).padStart(9)}  ${s.where ? `${s.where.padEnd(6)}  ` : ''}${s.parentId ? '  ↳ ' : ''}${clip(s.title, 60)}`,
  );
  if (lines.length === 0) lines.push('No sessions.');
  if (list.nextCursor) lines.push(`… more: --cursor ${list.nextCursor}`);
  return lines.join('\n');
}

function describePart(part: Record<string, unknown>): string {
  const type = String(part['type'] ?? '?');
  const attachments: string[] = [];
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (node && typeof node === 'object') {
      const record = node as Record<string, unknown>;
      const a = record['attachment'] as Record<string, unknown> | undefined;
      if (a && typeof a['ref'] === 'string') {
        attachments.push(`[${a['mime']} ${bytes(Number(a['bytes']))}${a['filename'] ? ` "${printable(String(a['filename']))}"` : ''} → attachment ${a['ref']}]`);
      }
      Object.values(record).forEach(walk);
    }
  };
  walk(part);
  const text = typeof part['text'] === 'string' ? clip(part['text'].replace(/\s+/g, ' '), 100) : '';
  const tool = typeof part['tool'] === 'string' ? part['tool'] : '';
  return `    ${type}${tool ? ` ${tool}` : ''}${text ? `: ${text}` : ''}${attachments.length ? ` ${attachments.join(' ')}` : ''}`;
}

export function formatShow(show: ShowResult): string {
  const s = show.session as { id?: string; title?: string; time?: { created?: number; updated?: number } };
  const lines = [
    `${printable(String(s.id))}  ${printable(s.title ?? '')}`,
    `created ${date(s.time?.created ?? 0)}, updated ${date(s.time?.updated ?? 0)}${show.where === 'server' ? ' (from the server: the file no longer holds it; restore --from brings it back)' : ''}`,
    '',
  ];
  for (const m of show.messages) {
    const info = m.info as { id?: string; role?: string; time?: { created?: number } };
    lines.push(`  ${info.role ?? '?'} ${info.id} ${date(info.time?.created ?? 0)}`);
    for (const p of m.parts) lines.push(describePart(p));
  }
  if (show.nextCursor) lines.push('', `… more: --cursor ${show.nextCursor}`);
  return lines.join('\n');
}

export function formatPlan(plan: DryRunResult, config: SessionConfig): string {
  const limits = [
    config.maxSizeMB !== undefined ? `maxSizeMB ${config.maxSizeMB}` : null,
    config.maxAgeDays !== undefined ? `maxAgeDays ${config.maxAgeDays}` : null,
    config.maxSessions !== undefined ? `maxSessions ${config.maxSessions}` : null,
  ].filter(Boolean);
  if (limits.length === 0) return 'No retention limit is set (maxSizeMB, maxAgeDays, maxSessions): nothing would be evicted.';
  const lines = [`Policy: ${limits.join(', ')}, oldest by ${config.orderBy === 'updated' ? 'time_updated' : 'time_created'}; archive ${config.archive ? `to ${config.archiveDir}` : 'off'}.`];
  if (plan.evict.length === 0) lines.push('Nothing would be evicted.');
  else {
    lines.push(`Would evict ${plan.evict.length} sessions, freeing about ${bytes(plan.freesBytes)} of ${bytes(plan.storeBytes)} (sessions OpenCode archived go first):`);
    const days = (ms: number): string => `${Math.floor((Date.now() - ms) / 86_400_000)}d`;
    for (const e of plan.evict.slice(0, 15)) {
      const notes = [
        e.children.length ? `+${e.children.length} subtask${e.children.length === 1 ? '' : 's'}` : '',
        e.timeArchived ? 'archived in OpenCode' : '',
        plan.mirrored?.includes(e.id) ? 'mirrored, no archive needed' : '',
      ].filter(Boolean);
      lines.push(`  ${e.id}  created ${date(e.timeCreated)} (${days(e.timeCreated)} ago)  ${bytes(e.bytes).padStart(9)}  ${clip(e.title, 50)}${notes.length ? ` (${notes.join(', ')})` : ''}`);
    }
    if (plan.evict.length > 15) lines.push(`  … and ${plan.evict.length - 15} more (--json for all)`);
  }
  if (plan.unmetSize) lines.push(`Pinned or active sessions keep the database above ${config.maxSizeMB} MB.`);
  lines.push('Nothing was changed (dry run). Apply with: session-keeper retention --apply');
  return lines.join('\n');
}

export function formatCompactionPlan(plan: CompactionPlan, orphans: boolean): string {
  const lines = [`Event log: ${count(plan.events.count)} events, ${bytes(plan.events.bytes)}${plan.indexed ? '' : ' (no aggregate index: an older OpenCode)'}`];
  if (plan.byType.length > 0) {
    lines.push('', `  ${'type'.padEnd(34)} ${'events'.padStart(9)} ${'bytes'.padStart(8)} ${'superseded'.padStart(10)} ${'removable'.padStart(10)}`);
    for (const t of plan.byType.slice(0, 20)) {
      lines.push(`  ${clip(t.type, 34).padEnd(34)} ${count(t.count).padStart(9)} ${bytes(t.bytes).padStart(8)} ${bytes(t.superseded.bytes).padStart(10)} ${bytes(t.compactable.bytes).padStart(10)}`);
    }
  }
  lines.push('', `Would free ${bytes(plan.freesBytes)}: ${count(plan.compactable.count)} superseded snapshots, each replaced by a newer one equal to the current row; every session stays as it is.`);
  const kept = Object.entries(plan.kept).filter(([, v]) => v.count > 0);
  if (kept.length > 0) lines.push(`Kept, though superseded: ${kept.map(([reason, v]) => `${count(v.count)} ${reason}`).join(', ')}.`);
  if (plan.orphans.count > 0) {
    lines.push(
      orphans
        ? `Orphans: ${count(plan.orphans.count)} events of ${count(plan.orphans.aggregates)} deleted sessions (${bytes(plan.orphans.bytes)}) go too.`
        : `Orphans: ${count(plan.orphans.count)} events of ${count(plan.orphans.aggregates)} deleted sessions (${bytes(plan.orphans.bytes)}); add --orphans to remove them.`,
    );
  }
  lines.push('Nothing was changed (dry run). Apply with: session-keeper compact --apply');
  return lines.join('\n');
}
