/**
 * The token store behind its interface. Today there is one implementation (SQLite on the local disk);
 * a shared store for several proxy instances would be another `TokenStore`, chosen here.
 */
import type { StoreSettings } from '../../config/types.js';
import type { TokenStore } from '../types.js';
import type { StoreWarnings } from './key.js';
import { SqliteTokenStore } from './sqlite-store.js';

export { KEY_ENV, loadStoreKey, parseKey, type StoreWarnings } from './key.js';
export { SqliteTokenStore } from './sqlite-store.js';

export function openTokenStore(
  settings: StoreSettings,
  /** `logger`: where warnings go (a file mode open to others); stderr without one. */
  options: { env?: NodeJS.ProcessEnv; logger?: StoreWarnings } = {},
): TokenStore {
  return SqliteTokenStore.open(settings, options);
}
