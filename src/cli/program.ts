/**
 * Builds the commander program from the command list and runs it, mapping every outcome to an exit
 * code: 0 ok, 1 runtime failure, 2 usage or configuration error.
 */
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../config/errors.js';
import { COMMANDS } from './commands/index.js';
import { packageVersion } from './version.js';
import {
  CliContext,
  DEFAULT_CONFIG,
  EXIT,
  ExitCode,
  UsageError,
  defaultDeps,
  processIO,
  type CliDeps,
  type CliIO,
} from './context.js';

/** Every command (and the program) writes through `io` and throws instead of calling process.exit. */
function applySettings(cmd: Command, io: CliIO): void {
  cmd.exitOverride();
  cmd.configureOutput({
    writeOut: (text) => io.stdout.write(text),
    writeErr: (text) => io.stderr.write(text),
  });
  cmd.showHelpAfterError('(run with --help for usage)');
  for (const sub of cmd.commands) applySettings(sub, io);
}

export async function buildProgram(ctx: CliContext): Promise<Command> {
  const program = new Command('xoauth-proxy')
    .description(
      'Lets legacy mail clients log in with a username and password to Gmail and Microsoft 365 (OAuth2, XOAUTH2).',
    )
    .version(packageVersion(), '-V, --version', 'print the version')
    .option('-c, --config <file>', 'configuration file', DEFAULT_CONFIG)
    .helpOption('-h, --help', 'show help')
    .helpCommand('help [command]', 'show help for a command');
  const factories = await Promise.all(COMMANDS.map(async (load) => (await load()).default));
  for (const factory of factories) program.addCommand(factory(ctx));
  applySettings(program, ctx.io);
  return program;
}

/** Runs the CLI with `argv` as in process.argv (node, script, ...args) and returns the exit code. */
export async function run(
  argv: string[],
  io: CliIO = processIO(),
  deps: CliDeps = defaultDeps(),
): Promise<number> {
  const ctx = new CliContext(io, deps);
  try {
    const program = await buildProgram(ctx);
    await program.parseAsync(argv);
    return EXIT.ok;
  } catch (err) {
    if (err instanceof ExitCode) return err.code;
    if (err instanceof CommanderError) {
      // Help and version end in a CommanderError with exit code 0; everything else is a usage error.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (err instanceof ConfigError) {
      io.stderr.write(`${err.message}\n`);
      return EXIT.usage;
    }
    if (err instanceof UsageError) {
      io.stderr.write(`error: ${err.message}\n`);
      return EXIT.usage;
    }
    io.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT.failure;
  }
}
