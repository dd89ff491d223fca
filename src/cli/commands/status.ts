import { Command } from 'commander';
import { collectAccountStatus, type AccountStatus } from '../../oauth/account-status.js';
import { openStore, storeMayExist } from '../../store/index.js';
import { defineCommand } from '../context.js';

function when(ms: number | undefined, now: number): string {
  if (ms === undefined) return '-';
  const minutes = Math.round((ms - now) / 60_000);
  const rel =
    Math.abs(minutes) < 120
      ? `${Math.abs(minutes)} min`
      : Math.abs(minutes) < 2880
        ? `${Math.round(Math.abs(minutes) / 60)} h`
        : `${Math.round(Math.abs(minutes) / 1440)} d`;
  const iso = new Date(ms).toISOString().slice(0, 16).replace('T', ' ');
  return `${iso}Z (${minutes >= 0 ? `in ${rel}` : `${rel} ago`})`;
}

const HINT: Record<AccountStatus['state'], string> = {
  active: '',
  failing: 'token endpoint failing; tokens kept, retrying',
  'needs-consent': 'run: xoauth-proxy consent <account>',
  'no-grant': 'no consent yet: xoauth-proxy consent <account>',
  'app-only': 'client credentials: no consent needed',
  'service-account': 'Google service account (domain-wide delegation): no consent needed',
  unreadable: 'the stored grant cannot be decrypted: xoauth-proxy consent <account>',
};

/** How an account sends, for connections that may use Microsoft Graph. */
function sendsVia(r: AccountStatus, now: number): string {
  const s = r.sending;
  if (!s) return 'smtp';
  if (s.mode === 'graph') return 'graph';
  return s.via === 'graph'
    ? `graph (auto; SMTP AUTH off, SMTP again ${when(s.graphUntil, now)})`
    : 'smtp (auto)';
}

function note(r: AccountStatus): string {
  const text = r.lastError ?? HINT[r.state].replace('<account>', r.accountId);
  if (r.sending?.graphConsent !== false) return text;
  const graph = `consented without Graph (Mail.Send): to send through Graph, xoauth-proxy consent ${r.accountId}`;
  return text === '' ? graph : `${text}; ${graph}`;
}

export function formatStatusTable(rows: AccountStatus[], now: number): string {
  if (rows.length === 0) return 'No accounts configured and no grants stored.\n';
  // The column appears only where a connection may send through Graph.
  const graph = rows.some((r) => r.sending !== undefined);
  const table = [
    [
      'ACCOUNT',
      'STATE',
      'TOKEN EXPIRES',
      'LAST REFRESH',
      ...(graph ? ['SENDS VIA'] : []),
      'LAST ERROR / NOTE',
    ],
    ...rows.map((r) => [
      r.entry === undefined ? `${r.accountId} (not in config)` : r.accountId,
      r.state,
      when(r.accessTokenExpiresAt, now),
      when(r.lastRefreshAt, now),
      ...(graph ? [sendsVia(r, now)] : []),
      note(r),
    ]),
  ];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  return (
    table
      .map((row) =>
        row
          .map((cell, i) => cell.padEnd(widths[i]!))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

export default defineCommand((ctx) =>
  new Command('status')
    .description(
      'list every account with its state, token expiry, last refresh and last error (never a token)',
    )
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const config = ctx.loadConfig(cmd);
      // Before the first start there is no store: list the accounts, and create nothing.
      const store = storeMayExist(config.store)
        ? await openStore(config.store, { env: ctx.io.env })
        : { listTokenSummaries: async () => [], close: async () => undefined };
      try {
        const rows = await collectAccountStatus(config, store);
        if (opts.json) {
          ctx.out(`${JSON.stringify(rows, null, 2)}\n`);
        } else {
          ctx.out(formatStatusTable(rows, Date.now()));
          for (const c of config.connections.values()) {
            if (c.clientCertificate) {
              ctx.out(
                `Connection ${c.name}: client certificate expires ${when(c.clientCertificate.notAfter, Date.now())}\n`,
              );
            }
          }
        }
      } finally {
        await store.close();
      }
    }),
);
