/**
 * What the proxy keeps, and the interfaces it is kept behind. Split by what it holds: grants (the
 * tokens of each account, and who is refreshing one), app passwords, consent links. Every method is
 * async so that an embedded file and a networked database serve the same callers; the seams are where
 * a database shared by several proxy instances needs them:
 * - `updateToken` is one short transaction whose callback is synchronous (no network inside a lock);
 *   a refresh commits through it with a compare-and-set on the refresh token it sent;
 * - a refresh lease per account, timed by the store's clock, so one process refreshes at a time;
 * - `watchGrants`, so a process learns at once that another one changed an account.
 */

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
  /**
   * Epoch ms until which a refusal of this refresh token is in doubt: a process that stopped mid-refresh
   * may still save the token that replaced it, so until then a refusal is temporary on every instance.
   */
  inDoubtUntil?: number;
  /**
   * Epoch ms until which this account's SMTP submissions go through Microsoft Graph (a `send: auto`
   * connection, after Exchange Online refused its SMTP login because SMTP AUTH is off). Shared, so
   * every instance switches after one refusal; afterwards SMTP is tried again.
   */
  graphSendUntil?: number;
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

/** How asking for an account's refresh lease ended. */
export type LeaseResult =
  /** `tookOver`: the holder whose lease ran out without being given back (it died or froze). */
  | { acquired: true; tookOver?: string }
  /** `remainingMs`: how long the other holder's lease still runs, by the store's clock. */
  | { acquired: false; holder: string; remainingMs: number };

export interface GrantStore {
  /** Throws ProxyError 'store' when the account's row cannot be read. */
  getToken(accountId: string): Promise<TokenRecord | undefined>;
  /**
   * Every readable record. A row that cannot be read is left out and passed to `onUnreadable`
   * (never thrown), so one damaged row does not hide the others.
   */
  listTokens(onUnreadable?: (row: UnreadableToken) => void): Promise<TokenRecord[]>;
  /** Every account's record without its tokens, an unreadable row marked `unreadable`. */
  listTokenSummaries(): Promise<TokenSummary[]>;
  /** Insert or replace; secrets are encrypted by the store. */
  putToken(record: TokenRecord): Promise<void>;
  /**
   * Read-modify-write in one transaction (safe across processes and instances). `update` runs inside
   * it and must not wait for anything. A row that cannot be read is passed as undefined, so that a
   * new consent can replace it. Returning undefined writes nothing (and resolves to the current record).
   */
  updateToken(
    accountId: string,
    update: (current: TokenRecord | undefined) => TokenRecord | undefined,
  ): Promise<TokenRecord | undefined>;
  /** Forgets an account's grant; false when there was none. */
  deleteToken(accountId: string): Promise<boolean>;

  /**
   * Takes (or, for the same holder, extends) the account's refresh lease for `ttlMs` by the store's
   * clock. Another holder's live lease is reported, not waited for.
   */
  acquireRefreshLease(accountId: string, holder: string, ttlMs: number): Promise<LeaseResult>;
  /** Gives the lease back (only the holder's own; a lease taken over meanwhile stays). */
  releaseRefreshLease(accountId: string, holder: string): Promise<void>;
  /**
   * Calls `listener` with the account id whenever any process changes that account's grant (this one
   * included), as soon as the store can tell. Returns the function that stops listening.
   */
  watchGrants(listener: (accountId: string) => void): () => void;
}

export interface AppPasswordStore {
  listAppPasswords(accountId?: string): Promise<AppPasswordRecord[]>;
  addAppPassword(record: AppPasswordRecord): Promise<void>;
  /** By id or label; false when the account has no such app password. */
  removeAppPassword(accountId: string, idOrLabel: string): Promise<boolean>;
  touchAppPassword(id: string, at: number): Promise<void>;
}

/**
 * A consent in progress between the press on the consent page and the provider's callback, keyed by
 * the OAuth `state`. In the store rather than in memory so that the callback may land on any instance.
 */
export interface PendingConsentRecord {
  state: string;
  /** sha256 of the consent-link token this started from. */
  linkHash: string;
  accountId: string;
  username: string;
  /** The PKCE verifier: sealed in the store like a token. */
  codeVerifier: string;
  redirectUri: string;
  /** The browser cookie that started it; only that browser may finish it. */
  browser: string;
  expiresAt: number;
}

/** What is left of a finished consent, so that a repeated callback says "already done". */
export interface CompletedConsentRecord {
  state: string;
  accountId: string;
  email: string;
  expiresAt: number;
}

export interface ConsentStore {
  addConsentLink(record: ConsentLinkRecord): Promise<void>;
  getConsentLink(tokenHash: string): Promise<ConsentLinkRecord | undefined>;
  /** Marks used; false when it was already used (single use, race-free across processes). */
  useConsentLink(tokenHash: string, at: number): Promise<boolean>;
  /**
   * Stores a consent in progress. In the same transaction: drops the ones expired at `now`, the
   * link's oldest so that at most `maxPerLink` stay for it, and the oldest overall beyond `maxTotal`.
   */
  putPendingConsent(
    record: PendingConsentRecord,
    options: { now: number; maxPerLink: number; maxTotal: number },
  ): Promise<void>;
  /** A live consent in progress (not spent). */
  getPendingConsent(state: string, now: number): Promise<PendingConsentRecord | undefined>;
  /** Gets and removes in one step: a state is good for one callback, on whichever instance. */
  takePendingConsent(state: string, now: number): Promise<PendingConsentRecord | undefined>;
  /** Remembers a finished consent under its state until `expiresAt`. */
  putCompletedConsent(record: CompletedConsentRecord, now: number): Promise<void>;
  getCompletedConsent(state: string, now: number): Promise<CompletedConsentRecord | undefined>;
}

/** One store holding all three; each caller asks for the part it needs. */
export interface Store extends GrantStore, AppPasswordStore, ConsentStore {
  /** Where it lives, for messages (a path, or a database URL without its password). */
  readonly location: string;
  /** Resolves when the store answers a trivial query; rejects with ProxyError 'store' otherwise. */
  ping(): Promise<void>;
  /**
   * A 32-byte key for `purpose` derived from the store key, the same on every instance that shares
   * the store: CSRF tokens and admin sessions made by one instance are good on the others.
   */
  deriveKey(purpose: string): Buffer;
  close(): Promise<void>;
}
