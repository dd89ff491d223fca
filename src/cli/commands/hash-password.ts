import { Command } from 'commander';
import { hashPassword } from '../../credentials/password.js';
import { defineCommand } from '../context.js';
import { readNewPassword } from '../read-password.js';

export default defineCommand((ctx) =>
  new Command('hash-password')
    .description(
      'read a password (from the terminal without echo, or one line from stdin) and print its scrypt hash for the config',
    )
    .action(async () => {
      const password = await readNewPassword(ctx.io);
      ctx.out(`${await hashPassword(password)}\n`);
    }),
);
