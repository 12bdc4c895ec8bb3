import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findNodeAtLocation, parseTree } from 'jsonc-parser';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SkError } from '../../src/core/errors.js';
import { configSaveTarget, findGlobalConfig, globalConfigFiles, loadConfig, saveSessionBlock } from '../../src/main/config-file.js';
import { configReader } from '../../src/main/config-reader.js';
import { checkSessionConfig } from '../../src/core/config.js';
import { sessionDefaults } from '../../src/core/session-defaults.js';

let root: string;
let env: Record<string, string>;
let dir: string;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'sk-config-'));
  env = { HOME: join(root, 'home'), XDG_CONFIG_HOME: join(root, 'config'), XDG_DATA_HOME: join(root, 'data') };
  dir = join(root, 'config', 'opencode');
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

function write(name: string, text: string): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(SkError);
    expect((error as SkError).code).toBe('config');
    return (error as SkError).message;
  }
  throw new Error('expected a config error');
}

/** The text before and after the `session` property, which a save must not touch. */
function outsideSession(text: string): [string, string] {
  const node = findNodeAtLocation(parseTree(text)!, ['session'])!.parent!;
  return [text.slice(0, node.offset), text.slice(node.offset + node.length)];
}

const USER_FILE = `// my OpenCode settings
{
    "$schema": "https://opencode.ai/config.json",
    /* theme, chosen with care */
    "theme": "opencode",
    "session": {
        // cap the database
        "maxSizeMB": 200,
        "futureKey": true,
    },
    "provider": { "x": { "options": { "timeout": 5 } } }, // trailing comma follows
}
`;

describe('findGlobalConfig', () => {
  it('finds nothing, opencode.json, or opencode.jsonc when both exist', () => {
    expect(findGlobalConfig(env)).toBeNull();
    expect(configSaveTarget(env)).toBe(join(dir, 'opencode.json'));
    const json = write('opencode.json', '{}');
    expect(findGlobalConfig(env)).toBe(json);
    const jsonc = write('opencode.jsonc', '{}');
    expect(findGlobalConfig(env)).toBe(jsonc);
    expect(globalConfigFiles(env)).toEqual([json, jsonc]);
    expect(configSaveTarget(env)).toBe(jsonc);
  });
});

