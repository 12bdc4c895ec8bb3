/**
 * The settings form's values as a person types them, checked with messages that say what to type.
 * One zod schema for both sides: the renderer checks on every keystroke (instant, no round trip)
 * and the utility checks the same values again before a preview or a save, before the config
 * schema (core/config.ts) has the last word. Browser-safe: zod only.
 */
import { z } from 'zod';
import { STORAGE_KINDS, type StorageKind } from './storage.js';

interface NumberRule {
  /** "a size in MB" */
  what: string;
  example: string;
  whole?: boolean;
  /** Shown after the message when the field may be left empty. */
  emptyMeans?: string;
}

/** `"lots"`, `-5`: the value as typed, short. */
function shown(value: unknown): string {
  const text = typeof value === 'string' ? `"${value}"` : String(value);
  return text.length > 24 ? `${text.slice(0, 21)}…` : text;
}

/** What is wrong with `value` for `rule`, in words, or null when it is fine (null and undefined are: "no value"). */
export function numberProblem(value: unknown, rule: NumberRule): string | null {
  if (value === null || value === undefined) return null;
  const tail = rule.emptyMeans ? ` (leave it empty for ${rule.emptyMeans})` : '';
  if (typeof value !== 'number' || !Number.isFinite(value)) return `${shown(value)} is not a number. Enter ${rule.what}, for example ${rule.example}.`;
  if (rule.whole && !Number.isInteger(value)) return `${shown(value)} is not a whole number. Enter ${rule.what}, for example ${rule.example}${tail}.`;
  if (value <= 0 || (rule.whole && value < 1)) return `Enter ${rule.what} greater than 0${tail}.`;
  return null;
}

function numberField(rule: NumberRule) {
  return z.unknown().superRefine((value, ctx) => {
    const problem = numberProblem(value, rule);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
}

const STORAGE_NAMES: Record<StorageKind, { name: string; example: string }> = {
  sqlite: { name: 'SQLite', example: '' },
  postgres: { name: 'PostgreSQL', example: 'postgres://user@localhost/opencode' },
  mysql: { name: 'MySQL or MariaDB', example: 'mysql://user@localhost/opencode' },
  sqlserver: { name: 'SQL Server', example: 'sqlserver://user@localhost/opencode' },
};

/** The form's keys; a null value means "remove the key from the file". Other keys pass through unchecked. */
export const settingsFormSchema = z
  .looseObject({
    maxSizeMB: numberField({ what: 'a size in MB', example: '500', emptyMeans: 'no size limit' }).optional(),
    maxAgeDays: numberField({ what: 'a number of days', example: '90', emptyMeans: 'no age limit' }).optional(),
    maxSessions: numberField({ what: 'a whole number of sessions', example: '200', whole: true, emptyMeans: 'no count limit' }).optional(),
    orderBy: z.enum(['created', 'updated'], { error: 'Choose "oldest created" or "least recently updated".' }).nullable().optional(),
    archive: z.boolean({ error: 'Archiving is either on or off.' }).nullable().optional(),
    archiveDir: z.string({ error: 'Enter a folder path, or leave it empty for the default.' }).min(1, { error: 'Enter a folder path, or leave it empty for the default.' }).nullable().optional(),
    warnAtMB: z
      .array(z.unknown(), { error: 'Enter sizes in MB separated by commas, for example 100, 500, 1024.' })
      .superRefine((list, ctx) => {
        list.forEach((value, index) => {
          const problem = numberProblem(value, { what: 'sizes in MB separated by commas', example: '100, 500, 1024' });
          if (problem) ctx.addIssue({ code: 'custom', path: [index], message: problem });
        });
      })
      .nullable()
      .optional(),
    storage: z.enum(STORAGE_KINDS, { error: 'Choose where sessions are stored.' }).nullable().optional(),
    connectionString: z.string().nullable().optional(),
  })
  .superRefine((form, ctx) => {
    const storage = (form.storage ?? 'sqlite') as StorageKind;
    if (storage !== 'sqlite' && (typeof form.connectionString !== 'string' || form.connectionString.trim() === '')) {
      const { name, example } = STORAGE_NAMES[storage];
      ctx.addIssue({ code: 'custom', path: ['connectionString'], message: `Enter the connection string for ${name}, for example ${example}.` });
    }
  });

export interface FormFieldError {
  /** `maxSizeMB`, `warnAtMB[1]` */
  field: string;
  message: string;
}

/** Every problem of the form's values, one per field path, in the form's order; [] when fine. */
export function checkSettingsForm(values: Record<string, unknown>): FormFieldError[] {
  const result = settingsFormSchema.safeParse(values);
  if (result.success) return [];
  return result.error.issues.map((issue) => ({
    field: issue.path.reduce<string>((out, p) => (typeof p === 'number' ? `${out}[${p}]` : typeof p === 'string' ? (out ? `${out}.${p}` : p) : out), ''),
    message: issue.message,
  }));
}
