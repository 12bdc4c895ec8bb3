/**
 * `session-keeper serve [--port N]`: the size-check dialog and the settings panel in a browser
 * (web mode). Prints its URL, with the token, as the first line of standard output, then runs
 * until interrupted.
 */
import { Command, InvalidArgumentError } from 'commander';
import { resolve } from 'node:path';

interface ServeGlobals {
  db: string;
  cacheDir: string;
  config?: string;
}

const port = (value: string): number => {
  if (!/^\d+$/.test(value) || Number(value) > 65_535) throw new InvalidArgumentError('expected a port number (0-65535)');
  return Number(value);
};

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('the size-check dialog and settings in a browser, on 127.0.0.1 with a private token')
    .option('--port <n>', 'port to listen on (default: a free one)', port, 0)
    .action(async (options: { port: number }, command: Command) => {
      const g = command.optsWithGlobals<ServeGlobals>();
      const { startWebServer } = await import('../../web/server.js');
      const server = await startWebServer({ db: resolve(g.db), cacheDir: resolve(g.cacheDir), configPath: g.config, port: options.port });
      process.stdout.write(`${server.url}\n`);
      process.stderr.write(`session-keeper: serving ${resolve(g.db)} on 127.0.0.1:${server.port}; Ctrl-C stops\n`);
      await new Promise<void>((done) => {
        const stop = (): void => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          void server.close().finally(done);
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
    });
}
