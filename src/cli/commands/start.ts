import { Command } from 'commander';
import type { Logger } from 'pino';
import { loadConfig } from '../../config/load.js';
import type { Config } from '../../config/types.js';
import type { Daemon } from '../../daemon.js';
import { listenerLine } from '../explain.js';
import { packageVersion } from '../version.js';
import { EXAMPLE_CONFIG, defineCommand, type CliContext } from '../context.js';

/** What the person who just typed `start` needs to see: where to point mail clients and the browser. */
export function startupBanner(daemon: Daemon, configFile: string, version: string): string {
  const lines = [`xoauth-proxy ${version} is running (config: ${configFile})`];
  if (daemon.listeners.length === 0) lines.push('  no listeners configured');
  for (const l of daemon.listeners) lines.push(`  ${listenerLine(l.protocol, l)}`);
  if (daemon.httpUrl !== undefined) lines.push(`Consent and admin pages: ${daemon.httpUrl}`);
  lines.push('Stop with Ctrl+C; reload the config with `kill -HUP` or `xoauth-proxy reload`.');
  return `${lines.join('\n')}\n`;
}

type Signal = 'SIGINT' | 'SIGTERM';

/**
 * Listens for SIGINT/SIGTERM from before the daemon starts (a signal during startup must not kill the
 * process half-way); the first one resolves `first`, a second one calls `onSecond`. SIGHUP (systemd's
 * reload, a closed terminal) calls `onHangup`: Node's default for it is to die without a word.
 */
function watchSignals(ctx: CliContext, onSecond: (signal: Signal) => void, onHangup: () => void) {
  const { signals } = ctx.deps;
  let count = 0;
  let resolveFirst: (signal: Signal) => void = () => {};
  const first = new Promise<Signal>((resolve) => (resolveFirst = resolve));
  const handler = (signal: Signal) => () => {
    count += 1;
    if (count === 1) resolveFirst(signal);
    else onSecond(signal);
  };
  const onInt = handler('SIGINT');
  const onTerm = handler('SIGTERM');
  signals.on('SIGINT', onInt);
  signals.on('SIGTERM', onTerm);
  signals.on('SIGHUP', onHangup);
  return {
    first,
    dispose() {
      signals.off('SIGINT', onInt);
      signals.off('SIGTERM', onTerm);
      signals.off('SIGHUP', onHangup);
    },
  };
}

/**
 * SIGHUP: the config file is read and validated again; a broken one is refused with the same
 * file:line:col errors as at startup and the running config stays in force. Reloads run one at a
 * time, so two quick SIGHUPs cannot interleave their listener changes.
 */
function reloader(ctx: CliContext, file: string, logger: Logger, daemon: () => Daemon | undefined) {
  let chain: Promise<void> = Promise.resolve();
  return (): void => {
    chain = chain.then(async () => {
      const running = daemon();
      if (!running) {
        logger.warn({ signal: 'SIGHUP' }, 'reload requested during startup; ignored');
        return;
      }
      let next: Config;
      try {
        next = loadConfig(file, { env: ctx.io.env });
      } catch (err) {
        logger.error(
          { signal: 'SIGHUP', config: file, errors: (err as Error).message },
          'reload refused: the new config is invalid; the running config stays in force',
        );
        return;
      }
      try {
        const result = await running.reload(next);
        for (const f of result.failed) {
          logger.error({ listener: f.listener, err: f.error }, 'reload: listener could not start');
        }
        logger.info(
          { signal: 'SIGHUP', config: file, started: result.started, retired: result.retired },
          'config reloaded',
        );
      } catch (err) {
        logger.error({ err }, 'reload failed');
      }
    });
  };
}

export default defineCommand((ctx) =>
  new Command('start')
    .description(
      'start the proxy (uses ./config.example.yaml when there is no ./config.yaml and no --config)',
    )
    .action(async (_opts: unknown, cmd: Command) => {
      const config = ctx.loadConfig(cmd, { fallbackToExample: true });
      if (config.usedExample) {
        ctx.err(
          `warning: no ./config.yaml found, starting with ${EXAMPLE_CONFIG} (example values: consent will not work).\n` +
            '         Copy it to config.yaml and edit it, or pass --config <file>.\n',
        );
      }
      const logger = ctx.logger();
      let running: Daemon | undefined;
      const onReload = reloader(ctx, config.file, logger, () => running);
      const watch = watchSignals(
        ctx,
        (signal) => {
          // A second Ctrl+C while closing: the person wants out now.
          logger.warn({ signal }, 'second signal while shutting down; exiting at once');
          ctx.deps.forceExit?.(1);
        },
        onReload,
      );
      try {
        const daemon = await ctx.deps.startDaemon(config, logger);
        running = daemon;
        // The banner goes to stderr so that stdout stays a clean stream of JSON log lines.
        ctx.err(startupBanner(daemon, config.file, packageVersion()));
        logger.info(
          { listeners: daemon.listeners, httpUrl: daemon.httpUrl, config: config.file },
          'xoauth-proxy started',
        );
        const signal = await watch.first;
        const graceMs = config.settings.shutdownGraceMs;
        const began = Date.now();
        logger.info({ signal, graceMs }, 'shutting down: no new connections; relayed sessions may finish');
        try {
          await daemon.close({ graceMs });
        } catch (err) {
          logger.error({ err }, 'error while shutting down');
          throw err;
        }
        logger.info({ durationMs: Date.now() - began }, 'stopped');
      } finally {
        watch.dispose();
      }
    }),
);
