/**
 * The demo Electron app (electron.vite.config.ts builds it into out/): the same pieces an
 * embedding app uses. Run with an Electron binary:  npx electron-vite build && electron out/main/index.js
 * Environment: SK_DEMO_DB, SK_DEMO_CONFIG, SK_DEMO_CACHE (defaults: OpenCode's own paths).
 */
import { app } from 'electron';
import { join } from 'node:path';
import { installSessionKeeper } from './install.js';

const env = process.env;
const here = import.meta.dirname;
const sk = installSessionKeeper(app, {
  db: env['SK_DEMO_DB'] || undefined,
  configPath: env['SK_DEMO_CONFIG'] || undefined,
  cacheDir: env['SK_DEMO_CACHE'] || undefined,
  // The demo bundles main/preload/renderer; the utility process and its workers run from the tsc build.
  utilityEntry: env['SK_DEMO_UTILITY'] || join(here, '..', '..', 'dist', 'main', 'utility.js'),
  preload: join(here, '..', 'preload', 'preload.cjs'),
  rendererFile: join(here, '..', 'renderer', 'index.html'),
  showSizeDialog: false,
});

void app.whenReady().then(() => sk.openWindow(sk.client.lastStartup?.showDialog === false ? 'settings' : 'size-check'));
app.on('window-all-closed', () => app.quit());
