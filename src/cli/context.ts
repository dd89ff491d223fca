/**
 * What every CLI command shares: where output goes, the global --config option, loading the config and
 * creating the logger, and the exit-code conventions. A command is a module in ./commands/ whose default
 * export is a `CommandFactory` (see ./commands/index.ts).
 */
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import type { Logger } from 'pino';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import { startDaemon } from '../daemon.js';
import { createLogger } from '../log.js';

export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

export const DEFAULT_CONFIG = './config.yaml';
export const EXAMPLE_CONFIG = './config.example.yaml';

/** Bad input from the person at the keyboard: printed without a stack, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Ends a command with a given exit code after it printed its own explanation. */
export class ExitCode extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

export interface CliIO {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown };
  env: NodeJS.ProcessEnv;
}

export interface CliDeps {
  startDaemon: typeof startDaemon;
  /** Where SIGINT/SIGTERM/SIGHUP come from (process, or an EventEmitter in tests). */
  signals: {
    on(event: 'SIGINT' | 'SIGTERM' | 'SIGHUP', listener: () => void): unknown;
    off(event: 'SIGINT' | 'SIGTERM' | 'SIGHUP', listener: () => void): unknown;
  };
  logger?: (ctx: CliContext) => Logger;
  /** Ends the process at once (second Ctrl+C during shutdown). */
  forceExit?: (code: number) => void;
}

export function processIO(): CliIO {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env };
}

export function defaultDeps(): CliDeps {
  return { startDaemon, signals: process, forceExit: (code) => process.exit(code) };
}

export class CliContext {
  constructor(
    readonly io: CliIO,
    readonly deps: CliDeps = defaultDeps(),
  ) {}

  out(text: string): void {
    this.io.stdout.write(text);
  }

  err(text: string): void {
    this.io.stderr.write(text);
  }

  /**
   * The config file for a command: an explicit argument, else --config, else ./config.yaml. With
   * `fallbackToExample`, a missing ./config.yaml (and no --config) falls back to ./config.example.yaml
   * so a fresh clone starts at once; `usedExample` tells the caller to warn about it.
   */
  configFile(
    cmd: Command,
    options: { explicit?: string; fallbackToExample?: boolean } = {},
  ): { file: string; usedExample: boolean } {
    if (options.explicit !== undefined) return { file: options.explicit, usedExample: false };
    const given = cmd.getOptionValueSourceWithGlobals('config') === 'cli';
    const file = String(cmd.optsWithGlobals<{ config?: string }>().config ?? DEFAULT_CONFIG);
    if (!given && options.fallbackToExample && !existsSync(file)) {
      if (existsSync(EXAMPLE_CONFIG)) return { file: EXAMPLE_CONFIG, usedExample: true };
    }
    return { file, usedExample: false };
  }

  /** Loads and validates the config; a ConfigError propagates (exit code 2, message with file:line:col). */
  loadConfig(
    cmd: Command,
    options: { explicit?: string; fallbackToExample?: boolean } = {},
  ): Config & { usedExample: boolean } {
    const { file, usedExample } = this.configFile(cmd, options);
    // Relative paths start at the current directory; messages show the path as typed.
    const config = loadConfig(file, { env: this.io.env });
    return Object.assign(config, { usedExample });
  }

  /** The program's logger (JSON lines when not on a TTY, readable on a TTY; secrets redacted). */
  logger(): Logger {
    return this.deps.logger ? this.deps.logger(this) : createLogger();
  }
}

export type CommandFactory = (ctx: CliContext) => Command;

/** Identity helper so command modules get the factory type checked: `export default defineCommand(...)`. */
export function defineCommand(factory: CommandFactory): CommandFactory {
  return factory;
}
