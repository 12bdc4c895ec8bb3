/**
 * Files of the installation are found from the package root, wherever the code that asks was put:
 * in dist/, in the CLI bundle's folder, or copied into another app's own file (found through Node's
 * resolution of the package then). The built module is copied out of the tree to stand for the latter.
 */
import { copyFileSync, existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { builtModule, nativeLibrary, packageRoot, packageVersion } from '../../src/store/package-files.js';
import { ROOT, tempDir } from '../helpers/env.js';

const BUILT = join(ROOT, 'dist', 'store', 'package-files.js');

type PackageFiles = typeof import('../../src/store/package-files.js');

describe('package files', () => {
  it('are found from the package root, from the sources as from the build', async () => {
    expect(packageRoot()).toBe(ROOT);
    expect(builtModule('worker/tasks.js').href).toBe(pathToFileURL(join(ROOT, 'dist', 'worker', 'tasks.js')).href);
    expect(existsSync(builtModule('worker/tasks.js'))).toBe(true);
    expect(nativeLibrary('value_chunks')).toBe(join(ROOT, 'native', 'build', process.platform === 'darwin' ? 'value_chunks.dylib' : process.platform === 'win32' ? 'value_chunks.dll' : 'value_chunks.so'));
    const built = (await import(pathToFileURL(BUILT).href)) as PackageFiles;
    expect(built.packageRoot()).toBe(ROOT);
    expect(built.packageVersion()).toBe(packageVersion());
    expect(packageVersion()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("copied into another app's folder: Node's resolution of the package, or one clear error", async () => {
    const app = tempDir('sk-package-files-');
    // (Removing the folder afterwards unlinks the symlink; Node's rm does not follow it.)
    // An app of its own name, with this package in its node_modules and our module bundled into its code.
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'some-app', version: '9.9.9', type: 'module' }));
    mkdirSync(join(app, 'node_modules'));
    symlinkSync(ROOT, join(app, 'node_modules', 'session-keeper'), 'dir');
    mkdirSync(join(app, 'out'));
    copyFileSync(BUILT, join(app, 'out', 'bundled.js'));
    copyFileSync(`${BUILT}.map`, join(app, 'out', 'package-files.js.map'));
    const inApp = (await import(pathToFileURL(join(app, 'out', 'bundled.js')).href)) as PackageFiles;
    expect(inApp.packageRoot()).toBe(ROOT);
    expect(inApp.packageVersion()).toBe(packageVersion());

    const alone = tempDir('sk-package-files-alone-');
    writeFileSync(join(alone, 'package.json'), JSON.stringify({ name: 'other', type: 'module' }));
    copyFileSync(BUILT, join(alone, 'bundled.js'));
    copyFileSync(`${BUILT}.map`, join(alone, 'package-files.js.map'));
    const lost = (await import(pathToFileURL(join(alone, 'bundled.js')).href)) as PackageFiles;
    expect(() => lost.packageRoot()).toThrow(/no session-keeper package\.json above .*, and Node resolves none/);
  });
});
