/**
 * The OpenCode plugin's two commands. `startup [--warnings-only] [--report FILE] --yes`: the
 * startup check OpenCode Desktop's utility process runs (size warnings once per crossing, then
 * retention and compaction from the config), always as beside a running OpenCode; the plugin
 * starts it in the background and reads the report it leaves. `install-plugin [--project]`: the
 * loader file in OpenCode's plugins folder.
 */
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { formatBytes } from '../../core/bytes.js';
import type { SessionConfig, SessionOverrides } from '../../core/config.js';
import { oneLine, SkError } from '../../core/errors.js';
import { PLUGIN_REPORT_VERSION, type PluginReport } from '../../core/plugin-report.js';
import { print } from '../format.js';

interface PluginGlobals {
  db: string;
  cacheDir: string;
  json: boolean;
}

interface StartupFlags {
  warningsOnly?: boolean;
  report?: string;
  yes?: boolean;
}

function formatReport(report: Extract<PluginReport, { ok: true }>): string {
  const lines = [`${report.db}: ${formatBytes(report.bytes)}.`];
  for (const w of report.newWarnings) lines.push(`${w.message} Fix: ${w.fix}`);
  lines.push(...report.notes);
  if (report.newWarnings.length === 0 && report.notes.length === 0) lines.push('Nothing to do.');
  return lines.join('\n');
}

export function registerPluginCommands<G extends PluginGlobals>(
  program: Command,
  helpers: { sqliteFile: (command: Command, name: string) => G; settings: (overrides?: SessionOverrides) => Promise<SessionConfig> },
): void {
  program
    .command('startup')
    .description("the startup check beside a running OpenCode: size warnings (once per crossing), then the config's retention and compaction; what the OpenCode plugin runs")
    .option('--warnings-only', 'only the size check: no retention, no compaction')
    .option('--report <file>', 'also write the result as JSON to this file (whole or not at all, mode 0600), failures included')
    .option('--yes', "apply the config's retention without asking (needed unless --warnings-only)")
    .action(async (options: StartupFlags, command: Command) => {
      const mode = options.warningsOnly ? 'warnings' : 'startup';
      const { pluginCheck, writePluginReport } = await import('../../main/plugin-check.js');
      const reportPath = options.report === undefined ? undefined : resolve(options.report);
      try {
        if (mode === 'startup' && !options.yes) {
          throw new SkError('usage', "startup applies the config's retention without showing a plan: pass --yes (the plan: session-keeper retention)");
        }
        const g = helpers.sqliteFile(command, 'startup');
        const config = await helpers.settings();
        const report = await pluginCheck({ db: g.db, config, cacheDir: g.cacheDir, mode });
        if (reportPath !== undefined) writePluginReport(reportPath, report);
        print(g.json, report, () => formatReport(report));
      } catch (error) {
        if (reportPath !== undefined) writePluginReport(reportPath, { version: PLUGIN_REPORT_VERSION, ok: false, mode, error: oneLine(error) });
        throw error;
      }
    });

  program
    .command('install-plugin')
    .description("put the OpenCode plugin's loader into OpenCode's plugins folder ($XDG_CONFIG_HOME/opencode/plugins/)")
    .option('--project', "into this project's .opencode/plugins/ instead")
    .option('--node <path>', 'the absolute path of the node the plugin runs session-keeper with (default: the first node on PATH when OpenCode starts)')
    .option('--force', 'replace a file of that name that session-keeper did not write')
    .action(async (options: { project?: boolean; node?: string; force?: boolean }, command: Command) => {
      const g = command.optsWithGlobals<{ json: boolean }>();
      const { installPlugin } = await import('../../main/plugin-install.js');
      const result = installPlugin({ projectDir: options.project ? process.cwd() : undefined, node: options.node, force: options.force ?? false });
      print(g.json, result, () =>
        [
          `${result.replaced === 'none' ? 'Installed' : 'Replaced'} ${result.path}; OpenCode loads it at its next start.`,
          'Or, instead of the file, in opencode.json:',
          `  "plugin": [${result.configEntry}]`,
        ].join('\n'),
      );
    });
}
