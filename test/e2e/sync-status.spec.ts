import { writeFileSync } from 'node:fs';
import { freshDatabase, type FreshDatabase } from '../external/servers.js';
import { CONFIG_TEXT, expect, test as base } from './fixtures.js';

// The same app, its config naming a PostgreSQL database as the primary store (a fresh one per test).
const test = base.extend<{ server: FreshDatabase }>({
  server: async ({}, use) => {
    const server = await freshDatabase('postgres');
    await use(server);
    await server.drop();
  },
  env: async ({ env, server }, use) => {
    const url = new URL(server.url);
    url.password = 'dialog-s3cret';
    writeFileSync(env.config, CONFIG_TEXT.replace('ARCHIVE_DIR', env.archiveDir).replace('"warnAtMB": [20],', `"warnAtMB": [20], "storage": "postgres", "connectionString": ${JSON.stringify(url.toString())},`));
    await use(env);
  },
});

test('the size-check dialog shows the mirror into the configured server, password masked', async ({ app }) => {
  const dialog = app.locator('#size-dialog');
  await expect(dialog).toBeVisible();
  const line = dialog.locator('#sync-status');
  await expect(line).toBeVisible({ timeout: 30_000 });
  // Every session of the file reaches the server, and the line says so.
  await expect(line).toContainText(/mirrored \d+ sessions; 0 pending; last \d+ s ago/, { timeout: 90_000 });
  await expect(line).not.toContainText('dialog-s3cret');
});
