/**
 * The store behind its interfaces (types.ts), chosen by `store.kind`: the embedded SQLite file, or a
 * PostgreSQL database shared by several instances.
 */
import { existsSync } from 'node:fs';
import type { StoreSettings } from '../config/types.js';
import type { StoreWarnings } from './key.js';
import { SqliteStore } from './sqlite-store.js';
import type { Store } from './types.js';
import { redactUrl } from './url.js';

export { KEY_ENV, loadStoreKey, parseKey, type StoreWarnings } from './key.js';
export { SqliteStore } from './sqlite-store.js';
export type * from './types.js';

export async function openStore(
  settings: StoreSettings,
  /** `logger`: where warnings go (a file mode open to others); stderr without one. */
  options: { env?: NodeJS.ProcessEnv; logger?: StoreWarnings } = {},
): Promise<Store> {
  if (settings.kind === 'postgres') {
    // Loaded only for a shared store: the driver is a few MB of heap every embedded-store process
    // would otherwise carry (and scan in every garbage collection) for nothing.
    const { PostgresStore } = await import('./postgres-store.js');
    return PostgresStore.open(settings, options);
  }
  return SqliteStore.open(settings, options);
}

/** Where the store lives, for messages: the file, or the database URL without its password. */
export function storeLocation(settings: StoreSettings): string {
  return settings.kind === 'postgres' ? redactUrl(settings.url) : settings.path;
}

/**
 * False only when an embedded store has not been created yet, so that read-only commands (status,
 * check) create nothing. A database is always asked.
 */
export function storeMayExist(settings: StoreSettings): boolean {
  return settings.kind === 'postgres' || existsSync(settings.path);
}
