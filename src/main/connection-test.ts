/**
 * "Test connection" in the settings panel. SQLite: the file is checked here (exists, is an
 * OpenCode database we can open). External stores (PostgreSQL, MySQL, SQL Server) are built in
 * src/store/external: their `connect()` is loaded on demand, so a build without them still
 * answers, clearly, "not available in this build". A host may also register its own tester.
 */
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { oneLine, redactSecrets } from '../core/errors.js';
import type { TestConnectionResult } from '../core/protocol.js';
import { formatMB } from '../core/thresholds.js';
import { openDatabase } from '../store/sqlite/open.js';

export type StorageChoice = 'sqlite' | 'postgres' | 'mysql' | 'sqlserver';
export type ConnectionTester = (storage: Exclude<StorageChoice, 'sqlite'>, connectionString: string) => Promise<TestConnectionResult>;

let registered: ConnectionTester | null = null;

/** Replaces the external-store tester (an embedding app, or tests). */
export function registerConnectionTester(tester: ConnectionTester | null): void {
  registered = tester;
}

/** The shape we need from src/store/external/connection.ts, checked at run time. */
interface ExternalModule {
  connect(connectionString: string, poolSize?: number): Promise<{ conn: { kind: string; display: string }; db: { destroy(): Promise<void> } }>;
}

function isExternalModule(value: unknown): value is ExternalModule {
  return typeof value === 'object' && value !== null && typeof (value as { connect?: unknown }).connect === 'function';
}

// A variable specifier: the module may not exist in this build, and that must not fail type-checking.
const EXTERNAL_MODULE = new URL('../store/external/connection.js', import.meta.url).href;

async function externalTester(): Promise<ConnectionTester | null> {
  if (registered) return registered;
  let module: unknown;
  try {
    module = await import(EXTERNAL_MODULE);
  } catch {
    return null;
  }
  if (!isExternalModule(module)) return null;
  const external = module;
  return async (storage, connectionString) => {
    const opened = await external.connect(connectionString, 1);
    try {
      if (opened.conn.kind !== storage) {
        return { ok: false, available: true, message: `the connection string is for ${opened.conn.kind}, not ${storage}` };
      }
      return { ok: true, available: true, message: `connected to ${opened.conn.display}` };
    } finally {
      await opened.db.destroy().catch(() => undefined);
    }
  };
}

export async function testConnection(storage: StorageChoice, connectionString: string | undefined, context: { db: string }): Promise<TestConnectionResult> {
  try {
    if (storage === 'sqlite') {
      const path = resolve(connectionString && connectionString.trim() !== '' ? connectionString : context.db);
      if (!existsSync(path)) return { ok: false, available: true, message: `no database file at ${path}` };
      const open = openDatabase(path, { readonly: true });
      try {
        const sessions = open.db.prepare('SELECT count(*) FROM session').pluck().get() as number;
        return { ok: true, available: true, message: `SQLite file ${path} is readable: ${formatMB(statSync(path).size)}, ${sessions} sessions` };
      } finally {
        open.db.close();
      }
    }
    if (!connectionString || connectionString.trim() === '') {
      return { ok: false, available: true, message: `a connection string is required for ${storage}` };
    }
    const tester = await externalTester();
    if (!tester) {
      return { ok: false, available: false, message: `${storage} is not available in this build (external stores are not included)` };
    }
    return await tester(storage, connectionString);
  } catch (error) {
    return { ok: false, available: true, message: redactSecrets(oneLine(error)) };
  }
}
