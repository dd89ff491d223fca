import { Command } from 'commander';
import { configJsonSchema } from '../../config/schema.js';
import { defineCommand } from '../context.js';

export default defineCommand((ctx) =>
  new Command('schema')
    .description('print the JSON Schema of the configuration file (for editor autocompletion)')
    .action(() => {
      ctx.out(`${JSON.stringify(configJsonSchema(), null, 2)}\n`);
    }),
);
