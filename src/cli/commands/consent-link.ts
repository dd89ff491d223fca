import { Command } from 'commander';
import { grantHasNoConsent, resolveAccount } from '../../config/accounts.js';
import { formatDuration, parseDuration } from '../../config/duration.js';
import { publicBaseUrl } from '../../config/public-url.js';
import { createConsentLink, DEFAULT_CONSENT_LINK_TTL_MS } from '../../oauth/consent-links.js';
import { openStore } from '../../store/index.js';
import { UsageError, defineCommand } from '../context.js';

export default defineCommand((ctx) =>
  new Command('consent-link')
    .description(
      'print a one-off link the mailbox owner opens to grant access (single use, expires; works for *@domain accounts)',
    )
    .argument('<account>', 'the username as the mail client types it, e.g. alice@example.com')
    .option(
      '--expires <duration>',
      'how long the link works, e.g. 30m, 72h, 7d',
      formatDuration(DEFAULT_CONSENT_LINK_TTL_MS),
    )
    .action(async (username: string, opts: { expires: string }, cmd: Command) => {
      const config = ctx.loadConfig(cmd);
      const expiresMs = parseDuration(opts.expires);
      if (expiresMs === undefined || expiresMs <= 0) {
        throw new UsageError(`--expires must be a duration such as 30m, 72h or 7d, not "${opts.expires}"`);
      }
      const account = resolveAccount(config, username);
      if (!account) {
        throw new UsageError(`no account in ${config.file} matches "${username}" (see accounts:)`);
      }
      if (grantHasNoConsent(account.connection)) {
        throw new UsageError(
          `${account.username} uses connection ${account.connection.name} (${account.connection.grant}): there is no consent to give`,
        );
      }
      const store = await openStore(config.store, { env: ctx.io.env });
      try {
        const link = await createConsentLink(store, account, { baseUrl: publicBaseUrl(config), expiresMs });
        // Only the URL on stdout, so `$(xoauth-proxy consent-link ...)` works in scripts.
        ctx.out(`${link.url}\n`);
        ctx.err(
          `Send this link to the owner of ${account.email}. It works once, until ` +
            `${new Date(link.expiresAt).toISOString().slice(0, 16).replace('T', ' ')} UTC.\n`,
        );
        if (config.listen.http.length === 0) {
          ctx.err(
            'warning: no http listener is configured (listen.http), so nothing serves this link yet.\n',
          );
        } else if (!config.http.publicUrl) {
          ctx.err(
            'note: the link uses http://localhost; set http.publicUrl for links that work from other computers.\n',
          );
        }
      } finally {
        await store.close();
      }
    }),
);
