/**
 * The OAuth core's public surface, for the daemon, the proxies, the consent pages and the CLI.
 * (Deep imports of the same modules work too; this list is what is meant to be used.)
 */
export { collectAccountStatus, type AccountStatus, type AccountStatusState } from './account-status.js';
export { runCliConsent, type CliConsentOptions, type CliConsentResult } from './consent/cli-consent.js';
export { storeGrant } from './grant-record.js';
export * from './grants/index.js';
export { openStore, SqliteStore, KEY_ENV } from '../store/index.js';
export { TokenManager, type TokenManagerOptions } from './token-manager.js';
export type * from './types.js';
