import { Command } from 'commander';
import {
  buildReport,
  formatReport,
  openCheckStore,
  ProtocolSelectionError,
  RecordingTokens,
  runChecks,
  scrub,
  selectProtocols,
} from '../../check/index.js';
import { resolveAccount } from '../../config/accounts.js';
import { createLogger } from '../../log.js';
import { TokenManager } from '../../oauth/token-manager.js';
import { EXIT, ExitCode, UsageError, defineCommand } from '../context.js';

interface CheckOptions {
  imap?: boolean;
  smtp?: boolean;
  pop3?: boolean;
  json?: boolean;
}

export default defineCommand((ctx) =>
  new Command('check')
    .description(
      "log in upstream as a real client (IMAP, SMTP, POP3) with the account's token and report what works (never prints a token)",
    )
    .argument(
      '<account>',
      'the username as the mail client types it (a concrete address for *@domain accounts)',
    )
    .option('--imap', 'check IMAP')
    .option('--smtp', 'check SMTP (login only, no mail is sent)')
    .option('--pop3', 'check POP3')
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      '\nWithout --imap/--smtp/--pop3: IMAP and SMTP when the connection has a server for them, POP3 when it\n' +
        'has one and listen.pop3 is configured. Exit code 0 when every check passed, 1 when one failed.',
    )
    .action(async (username: string, opts: CheckOptions, cmd: Command) => {
      const config = ctx.loadConfig(cmd);
      const account = resolveAccount(config, username);
      if (!account) {
        const hint = username.includes('*') ? ' (give a concrete address, e.g. bob@example.com)' : '';
        throw new UsageError(`no account in ${config.file} matches "${username}"${hint} (see accounts:)`);
      }
      let protocols;
      try {
        protocols = selectProtocols(config, account, opts);
      } catch (err) {
        if (err instanceof ProtocolSelectionError) throw new UsageError(err.message);
        throw err;
      }
      // The lines below are the output; the TokenManager's log only on request (LOG_LEVEL), on stderr.
      const logger = createLogger({
        level: ctx.io.env.LOG_LEVEL ?? 'silent',
        pretty: false,
        destination: ctx.io.stderr,
      });
      const store = await openCheckStore(config, ctx.io.env);
      const manager = new TokenManager({
        config,
        store,
        logger,
        ...(config.store.kind === 'postgres' ? { refreshLeaseMs: config.store.refreshLeaseMs } : {}),
      });
      const tokens = new RecordingTokens(manager);
      let report;
      try {
        const checks = await runChecks({
          account,
          tokens,
          protocols,
          timeoutMs: config.settings.limits.upstreamConnectTimeoutMs,
        });
        report = buildReport(account, checks);
      } finally {
        // Stopping retries saving a rotated refresh token the store refused during the check: closing
        // the store without it would drop the only live grant.
        await manager.stop();
        await store.close();
      }
      const text = opts.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report);
      ctx.out(scrub(text, tokens.seen));
      if (!report.ok) throw new ExitCode(EXIT.failure);
    }),
);
