/**
 * "Test connection" in the settings panel: a SQLite file is opened and its sessions counted; a
 * server is connected to. An embedding app may register its own tester for servers.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { oneLine, redactSecrets } from '../core/errors.js';
import type { TestConnectionResult } from '../core/utility-protocol.js';
import { externalKindOf, type ExternalKind, type StorageKind } from '../core/storage.js';
import { probeLocation } from '../store/open-store.js';

export type ConnectionTester = (storage: ExternalKind, connectionString: string) => Promise<TestConnectionResult>;

let registered: ConnectionTester | null = null;

/** Replaces the server tester (an embedding app, or tests). */
export function registerConnectionTester(tester: ConnectionTester | null): void {
  registered = tester;
}

export async function testConnection(storage: StorageKind, connectionString: string | undefined, context: { db: string }): Promise<TestConnectionResult> {
  try {
    if (storage === 'sqlite') {
      const path = resolve(connectionString && connectionString.trim() !== '' ? connectionString : context.db);
      if (!existsSync(path)) return { ok: false, available: true, message: `no database file at ${path}` };
      return { ok: true, available: true, message: (await probeLocation(path)).detail };
    }
    if (!connectionString || connectionString.trim() === '') {
      return { ok: false, available: true, message: `a connection string is required for ${storage}` };
    }
    if (registered) return await registered(storage, connectionString);
    const kind = externalKindOf(connectionString);
    if (kind && kind !== storage) return { ok: false, available: true, message: `the connection string is for ${kind}, not ${storage}` };
    return { ok: true, available: true, message: (await probeLocation(connectionString)).detail };
  } catch (error) {
    return { ok: false, available: true, message: redactSecrets(oneLine(error)) };
  }
}
