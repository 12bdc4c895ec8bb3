/**
 * What needs a second, explicit yes, and how it is said: removing more than half the sessions,
 * or removing without an archive. Shared by the size-check dialog and the settings panel.
 */
import type { PlanResult } from '../core/utility-protocol.js';

/** "1,141 sessions" */
export function count(n: number, word: string): string {
  return `${n.toLocaleString('en-US')} ${word}${n === 1 ? '' : 's'}`;
}

/** More than half the sessions, or no archive: the plan needs a second, explicit yes. */
export function needsConfirmation(plan: Pick<PlanResult, 'evict' | 'rootSessions' | 'archive'>): boolean {
  return plan.evict.length > plan.rootSessions / 2 || (!plan.archive && plan.evict.length > 0);
}

export function confirmationText(plan: Pick<PlanResult, 'evict' | 'rootSessions' | 'archive'>): string {
  const n = plan.evict.length;
  const share = plan.rootSessions > 0 ? Math.round((n / plan.rootSessions) * 100) : 100;
  const what = `This removes ${count(n, 'session')} of ${plan.rootSessions.toLocaleString('en-US')} (${share}%), with their subtasks.`;
  return plan.archive
    ? `${what} They are archived first and can be restored from the archive.`
    : `${what} Archiving is off: they cannot be restored.`;
}