describe('loadConfig', () => {
  it('gives defaults when no file exists', () => {
    const loaded = loadConfig({ env });
    expect(loaded.source).toBeNull();
    expect(loaded.sources).toEqual([]);
    expect(loaded.config).toMatchObject({ archive: true, orderBy: 'created', archiveDir: join(root, 'data', 'opencode', 'archive') });
    expect(loaded.config.maxSizeMB).toBeUndefined();
  });

  it('gives defaults when the file has no session block, or is empty', () => {
    const file = write('opencode.json', '{"theme": "x"}');
    expect(loadConfig({ env })).toMatchObject({ source: file, config: { archive: true } });
    write('opencode.json', '  \n');
    expect(loadConfig({ env }).config.archive).toBe(true);
  });

  it('reads JSONC with comments and trailing commas, and warns about unknown keys', () => {
    const file = write('opencode.jsonc', USER_FILE);
    const loaded = loadConfig({ env });
    expect(loaded.source).toBe(file);
    expect(loaded.config.maxSizeMB).toBe(200);
    expect(loaded.warnings).toEqual([`config ${file}: session.futureKey: unknown key, ignored`]);
  });

  it('merges opencode.json then opencode.jsonc, key by key, as OpenCode does', () => {
    write('opencode.json', '{"session": {"maxSizeMB": 100, "maxAgeDays": 7}}');
    const jsonc = write('opencode.jsonc', '{"session": {"maxSizeMB": 300}}');
    const loaded = loadConfig({ env });
    expect(loaded.config).toMatchObject({ maxSizeMB: 300, maxAgeDays: 7 });
    expect(loaded.source).toBe(jsonc);
  });

  it('names the file a bad value came from', () => {
    const json = write('opencode.json', '{"session": {"maxAgeDays": "soon"}}');
    write('opencode.jsonc', '{"session": {"maxSizeMB": 300}}');
    expect(configError(() => loadConfig({ env }))).toBe(`config ${json}: session.maxAgeDays: expected a positive number, got "soon"`);
  });

  it('reads only --config when given, and insists it exists', () => {
    write('opencode.json', '{"session": {"maxSizeMB": 1}}');
    const other = join(root, 'other.json');
    writeFileSync(other, '{"session": {"maxSessions": 3}}');
    const loaded = loadConfig({ path: other, env });
    expect(loaded).toMatchObject({ source: other, config: { maxSessions: 3 } });
    expect(loaded.config.maxSizeMB).toBeUndefined();
    expect(configError(() => loadConfig({ path: join(root, 'typo.json'), env }))).toBe(`config ${join(root, 'typo.json')}: file not found`);
  });

  it('rejects an invalid value with the key named', () => {
    const file = write('opencode.json', '{"session": {"maxSizeMB": "big"}}');
    expect(configError(() => loadConfig({ env }))).toBe(`config ${file}: session.maxSizeMB: expected a positive number, got "big"`);
  });

  it('reports a syntax error on one line with line:column', () => {
    const file = write('opencode.jsonc', '{\n  // ok\n  "session": { "maxSizeMB": 200 \n    "archive": true }\n}\n');
    const message = configError(() => loadConfig({ env }));
    expect(message).toBe(`config ${file}:4:5: syntax error: comma expected`);
  });

  it('rejects a non-object root or session', () => {
    const file = write('opencode.json', '[1, 2]');
    expect(configError(() => loadConfig({ env }))).toBe(`config ${file}: expected a JSON object at the top level`);
    write('opencode.json', '{"session": "postgres://u:hunter2@h/db"}');
    const message = configError(() => loadConfig({ env }));
    expect(message).toMatch(/session: expected an object/);
    expect(message).not.toContain('hunter2');
  });

  it('never prints the connection string', () => {
    write('opencode.json', '{"session": {"storage": "postgres", "connectionString": 5, "offload": "postgres://u:hunter2@h/db"}}');
    expect(configError(() => loadConfig({ env }))).not.toMatch(/hunter2|: 5|got/);
  });

  it('reports an unreadable file', () => {
    mkdirSync(join(dir, 'opencode.json'), { recursive: true });
    expect(configError(() => loadConfig({ env }))).toMatch(/is a folder/);
    if (process.getuid?.() !== 0) {
      rmSync(join(dir, 'opencode.json'), { recursive: true });
      const file = write('opencode.json', '{}');
      chmodSync(file, 0o000);
      expect(configError(() => loadConfig({ env }))).toBe(`config ${file}: cannot read (EACCES)`);
    }
  });
});

describe('configReader', () => {
  const cwd = () => join(root, 'project');

  it('without any config answers exactly what loadConfig does, defaults the schema fills in included', async () => {
    mkdirSync(cwd(), { recursive: true });
    const read = await configReader({ env, cwd: cwd() });
    expect(read()).toEqual(loadConfig({ env, cwd: cwd() }));
    const checked = checkSessionConfig({}, env);
    expect(checked.ok && checked.config).toEqual(sessionDefaults(env));
    // Fresh lists each time: a caller changing one cannot change the next answer.
    read().config.keep.push('ses_x');
    expect(read().config.keep).toEqual([]);
  });

  it('with a file, validates it when called, as loadConfig does', async () => {
    mkdirSync(cwd(), { recursive: true });
    const file = write('opencode.json', '{"session": {"maxSizeMB": 20}}');
    const read = await configReader({ env, cwd: cwd() });
    expect(read().config.maxSizeMB).toBe(20);
    writeFileSync(file, '{"session": {"maxSizeMB": -1}}');
    expect(configError(read)).toBe(`config ${file}: session.maxSizeMB: expected a positive number, got -1`);
  });

  it('with files that hold no settings, answers what loadConfig does; a broken one fails when asked, as loadConfig does', async () => {
    mkdirSync(cwd(), { recursive: true });
    const file = write('opencode.json', '{"model": "x", "session": {}}');
    write('opencode.jsonc', '// nothing for us\n{"theme": "dark",}');
    const read = await configReader({ env, cwd: cwd() });
    expect(read()).toEqual(loadConfig({ env, cwd: cwd() }));
    expect(read().source).toBe(join(dir, 'opencode.jsonc'));
    writeFileSync(file, '{"session": ');
    const broken = await configReader({ env, cwd: cwd() });
    expect(configError(broken)).toBe(configError(() => loadConfig({ env, cwd: cwd() })));
  });

  it('takes a project file, inline config and --config as configs too', async () => {
    mkdirSync(join(cwd(), '.git'), { recursive: true });
    writeFileSync(join(cwd(), 'opencode.json'), '{"session": {"maxAgeDays": 3}}');
    expect((await configReader({ env, cwd: cwd() }))().config.maxAgeDays).toBe(3);
    rmSync(join(cwd(), 'opencode.json'));
    expect((await configReader({ env: { ...env, OPENCODE_CONFIG_CONTENT: '{"session": {"maxSessions": 4}}' }, cwd: cwd() }))().config.maxSessions).toBe(4);
    const missing = join(root, 'nowhere.json');
    expect(configError(await configReader({ env, cwd: cwd(), path: missing }))).toBe(`config ${missing}: file not found`);
  });
});

