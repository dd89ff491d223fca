import { Command } from 'commander';
import { resolveAccount } from '../../config/accounts.js';
import type { Config, ResolvedAccount } from '../../config/types.js';
import { createAppPassword, listAppPasswords, revokeAppPassword } from '../../credentials/app-passwords.js';
import { openStore } from '../../store/index.js';
import type { Store } from '../../store/types.js';
import { ExitCode, EXIT, UsageError, defineCommand, type CliContext } from '../context.js';

function time(ms: number | undefined): string {
  return ms === undefined ? '-' : `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')}Z`;
}

function account(config: Config, username: string): ResolvedAccount {
  const resolved = resolveAccount(config, username);
  if (!resolved) throw new UsageError(`no account in ${config.file} matches "${username}" (see accounts:)`);
  return resolved;
}

async function withStore<T>(ctx: CliContext, config: Config, fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await openStore(config.store, { env: ctx.io.env });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

export default defineCommand((ctx) => {
  const root = new Command('app-password').description(
    'manage app passwords: local passwords for mail clients, one per device, each revocable',
  );

  root
    .command('create')
    .description('make a new app password and print it (shown once; only a hash is stored)')
    .argument('<account>', 'the username as the mail client types it')
    .option('--label <label>', 'what it is for, e.g. "phone" or "Thunderbird at home"', 'app password')
    .action(async (username: string, opts: { label: string }, cmd: Command) => {
      const config = ctx.loadConfig(cmd);
      const acct = account(config, username);
      const store = await openStore(config.store, { env: ctx.io.env });
      try {
        const created = await createAppPassword(store, acct.id, opts.label);
        ctx.out(`${created.password}\n`);
        ctx.err(
          `App password "${created.record.label}" for ${acct.username} (id ${created.record.id}). ` +
            'Put it in the mail client now; it cannot be shown again.\n',
        );
      } finally {
        await store.close();
      }
    });

  root
    .command('list')
    .description('list the app passwords of an account (labels and dates, never the passwords)')
    .argument('<account>', 'the username as the mail client types it')
    .option('--json', 'machine-readable output')
    .action(async (username: string, opts: { json?: boolean }, cmd: Command) => {
      const config = ctx.loadConfig(cmd);
      const acct = account(config, username);
      const records = await withStore(ctx, config, (store) => listAppPasswords(store, acct.id));
      if (opts.json) {
        const safe = records.map((r) => ({
          id: r.id,
          label: r.label,
          createdAt: r.createdAt,
          lastUsedAt: r.lastUsedAt ?? null,
        }));
        ctx.out(`${JSON.stringify(safe, null, 2)}\n`);
        return;
      }
      if (records.length === 0) {
        ctx.out(`${acct.username} has no app passwords.\n`);
        return;
      }
      const rows = [
        ['LABEL', 'ID', 'CREATED', 'LAST USED'],
        ...records.map((r) => [r.label, r.id, time(r.createdAt), time(r.lastUsedAt)]),
      ];
      const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
      ctx.out(
        rows
          .map((row) =>
            row
              .map((c, i) => c.padEnd(widths[i]!))
              .join('  ')
              .trimEnd(),
          )
          .join('\n') + '\n',
      );
    });

  root
    .command('revoke')
    .description('remove an app password, by id or label (the grant itself is untouched)')
    .argument('<account>', 'the username as the mail client types it')
    .argument('[id]', 'the id shown by `app-password list`')
    .option('--label <label>', 'revoke by label instead of id')
    .action(async (username: string, id: string | undefined, opts: { label?: string }, cmd: Command) => {
      const which = opts.label ?? id;
      if (which === undefined || (opts.label !== undefined && id !== undefined)) {
        throw new UsageError('name the app password to revoke: its id, or --label <label> (not both)');
      }
      const config = ctx.loadConfig(cmd);
      const acct = account(config, username);
      const removed = await withStore(ctx, config, (store) => revokeAppPassword(store, acct.id, which));
      if (!removed) {
        ctx.err(
          `${acct.username} has no app password "${which}" (see: xoauth-proxy app-password list ${acct.username}).\n`,
        );
        throw new ExitCode(EXIT.failure);
      }
      ctx.out(`Revoked app password "${which}" of ${acct.username}.\n`);
    });

  return root;
});
