/**
 * The token side of a check: the real store (or, before the first start, an empty stand-in so that
 * a check creates no files) and a TokenProvider wrapper that remembers every token it handed out, so
 * the report can be scrubbed of them before it is printed.
 */
import { existsSync } from 'node:fs';
import type { Config, ResolvedAccount } from '../config/types.js';
import { openTokenStore } from '../oauth/store/index.js';
import type { AccessToken, TokenProvider, TokenStore } from '../oauth/types.js';

/** The store as it is on disk; when there is none yet, a store with nothing in it. */
export function openCheckStore(config: Pick<Config, 'store'>, env: NodeJS.ProcessEnv): TokenStore {
  if (existsSync(config.store.path)) return openTokenStore(config.store, { env });
  const none = (): never => {
    throw new Error(`no token store yet at ${config.store.path} (nobody has consented)`);
  };
  return {
    getToken: () => undefined,
    listTokens: () => [],
    putToken: none,
    updateToken: none,
    listAppPasswords: () => [],
    addAppPassword: none,
    removeAppPassword: () => false,
    touchAppPassword: () => undefined,
    addConsentLink: none,
    getConsentLink: () => undefined,
    useConsentLink: () => false,
    close: () => undefined,
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