describe('saveSessionBlock', () => {
  it('changes only the session block: comments, other keys and formatting stay byte for byte', () => {
    const file = write('opencode.jsonc', USER_FILE);
    saveSessionBlock(file, { maxSizeMB: 150, keep: ['ses_a'], archive: false });
    const after = readFileSync(file, 'utf8');
    expect(outsideSession(after)).toEqual(outsideSession(USER_FILE));
    expect(after).toContain('// cap the database');
    expect(after).toContain('"futureKey": true');
    expect(after).toContain('        "keep": [');
    expect(loadConfig({ env }).config).toMatchObject({ maxSizeMB: 150, keep: ['ses_a'], archive: false });
  });

  it('removes a key given as undefined and leaves keys not given', () => {
    const file = write('opencode.json', '{\n  "session": {\n    "maxSizeMB": 200,\n    "maxAgeDays": 30\n  }\n}\n');
    saveSessionBlock(file, { maxSizeMB: undefined });
    expect(readFileSync(file, 'utf8')).toBe('{\n  "session": {\n    "maxAgeDays": 30\n  }\n}\n');
  });

  it('adds a session block to a file without one, keeping the rest', () => {
    const file = write('opencode.json', '{\n\t"theme": "x", // mine\n\t"model": "a/b"\n}');
    saveSessionBlock(file, { maxSessions: 10 });
    const after = readFileSync(file, 'utf8');
    expect(after.startsWith('{\n\t"theme": "x", // mine\n\t"model": "a/b"')).toBe(true);
    expect(after).toContain('\t"session": {\n\t\t"maxSessions": 10\n\t}');
    expect(after.endsWith('}')).toBe(true);
  });

  it('creates the file and its folder, private, when missing', () => {
    const file = configSaveTarget(env);
    expect(existsSync(dir)).toBe(false);
    saveSessionBlock(file, { maxAgeDays: 14 });
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ session: { maxAgeDays: 14 } });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(loadConfig({ env }).config.maxAgeDays).toBe(14);
  });

  it('keeps an existing file\'s mode and writes through a symlink', () => {
    const real = join(root, 'dotfiles', 'opencode.json');
    mkdirSync(join(root, 'dotfiles'));
    writeFileSync(real, '{}\n');
    chmodSync(real, 0o640);
    mkdirSync(dir, { recursive: true });
    const link = join(dir, 'opencode.json');
    symlinkSync(real, link);
    saveSessionBlock(link, { maxSizeMB: 5 });
    expect(JSON.parse(readFileSync(real, 'utf8'))).toEqual({ session: { maxSizeMB: 5 } });
    expect(statSync(real).mode & 0o777).toBe(0o640);
    expect(readdirSync(join(root, 'dotfiles'))).toEqual(['opencode.json']);
  });

  it('writes nothing when the result would be invalid', () => {
    const file = write('opencode.jsonc', USER_FILE);
    expect(configError(() => saveSessionBlock(file, { maxSizeMB: -1 }))).toBe(
      `config ${file}: session.maxSizeMB: expected a positive number, got -1`,
    );
    expect(configError(() => saveSessionBlock(file, { storage: 'postgres' }))).toMatch(/session\.connectionString: required/);
    expect(readFileSync(file, 'utf8')).toBe(USER_FILE);
    expect(readdirSync(dir)).toEqual(['opencode.jsonc']);
    const missing = join(root, 'new', 'opencode.json');
    configError(() => saveSessionBlock(missing, { orderBy: 'newest' as 'created' }));
    expect(existsSync(join(root, 'new'))).toBe(false);
  });

  it('refuses to edit a file it cannot parse', () => {
    const file = write('opencode.json', '{"theme": "x" "session": {}}');
    expect(configError(() => saveSessionBlock(file, { maxSizeMB: 5 }))).toMatch(/:1:15: syntax error: comma expected$/);
    expect(readFileSync(file, 'utf8')).toBe('{"theme": "x" "session": {}}');
  });
});
