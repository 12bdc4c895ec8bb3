/**
 * Installs the real OpenCode from npm into the repository's cache folder,
 * `.cache/opencode/<version>/`, once: later calls and other test processes reuse it.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { withCacheLock } from './cache-lock.ts';

const execFileAsync = promisify(execFile);

export const OPENCODE_VERSION = '1.18.33';
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CACHE_ROOT = join(REPO_ROOT, '.cache', 'opencode');

export interface InstalledOpenCode {
  /** The platform binary itself (the npm wrapper's launcher needs its postinstall, which we skip). */
  bin: string;
  version: string;
  /** `.cache/opencode/<version>/`, where the data folders are cached too. */
  dir: string;
}

/** npm names the binary packages `opencode-<os>-<arch>`, with `windows` for win32. */
export function platformPackage(): string {
  const os = process.platform === 'win32' ? 'windows' : process.platform;
  return `opencode-${os}-${process.arch}`;
}

function binaryIn(installDir: string): string {
  return join(installDir, 'node_modules', platformPackage(), 'bin', process.platform === 'win32' ? 'opencode.exe' : 'opencode');
}

async function versionOf(bin: string): Promise<string> {
  const { stdout } = await execFileAsync(bin, ['--version'], { timeout: 60_000, env: { ...process.env, OPENCODE_DISABLE_AUTOUPDATE: '1' } });
  return stdout.trim();
}

function installedMarker(dir: string): string {
  return join(dir, 'install', 'installed.json');
}

async function npmInstall(target: string, version: string): Promise<void> {
  writeFileSync(join(target, 'package.json'), JSON.stringify({ name: 'opencode-cache', private: true }));
  // Only this platform's binary package: the wrapper lists all twelve as optional dependencies.
  const args = [
    'install', '--prefix', target, '--ignore-scripts', '--omit=optional', '--save-exact', '--no-audit', '--no-fund',
    '--no-package-lock', '--loglevel=error', `opencode-ai@${version}`, `${platformPackage()}@${version}`,
  ];
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_config_')));
  try {
    await execFileAsync(process.platform === 'win32' ? 'npm.cmd' : 'npm', args, { env, timeout: 10 * 60_000, maxBuffer: 16 * 1024 * 1024 });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(`npm install opencode-ai@${version} failed: ${stderr.trim().split('\n').slice(-3).join(' | ') || String(error)}`);
  }
}

const installs = new Map<string, Promise<InstalledOpenCode>>();

/** Installs `opencode-ai@version` (if not yet cached) and returns its binary. */
export function installOpenCode(version = OPENCODE_VERSION): Promise<InstalledOpenCode> {
  let pending = installs.get(version);
  if (pending === undefined) {
    pending = doInstall(version);
    installs.set(version, pending);
    pending.catch(() => installs.delete(version));
  }
  return pending;
}

async function doInstall(version: string): Promise<InstalledOpenCode> {
  const dir = join(CACHE_ROOT, version);
  const installDir = join(dir, 'install');
  const ready = (): InstalledOpenCode | undefined =>
    existsSync(installedMarker(dir)) && existsSync(binaryIn(installDir)) ? { bin: binaryIn(installDir), version, dir } : undefined;
  const cached = ready();
  if (cached !== undefined) return cached;
  mkdirSync(dir, { recursive: true });
  return withCacheLock(join(dir, 'install.lock'), async () => {
    const afterWait = ready();
    if (afterWait !== undefined) return afterWait;
    // Installed beside the final folder and renamed into place, so a killed install leaves no half copy.
    const staging = mkdtempSync(join(dir, 'install.tmp-'));
    try {
      await npmInstall(staging, version);
      const reported = await versionOf(binaryIn(staging));
      if (reported !== version) throw new Error(`installed OpenCode reports version ${reported}, expected ${version}`);
      writeFileSync(join(staging, 'installed.json'), JSON.stringify({ version, package: platformPackage(), time: Date.now() }));
      rmSync(installDir, { recursive: true, force: true });
      renameSync(staging, installDir);
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
    const done = ready();
    if (done === undefined) throw new Error(`OpenCode ${version} install left no binary at ${binaryIn(installDir)}`);
    return done;
  });
}
