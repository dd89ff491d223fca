import { Command } from 'commander';
import { explainConfig } from '../explain.js';
import { defineCommand } from '../context.js';

export default defineCommand((ctx) =>
  new Command('check-config')
    .description('validate a configuration file and explain what it sets up (exit 2 when invalid)')
    .argument('[file]', 'configuration file (default: --config, else ./config.yaml)')
    .action((file: string | undefined, _opts: unknown, cmd: Command) => {
      const config = ctx.loadConfig(cmd, file === undefined ? {} : { explicit: file });
      const { lines, warnings } = explainConfig(config);
      ctx.out(`${config.file} is valid.\n\n${lines.join('\n')}\n`);
      if (warnings.length > 0) ctx.out(`\nWarnings:\n${warnings.map((w) => `  - ${w}`).join('\n')}\n`);
    }),
);
