/**
 * Screenshots of the size-check dialog (overview and plan), the session browser and the settings
 * at 1280x800 and 800x600, light and dark, into test-results/screenshots/ (named in the README).
 */
import { expect, openPlan, openSessions, ready, snap, test } from './fixtures.js';

const SIZES = [
  { width: 1280, height: 800 },
  { width: 800, height: 600 },
];

test('dialog, browser and settings at two sizes in both themes', async ({ app }, testInfo) => {
  test.setTimeout(120_000);
  await ready(app);
  const shoot = async (what: string): Promise<void> => {
    for (const size of SIZES) {
      await app.setViewportSize(size);
      for (const scheme of ['light', 'dark'] as const) {
        await app.emulateMedia({ colorScheme: scheme });
        await snap(app, `${what}-${size.width}x${size.height}-${scheme}-${testInfo.project.name}`, testInfo);
      }
    }
  };
  const dialog = app.locator('#size-dialog');
  await expect(dialog.locator('table.largest tbody tr')).toHaveCount(5);
  await shoot('dialog');
  await openPlan(app);
  await shoot('dialog-plan');
  await dialog.getByRole('button', { name: 'Archive and clean up', exact: true }).click();
  await expect(dialog.locator('#confirm-title')).toBeVisible();
  await shoot('dialog-confirm');
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await openSessions(app);
  await shoot('browser');
  // Sorted by a kind of bytes (where the chart's slices lead): one more column.
  await app.getByLabel('Sort', { exact: true }).selectOption('attachments');
  await expect(app.locator('#browse-table[data-sort="attachments"] th[data-kind]')).toBeVisible();
  await shoot('browser-attachments');
  await app.getByRole('button', { name: 'Settings', exact: true }).click();
  await expect(app.locator('#settings-form[data-loaded="true"]')).toBeVisible();
  await app.getByLabel('Remove old sessions automatically at startup').check();
  await app.getByLabel('Largest database size (MB)').fill('30');
  await expect(app.locator('#preview-summary')).toContainText('At next start');
  await shoot('settings');
});
