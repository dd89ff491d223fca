/**
 * Contracts of the OAuth core. The proxies only ever see `TokenProvider`; what is stored, and the
 * store's interfaces, are in src/store.
 */
import type { ResolvedAccount } from '../config/types.js';

export interface AccessToken {
  token: string;
  /** Epoch milliseconds. */
  expiresAt: number;
}

/**
 * What a token is for: the mail servers (IMAP, POP, SMTP), or Microsoft Graph (sending when SMTP AUTH
 * is off). One grant serves both, but each resource's token is its own token request.
 */
export type TokenResource = 'mail' | 'graph';

export interface TokenOptions {
  /** After the upstream rejected a token. */
  forceRefresh?: boolean;
  /** Default 'mail'; 'graph' needs a connection with Graph sending. */
  resource?: TokenResource;
}

export interface TokenProvider {
  /**
   * A token with more than the refresh margin left: cached, or refreshed (one refresh per account in
   * flight, whatever the resource). `forceRefresh` after the upstream rejected a token.
   * Throws ProxyError 'needs-consent' (permanent) or 'token-unavailable' (transient).
   */
  getAccessToken(account: ResolvedAccount, options?: TokenOptions): Promise<AccessToken>;
  /** Drop the cached access token (the refresh token stays). */
  invalidate(accountId: string): void;
}

export type {
  AccountState,
  AppPasswordStore,
  ConsentStore,
  GrantStore,
  Store,
  AppPasswordRecord,
  ConsentLinkRecord,
  TokenRecord,
  TokenSummary,
  UnreadableToken,
} from '../store/types.js';

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
