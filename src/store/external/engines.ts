/** The engines we know, each loaded only when a connection string names it. */
import type { ExternalKind } from '../../core/storage.js';
import type { EngineDialect } from './dialect.js';

export async function dialectFor(kind: ExternalKind): Promise<EngineDialect> {
  switch (kind) {
    case 'postgres':
      return (await import('./dialects/postgres.js')).postgresDialect;
    case 'mysql':
      return (await import('./dialects/mysql.js')).mysqlDialect;
    case 'sqlserver':
      return (await import('./dialects/mssql.js')).mssqlDialect;
  }
}
