/** Where sessions can live, and how a location names one: a SQLite file path or a connection string. */
export const STORAGE_KINDS = ['sqlite', 'postgres', 'mysql', 'sqlserver'] as const;
export type StorageKind = (typeof STORAGE_KINDS)[number];
export type ExternalKind = Exclude<StorageKind, 'sqlite'>;

const SCHEMES: Record<string, ExternalKind> = {
  postgres: 'postgres',
  postgresql: 'postgres',
  mysql: 'mysql',
  mariadb: 'mysql',
  sqlserver: 'sqlserver',
  mssql: 'sqlserver',
};

/** The external engine a connection string names, or null for anything else (a file path). */
export function externalKindOf(location: string): ExternalKind | null {
  const scheme = /^([a-z]+):\/\//i.exec(location)?.[1]?.toLowerCase();
  return (scheme && SCHEMES[scheme]) || null;
}

/** True when `location` names an external database rather than a SQLite file. */
export function isConnectionString(location: string): boolean {
  return externalKindOf(location) !== null;
}
