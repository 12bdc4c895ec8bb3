/**
 * The floors of src/ stay as ARCHITECTURE.md draws them: each folder imports only from the floors
 * below it, SQL and backend classes live on the store floor alone, and the two backends meet only
 * through the store's interfaces. Read from the source files themselves, so a change that breaks
 * a rule fails here with the file and the import that broke it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/env.js';

const SRC = join(ROOT, 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

interface Edge {
  from: string;
  to: string;
}

/** Every relative import (static, type-only or dynamic) of every file, as paths under src/. */
function importEdges(): Edge[] {
  const edges: Edge[] = [];
  for (const file of sourceFiles(SRC)) {
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)['"](\.{1,2}\/[^'"]+)['"]/g)) {
      const target = resolve(dirname(file), (match[1] as string).replace(/\.js$/, '.ts'));
      edges.push({ from: relative(SRC, file).split(sep).join('/'), to: relative(SRC, target).split(sep).join('/') });
    }
  }
  return edges;
}

/** The floor a path is on; higher floors may import lower ones, never the other way. */
const FLOORS: [prefix: string, floor: number][] = [
  ['core/', 0],
  ['store/', 1],
  ['worker/', 2],
  ['main/', 3],
  ['web/', 4],
  ['cli/', 5],
  ['plugin/', 5],
  ['index.ts', 6],
];
const floorOf = (path: string): number => {
  const hit = FLOORS.find(([prefix]) => path.startsWith(prefix));
  if (!hit) throw new Error(`${path} is on no floor: add its folder to ARCHITECTURE.md and to this test`);
  return hit[1];
};

const edges = importEdges();

describe('floors', () => {
  it('reads the tree (a test that found no imports would pass vacuously)', () => {
    expect(edges.length).toBeGreaterThan(100);
    expect(edges.some((e) => e.from.startsWith('store/sqlite/') && e.to.startsWith('core/'))).toBe(true);
  });

  it('every import points to the same floor or one below', () => {
    // The renderer is bundled for the browser: it may use the pure core, nothing else.
    const upward = edges.filter((e) => (e.from.startsWith('renderer/') ? !e.to.startsWith('core/') && !e.to.startsWith('renderer/') : !e.to.startsWith('renderer/') && floorOf(e.to) > floorOf(e.from)));
    expect(upward.map((e) => `${e.from} -> ${e.to}`)).toEqual([]);
  });

  it('the core does no I/O: no file system, network, processes or databases', () => {
    const io = sourceFiles(join(SRC, 'core')).filter((file) =>
      /from 'node:(fs|net|http|https|child_process|worker_threads)'|from 'better-sqlite3'|from 'kysely'|from 'pg'|from 'mysql2'|from 'tedious'/.test(readFileSync(file, 'utf8')),
    );
    expect(io.map((f) => relative(SRC, f))).toEqual([]);
  });

  it('nothing above the store floor imports a backend: only the store interfaces', () => {
    const reaching = edges.filter((e) => !e.from.startsWith('store/') && (e.to.startsWith('store/sqlite/') || e.to.startsWith('store/external/')));
    expect(reaching.map((e) => `${e.from} -> ${e.to}`)).toEqual([]);
  });

  it("the OpenCode plugin, which runs in OpenCode's Bun process, reaches only the pure core: never a database driver", () => {
    const beyond = edges.filter((e) => e.from.startsWith('plugin/') && !e.to.startsWith('core/') && !e.to.startsWith('plugin/'));
    expect(beyond.map((e) => `${e.from} -> ${e.to}`)).toEqual([]);
    const pluginFiles = sourceFiles(join(SRC, 'plugin'));
    expect(pluginFiles.length).toBeGreaterThan(0);
    const reached = new Set(pluginFiles.map((f) => relative(SRC, f).split(sep).join('/')));
    for (let size = 0; size !== reached.size; ) {
      size = reached.size;
      for (const e of edges) if (reached.has(e.from)) reached.add(e.to);
    }
    expect(reached.has('core/plugin-report.ts')).toBe(true);
    // Bare packages the plugin's files and the core files they reach import: only zod, and node: built-ins.
    const bare = [...reached].flatMap((path) =>
      [...readFileSync(join(SRC, path), 'utf8').matchAll(/(?:from\s+|import\s*\(\s*)['"]([^.'"][^'"]*)['"]/g)].map((m) => m[1] as string),
    );
    expect([...new Set(bare.filter((name) => !name.startsWith('node:')))]).toEqual(['zod']);
  });

  it('the SQLite and external backends never import each other', () => {
    const crossing = edges.filter(
      (e) => (e.from.startsWith('store/sqlite/') && e.to.startsWith('store/external/')) || (e.from.startsWith('store/external/') && e.to.startsWith('store/sqlite/')),
    );
    expect(crossing.map((e) => `${e.from} -> ${e.to}`)).toEqual([]);
  });

  it('shared store code (page builder, archives, transfers) is written against the interfaces, not a backend', () => {
    const shared = edges.filter(
      (e) => e.from.startsWith('store/') && !e.from.startsWith('store/sqlite/') && !e.from.startsWith('store/external/') && e.from !== 'store/open-store.ts',
    );
    expect(shared.filter((e) => e.to.startsWith('store/sqlite/') || e.to.startsWith('store/external/')).map((e) => `${e.from} -> ${e.to}`)).toEqual([]);
  });

  it('no SQL outside the store floor', () => {
    const sql = /['"`][^'"`]*\b(SELECT\s+[\w*(]|INSERT\s+(OR\s+\w+\s+)?INTO\b|DELETE\s+FROM\b|UPDATE\s+\w+\s+SET\b|PRAGMA\s+\w|CREATE\s+(TABLE|INDEX)\b)/;
    const offenders: string[] = [];
    for (const file of sourceFiles(SRC)) {
      const path = relative(SRC, file).split(sep).join('/');
      if (path.startsWith('store/')) continue;
      readFileSync(file, 'utf8')
        .split('\n')
        .forEach((line, i) => {
          if (sql.test(line)) offenders.push(`${path}:${i + 1}: ${line.trim()}`);
        });
    }
    expect(offenders).toEqual([]);
  });
  it("no file of the installation is found from a module's own import.meta.url: the CLI bundle would look beside a chunk", () => {
    // package-files.ts finds the package root; the plugin is not bundled; main.ts compares the entry it is with argv[1];
    // install.ts asks Node to resolve a package, which works from any folder inside the package.
    const allowed = new Set(['store/package-files.ts', 'plugin/node-child.ts', 'cli/main.ts', 'main/electron/install.ts']);
    const offenders: string[] = [];
    for (const file of sourceFiles(SRC)) {
      const path = relative(SRC, file).split(sep).join('/');
      if (allowed.has(path)) continue;
      readFileSync(file, 'utf8')
        .split('\n')
        .forEach((line, i) => {
          if (line.includes('import.meta.url')) offenders.push(`${path}:${i + 1}: ${line.trim()}`);
        });
    }
    expect(offenders).toEqual([]);
  });
});
