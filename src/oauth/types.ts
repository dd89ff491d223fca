/**
 * Contracts of the OAuth core. The proxies only ever see `TokenProvider`; the store is behind
 * `TokenStore` so a shared store for several proxy instances can come later.
 */
import type { ResolvedAccount } from '../config/types.js';

export interface AccessToken {
  token: string;
  /** Epoch milliseconds. */
  expiresAt: number;
}

export interface TokenProvider {
  /**
   * A token with more than the refresh margin left: cached, or refreshed (one refresh per account in
   * flight). `forceRefresh` after the upstream rejected a token.
   * Throws ProxyError 'needs-consent' (permanent) or 'token-unavailable' (transient).
   */
  getAccessToken(account: ResolvedAccount, options?: { forceRefresh?: boolean }): Promise<AccessToken>;
  /** Drop the cached access token (the refresh token stays). */
  invalidate(accountId: string): void;
}

export type AccountState = 'active' | 'needs-consent' | 'failing';

export interface TokenRecord {
  accountId: string;
  connection: string;
  refreshToken?: string;
  accessToken?: string;
  /** Epoch ms. */
  accessTokenExpiresAt?: number;
  scopes: string[];
  /** Who signed in at the provider when consenting. */
  identity?: string;
  /** Display name from the provider, for the welcome page. */
  displayName?: string;
  state: AccountState;
  lastRefreshAt?: number;
  lastError?: string;
  updatedAt: number;
}

/** A token record without its secrets (what `status` and the metrics need). */
export type TokenSummary = Omit<TokenRecord, 'refreshToken' | 'accessToken'> & {
  hasRefreshToken: boolean;
  /** Set when the row's secrets cannot be decrypted (tampered or damaged): why, never a secret. */
  unreadable?: string;
};

/** A stored row that cannot be read (its secrets do not decrypt, or a column is damaged). */
export interface UnreadableToken {
  accountId: string;
  connection: string;
  /** Why, safe to log and show (never a secret). */
  reason: string;
}

export interface AppPasswordRecord {
  id: string;
  accountId: string;
  label: string;
  /** scrypt hash; the password itself is shown once and never stored. */
  hash: string;
  createdAt: number;
  lastUsedAt?: number;
}

export interface ConsentLinkRecord {
  /** sha256 of the random token in the URL; the URL itself is never stored. */
  tokenHash: string;
  accountId: string;
  /** The username the link was made for (a concrete address, also for pattern accounts). */
  username: string;
  createdAt: number;
  expiresAt: number;
  usedAt?: number;
}

export interface TokenStore {
  /** Throws ProxyError 'store' when the account's row cannot be read. */
  getToken(accountId: string): TokenRecord | undefined;
  /**
   * Every readable record. A row that cannot be read is left out and passed to `onUnreadable`
   * (never thrown), so one damaged row does not hide the others.
   */
  listTokens(onUnreadable?: (row: UnreadableToken) => void): TokenRecord[];
  /**
   * Every account's record without its tokens, an unreadable row marked `unreadable` (optional: a
   * store without it is read with listTokens).
   */
  listTokenSummaries?(): TokenSummary[];
  /** Insert or replace; secrets are encrypted by the store. */
  putToken(record: TokenRecord): void;
  /**
   * Read-modify-write in one transaction (safe across processes). A row that cannot be read is passed
   * as undefined, so that a new consent can replace it.
   */
  updateToken(
    accountId: string,
    update: (current: TokenRecord | undefined) => TokenRecord | undefined,
  ): TokenRecord | undefined;

  listAppPasswords(accountId?: string): AppPasswordRecord[];
  addAppPassword(record: AppPasswordRecord): void;
  removeAppPassword(accountId: string, idOrLabel: string): boolean;
  touchAppPassword(id: string, at: number): void;

  addConsentLink(record: ConsentLinkRecord): void;
  getConsentLink(tokenHash: string): ConsentLinkRecord | undefined;
  /** Marks used; false when it was already used (single use, race-free). */
  useConsentLink(tokenHash: string, at: number): boolean;

  close(): void;
}

/** What a token endpoint answered, normalised (grants in src/oauth/grants/). */
export interface TokenSet {
  accessToken: string;
  /** Epoch ms. */
  expiresAt: number;
  /** For a refresh: the rotated one, or the one that was used when the provider sent none. */
  refreshToken?: string;
  /** Raw id_token (authorization code and device grants with `openid`). */
  idToken?: string;
  /** Granted scopes (the response's `scope`, else the requested ones). */
  scopes: string[];
}

/** Who signed in at the provider when consenting. */
export interface ConsentIdentity {
  /** Lower-cased address compared with the account's mailbox. */
  email: string;
  name?: string;
}

/** State changes the token manager reports (for notifications and logs). */
export type TokenEventKind = 'needs-consent' | 'failing' | 'recovered' | 'consented';

export interface TokenEvent {
  kind: TokenEventKind;
  accountId: string;
  /** Epoch ms. */
  at: number;
  /** Safe to show (never a token): the error that caused it. */
  error?: string;
}

/** Which token-endpoint grant a request used (the token manager only refreshes or asks app-only). */
export type TokenRequestGrant = 'refresh_token' | 'client_credentials' | 'service_account';

/** How one token-endpoint request ended: 'ok', or its failure's classification (grants/token-errors.ts). */
export type TokenRequestResult = 'ok' | 'transient' | 'permanent';

/** Token-endpoint request counting; implemented by src/metrics/metrics.ts. Must never throw. */
export interface TokenMetrics {
  tokenRequest(grant: TokenRequestGrant, result: TokenRequestResult): void;
}
