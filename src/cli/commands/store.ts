import { resolve } from 'node:path';
import { Command } from 'commander';
import { migrateSqliteToPostgres } from '../../store/migrate.js';
import { defineCommand, UsageError } from '../context.js';

export default defineCommand((ctx) => {
  const root = new Command('store').description('manage the token store');
  root
    .command('migrate')
    .description(
      'copy an embedded SQLite store into the configured PostgreSQL store (stop the proxy first); the ' +
        'SQLite file is then marked as moved and refuses to be used again',
    )
    .requiredOption('--from <file>', 'the SQLite store to copy, e.g. ./data/tokens.db')
    .option(
      '--from-key-file <file>',
      'its key file (default: store.keyFile of the config; both must hold one key)',
    )
    .action(async (opts: { from: string; fromKeyFile?: string }, cmd: Command) => {
      const config = ctx.loadConfig(cmd);
      if (config.store.kind !== 'postgres') {
        throw new UsageError(
          `${config.file} uses the embedded store: set store.kind: postgres and store.url to the database ` +
            'to copy into, then run this again.',
        );
      }
      const result = await migrateSqliteToPostgres(
        { path: resolve(opts.from), keyFile: resolve(opts.fromKeyFile ?? config.store.keyFile) },
        config.store,
        { env: ctx.io.env },
      );
      ctx.out(
        `Copied ${result.grants} grants, ${result.appPasswords} app passwords and ${result.consentLinks} consent ` +
          `links to ${result.to}; every refresh token decrypts there. ${opts.from} is marked as moved.\n`,
      );
    });
  return root;
});
