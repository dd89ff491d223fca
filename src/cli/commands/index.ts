/**
 * Every CLI command, in the order `--help` lists them. Adding one is one line here: a module whose
 * default export is `defineCommand((ctx) => new Command('name')...)` (see ../context.ts).
 */
import type { CommandFactory } from '../context.js';

export const COMMANDS: ReadonlyArray<() => Promise<{ default: CommandFactory }>> = [
  () => import('./start.js'),
  () => import('./reload.js'),
  () => import('./check-config.js'),
  () => import('./consent.js'),
  () => import('./consent-link.js'),
  () => import('./status.js'),
  () => import('./check.js'),
  () => import('./app-password.js'),
  () => import('./store.js'),
  () => import('./hash-password.js'),
  () => import('./schema.js'),
];
