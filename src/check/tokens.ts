/**
 * The token side of a check: the real store (or, before the first start, an empty stand-in so that
 * a check creates no files) and a TokenProvider wrapper that remembers every token it handed out, so
 * the report can be scrubbed of them before it is printed.
 */
import type { Config, ResolvedAccount } from '../config/types.js';
import { openStore, storeLocation, storeMayExist } from '../store/index.js';
import type { AccessToken, TokenProvider } from '../oauth/types.js';
import type { Store } from '../store/types.js';

/** The store as it is on disk; when there is none yet, a store with nothing in it. */
export async function openCheckStore(config: Pick<Config, 'store'>, env: NodeJS.ProcessEnv): Promise<Store> {
  if (storeMayExist(config.store)) return openStore(config.store, { env });
  const location = storeLocation(config.store);
  const none = async (): Promise<never> => {
    throw new Error(`no token store yet at ${location} (nobody has consented)`);
  };
  return {
    location,
    ping: async () => undefined,
    getToken: async () => undefined,
    listTokens: async () => [],
    listTokenSummaries: async () => [],
    putToken: none,
    updateToken: none,
    deleteToken: async () => false,
    acquireRefreshLease: none,
    releaseRefreshLease: async () => undefined,
    watchGrants: () => () => undefined,
    listAppPasswords: async () => [],
    addAppPassword: none,
    removeAppPassword: async () => false,
    touchAppPassword: async () => undefined,
    addConsentLink: none,
    getConsentLink: async () => undefined,
    useConsentLink: async () => false,
    putPendingConsent: none,
    getPendingConsent: async () => undefined,
    takePendingConsent: async () => undefined,
    putCompletedConsent: none,
    getCompletedConsent: async () => undefined,
    deriveKey: () => {
      throw new Error(`no token store yet at ${location}`);
    },
    close: async () => undefined,
  };
}

export class RecordingTokens implements TokenProvider {
  readonly #inner: TokenProvider;
  readonly #seen = new Set<string>();

  constructor(inner: TokenProvider) {
    this.#inner = inner;
  }

  /** Every access token handed out so far. */
  get seen(): ReadonlySet<string> {
    return this.#seen;
  }

  async getAccessToken(account: ResolvedAccount, options?: { forceRefresh?: boolean }): Promise<AccessToken> {
    const token = await this.#inner.getAccessToken(account, options);
    this.#seen.add(token.token);
    return token;
  }

  invalidate(accountId: string): void {
    this.#inner.invalidate(accountId);
  }
}
