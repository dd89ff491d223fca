import { Command, InvalidArgumentError } from 'commander';
import { resolveAccount } from '../../config/accounts.js';
import { runCliConsent } from '../../oauth/consent/cli-consent.js';
import { openStore } from '../../store/index.js';
import { defineCommand, UsageError } from '../context.js';

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InvalidArgumentError('must be a port number from 1 to 65535');
  }
  return port;
}

export default defineCommand((ctx) =>
  new Command('consent')
    .description("grant the proxy access to an account's mailbox (sign in at Google/Microsoft)")
    .argument('<account>', 'the username as the mail client types it (or the mailbox address)')
    .option('--device', 'device code flow (Microsoft): enter a short code on any device')
    .option('--no-browser', 'do not try to open a browser; only print the URL')
    .option('--port <n>', 'fixed loopback port for the redirect, e.g. for an SSH tunnel', parsePort)
    .action(
      async (username: string, opts: { device?: boolean; browser: boolean; port?: number }, cmd: Command) => {
        const config = ctx.loadConfig(cmd);
        const account = resolveAccount(config, username);
        if (!account) {
          throw new UsageError(
            `no account in ${config.file} matches "${username}" (or its connection is missing); ` +
              'add it under accounts:',
          );
        }
        const store = await openStore(config.store, { env: ctx.io.env });
        try {
          await runCliConsent({
            account,
            store,
            settings: config.settings,
            out: (text) => ctx.out(text),
            stdin: ctx.io.stdin,
            device: opts.device === true,
            browser: opts.browser,
            ...(opts.port === undefined ? {} : { port: opts.port }),
            env: ctx.io.env,
          });
        } finally {
          await store.close();
        }
      },
    ),
);
