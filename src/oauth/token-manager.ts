/**
 * Access tokens for the proxies. The rules that keep users from having to consent again:
 * - one refresh per account in flight, however many logins ask at once (a second concurrent refresh
 *   with a rotating provider would burn the refresh token the first one just replaced);
 * - a rotated refresh token is in the store (committed) before the new access token is handed out;
 * - the store is re-read before every refresh, so a grant written by another process (the consent CLI)
 *   is used at once, also for an account that was in `needs-consent`;
 * - failures are classified once (grants/token-errors.ts): transient ones keep every token, mark the
 *   account `failing` and back off; permanent ones mark it `needs-consent` and the refresh token is
 *   kept for diagnosis but not used again.
 *
 * A Map of in-flight promises gives the single flight (the lru-cache `fetch` recipe of
 * LIBRARY-NOTES §5 does the same, but swallows errors on a cold key and has no notion of backoff or
 * of "the stored token changed under us"; a Map keeps all three explicit).
 */
import type { Logger } from 'pino';
import type { Config, ConnectionConfig, ResolvedAccount } from '../config/types.js';
import { isProxyError, ProxyError } from '../errors.js';
import { collectAccountStatus, entryForStoredAccount, type AccountStatus } from './account-status.js';
import { storeGrant } from './grant-record.js';
import { clientCredentialsToken } from './grants/client-credentials.js';
import { refreshAccessToken } from './grants/refresh.js';
import { classifyTokenError, isClientError, type TokenEndpointError } from './grants/token-errors.js';
import type {
  AccessToken,
  AccountState,
  ConsentIdentity,
  TokenEvent,
  TokenMetrics,
  TokenProvider,
  TokenRequestGrant,
  TokenRequestResult,
  TokenRecord,
  TokenSet,
  TokenStore,
} from './types.js';

export interface TokenManagerOptions {
  config: Pick<Config, 'settings' | 'accounts' | 'connections'>;
  store: TokenStore;
  logger: Logger;
  /** Epoch ms; injectable for tests. */
  clock?: () => number;
  onEvent?: (event: TokenEvent) => void;
  /** Counts token-endpoint requests by grant and outcome (src/metrics); optional. */
  metrics?: TokenMetrics;
}

/** After a transient failure, no new request before this (doubling per failure, capped). */
export const BACKOFF_BASE_MS = 5_000;
export const BACKOFF_MAX_MS = 5 * 60_000;
/** A Retry-After longer than this is not honoured in full. */
const RETRY_AFTER_MAX_MS = 60 * 60_000;
/** An old access token is still handed out during an outage only with at least this much left. */
const MIN_USABLE_MS = 60_000;

interface Cached {
  token: string;
  expiresAt: number;
}

interface Backoff {
  until: number;
  failures: number;
  /** The refresh token that failed; a new grant ends the backoff at once. */
  refreshToken: string | undefined;
  error: string;
}

export class TokenManager implements TokenProvider {
  readonly #config: TokenManagerOptions['config'];
  readonly #store: TokenStore;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #onEvent: ((event: TokenEvent) => void) | undefined;
  readonly #metrics: TokenMetrics | undefined;
  readonly #cache = new Map<string, Cached>();
  readonly #inflight = new Map<string, Promise<AccessToken>>();
  readonly #backoff = new Map<string, Backoff>();
  /** Access tokens an upstream refused (invalidate): never handed out again from the store. */
  readonly #rejected = new Map<string, string>();
  /** Last state seen per account, to report transitions once. */
  readonly #states = new Map<string, AccountState>();
  /** Account id -> the app-only cache key it used (for invalidate). */
  readonly #appKeys = new Map<string, string>();
  #timer: NodeJS.Timeout | undefined;
  #keepAliveRun: Promise<void> | undefined;

  constructor(options: TokenManagerOptions) {
    this.#config = options.config;
    this.#store = options.store;
    this.#log = options.logger;
    this.#now = options.clock ?? Date.now;
    this.#onEvent = options.onEvent;
    this.#metrics = options.metrics;
  }

  get #marginMs(): number {
    return this.#config.settings.refreshMarginMs;
  }

  async getAccessToken(
    account: ResolvedAccount,
    options: { forceRefresh?: boolean } = {},
  ): Promise<AccessToken> {
    const key = cacheKey(account);
    if (key !== account.id) this.#appKeys.set(account.id, key);
    if (!options.forceRefresh) {
      const cached = this.#cache.get(key);
      if (cached && cached.expiresAt - this.#now() > this.#marginMs) {
        return { token: cached.token, expiresAt: cached.expiresAt };
      }
    }
    // A refresh already running produces a token at least as fresh as a forced one would.
    const running = this.#inflight.get(key);
    if (running) return running;
    const force = options.forceRefresh === true;
    const promise = (
      account.connection.grant === 'client_credentials'
        ? this.#appOnly(account.connection, key, force)
        : this.#refresh(account, force)
    ).finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, promise);
    return promise;
  }

  invalidate(accountId: string): void {
    const appKey = this.#appKeys.get(accountId);
    for (const key of appKey === undefined ? [accountId] : [accountId, appKey]) {
      const cached = this.#cache.get(key);
      if (cached) this.#rejected.set(key, cached.token);
      this.#cache.delete(key);
    }
  }

  /** Stores a grant obtained by consent (CLI or web) and clears every failure memory of the account. */
  recordConsent(account: ResolvedAccount, tokenSet: TokenSet, identity: ConsentIdentity): TokenRecord {
    const record = storeGrant(this.#store, account, tokenSet, identity, this.#now());
    this.#backoff.delete(account.id);
    this.#rejected.delete(account.id);
    this.#cache.set(account.id, { token: tokenSet.accessToken, expiresAt: tokenSet.expiresAt });
    this.#transition(account.id, 'active', undefined, 'consented');
    return record;
  }

  status(): AccountStatus[] {
    return collectAccountStatus(this.#config, this.#store);
  }

  /** Starts the keep-alive timer (unref'd: it never keeps the process alive on its own). */
  start(): void {
    if (this.#timer) return;
    const every = Math.min(Math.max(this.#config.settings.keepAliveIntervalMs / 4, 1000), 15 * 60_000);
    this.#timer = setInterval(() => {
      if (!this.#keepAliveRun) {
        this.#keepAliveRun = this.runKeepAlive().finally(() => (this.#keepAliveRun = undefined));
      }
    }, every);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#keepAliveRun;
    await Promise.allSettled([...this.#inflight.values()]);
  }

  /**
   * Refreshes every stored grant not refreshed within keepAliveIntervalMs, one at a time, so that a
   * revoked grant shows in `status` before a user notices and rolling refresh tokens do not age out.
   * Failing accounts are retried here too (after their backoff), which is how they recover unattended.
   */
  async runKeepAlive(): Promise<void> {
    const interval = this.#config.settings.keepAliveIntervalMs;
    let records: TokenRecord[];
    try {
      records = this.#store.listTokens();
    } catch (err) {
      this.#log.error({ err: errorText(err) }, 'keep-alive: cannot read the token store');
      return;
    }
    for (const record of records) {
      if (!record.refreshToken || record.state === 'needs-consent') continue;
      const due = this.#now() - (record.lastRefreshAt ?? 0) >= interval || record.state === 'failing';
      if (!due) continue;
      const connection = this.#config.connections.get(record.connection);
      if (!connection || connection.grant === 'client_credentials') continue;
      // A grant no config entry serves any more is left alone (status lists it as "not in config").
      if (!entryForStoredAccount(this.#config.accounts, record.accountId, record.connection)) continue;
      const backoff = this.#backoff.get(record.accountId);
      if (backoff && backoff.until > this.#now() && backoff.refreshToken === record.refreshToken) continue;
      const account: ResolvedAccount = {
        id: record.accountId,
        username: record.accountId,
        email: record.accountId,
        connection,
        entry: record.accountId,
      };
      try {
        await this.getAccessToken(account, { forceRefresh: true });
        this.#log.debug({ account: record.accountId }, 'keep-alive refresh done');
      } catch (err) {
        this.#log.warn({ account: record.accountId, err: errorText(err) }, 'keep-alive refresh failed');
      }
    }
  }

  async #refresh(account: ResolvedAccount, force: boolean): Promise<AccessToken> {
    const id = account.id;
    // Two rounds at most: the second only when another process replaced the grant while our request
    // with the old refresh token failed.
    for (let round = 0; round < 2; round++) {
      const record = this.#read(id);
      if (!record?.refreshToken) {
        throw new ProxyError(
          'needs-consent',
          `No grant stored for ${id}: run \`xoauth-proxy consent ${id}\` (or send the owner a consent link).`,
          { detail: 'no grant' },
        );
      }
      this.#noticeState(record);
      if (record.state === 'needs-consent') {
        this.#cache.delete(id);
        throw needsConsent(id, record.lastError);
      }
      const now = this.#now();
      const rejected = this.#rejected.get(id);
      if (
        !force &&
        record.accessToken !== undefined &&
        record.accessToken !== rejected &&
        (record.accessTokenExpiresAt ?? 0) - now > this.#marginMs
      ) {
        // Another process refreshed, or we restarted: no request needed.
        return this.#remember(id, record.accessToken, record.accessTokenExpiresAt ?? 0);
      }
      const backoff = this.#backoff.get(id);
      if (backoff && backoff.until > now && backoff.refreshToken === record.refreshToken) {
        return this.#duringOutage(id, record, force, backoff.error, backoff.until);
      }

      const used = record.refreshToken;
      let set: TokenSet;
      try {
        set = await refreshAccessToken(account.connection, used, {
          timeoutMs: this.#config.settings.tokenRequestTimeoutMs,
          now: this.#now,
        });
      } catch (err) {
        const failure = classifyTokenError(err);
        this.#count('refresh_token', failure.kind);
        const changed = this.#read(id);
        if (changed?.refreshToken !== undefined && changed.refreshToken !== used && round === 0) continue;
        if (isClientError(failure))
          return this.#clientProblem(id, used, failure, force, account.connection.name);
        if (failure.kind === 'permanent') throw this.#permanent(id, used, failure);
        return this.#transient(id, used, failure, force);
      }
      this.#count('refresh_token', 'ok');
      // The rotated refresh token is committed here, before anyone gets the new access token.
      const stored = this.#persist(id, set, () =>
        this.#store.updateToken(id, (current) => {
          const base = current ?? record;
          // A grant written meanwhile by a consent wins; our access token is still good.
          const refreshToken = base.refreshToken !== used ? base.refreshToken : set.refreshToken;
          const next: TokenRecord = {
            ...base,
            accessToken: set.accessToken,
            accessTokenExpiresAt: set.expiresAt,
            scopes: set.scopes,
            state: 'active',
            lastRefreshAt: this.#now(),
            updatedAt: this.#now(),
          };
          if (refreshToken === undefined) delete next.refreshToken;
          else next.refreshToken = refreshToken;
          delete next.lastError;
          return next;
        }),
      );
      this.#backoff.delete(id);
      this.#rejected.delete(id);
      this.#log.info(
        { account: id, rotated: set.refreshToken !== used, expiresAt: new Date(set.expiresAt).toISOString() },
        'access token refreshed',
      );
      this.#transition(id, stored?.state ?? 'active', undefined);
      return this.#remember(id, set.accessToken, set.expiresAt);
    }
    throw new ProxyError(
      'token-unavailable',
      `The grant of ${id} kept changing during the refresh; try again.`,
    );
  }

  #persist(id: string, set: TokenSet, write: () => TokenRecord | undefined): TokenRecord | undefined {
    try {
      return write();
    } catch (err) {
      // Not handing out a token whose grant we could not save: with a rotating provider the new
      // refresh token exists only in memory now, and the next refresh would fail for good.
      this.#log.error(
        { account: id, err: errorText(err), rotated: set.refreshToken !== undefined },
        'cannot save the refreshed grant',
      );
      throw new ProxyError(
        'token-unavailable',
        `Cannot save the refreshed grant of ${id}: ${errorText(err)}`,
        {
          cause: err,
        },
      );
    }
  }

  #remember(key: string, token: string, expiresAt: number): AccessToken {
    this.#cache.set(key, { token, expiresAt });
    return { token, expiresAt };
  }

  #read(id: string): TokenRecord | undefined {
    try {
      return this.#store.getToken(id);
    } catch (err) {
      // A login should get "try again later", not "wrong password", when the store is unreadable.
      throw new ProxyError('token-unavailable', `Token store unavailable: ${errorText(err)}`, { cause: err });
    }
  }

  #permanent(id: string, used: string, failure: TokenEndpointError): ProxyError {
    const error = failure.summary;
    this.#cache.delete(id);
    this.#backoff.delete(id);
    this.#safeUpdate(id, (current) =>
      current && current.refreshToken === used
        ? { ...current, state: 'needs-consent', lastError: error, updatedAt: this.#now() }
        : undefined,
    );
    this.#log.warn({ account: id, error }, 'grant refused by the provider: account needs consent');
    this.#transition(id, 'needs-consent', error);
    return needsConsent(id, error, failure);
  }

  /**
   * The provider refused the client (wrong secret, disabled app), not the grant: the account is
   * `failing` with an error that points at the connection, the refresh token stays in use, and
   * requests back off at the longest step. Users need not consent again once the config is fixed.
   */
  #clientProblem(
    id: string,
    used: string,
    failure: TokenEndpointError,
    force: boolean,
    connection: string,
  ): AccessToken {
    const error =
      `${failure.summary} (the provider refused the OAuth client of connection ${connection}: check its ` +
      'clientId/clientSecret and app registration; the grant is kept)';
    return this.#transient(id, used, failure, force, { error, minDelayMs: BACKOFF_MAX_MS });
  }

  #transient(
    id: string,
    used: string,
    failure: TokenEndpointError,
    force: boolean,
    options: { error?: string; minDelayMs?: number } = {},
  ): AccessToken {
    const previous = this.#backoff.get(id);
    const failures = (previous?.refreshToken === used ? previous.failures : 0) + 1;
    const delay = Math.max(backoffDelay(failures, failure.retryAfterMs), options.minDelayMs ?? 0);
    const until = this.#now() + delay;
    const error = options.error ?? failure.summary;
    this.#backoff.set(id, { until, failures, refreshToken: used, error });
    // Only the grant that failed is marked; a consent written meanwhile stays as it is.
    const record = this.#safeUpdate(id, (current) =>
      current?.refreshToken === used
        ? { ...current, state: 'failing', lastError: error, updatedAt: this.#now() }
        : undefined,
    );
    this.#log.warn({ account: id, error, failures, retryInMs: delay }, 'token refresh failed, will retry');
    this.#transition(id, 'failing', error);
    return this.#duringOutage(id, record, force, error, until, failure);
  }

  /** During an outage: the old access token while it is still usable, else "temporarily unavailable". */
  #duringOutage(
    id: string,
    record: TokenRecord | undefined,
    force: boolean,
    error: string,
    until: number,
    cause?: unknown,
  ): AccessToken {
    const now = this.#now();
    const token = record?.accessToken;
    const expiresAt = record?.accessTokenExpiresAt ?? 0;
    if (
      !force &&
      token !== undefined &&
      token !== this.#rejected.get(id) &&
      expiresAt - now > MIN_USABLE_MS
    ) {
      return this.#remember(id, token, expiresAt);
    }
    return throwUnavailable(id, error, until - now, cause);
  }

  async #appOnly(connection: ConnectionConfig, key: string, force: boolean): Promise<AccessToken> {
    const now = this.#now();
    const backoff = this.#backoff.get(key);
    if (backoff && backoff.until > now) {
      const cached = this.#cache.get(key);
      if (!force && cached && cached.expiresAt - now > MIN_USABLE_MS) return { ...cached };
      return throwUnavailable(key, backoff.error, backoff.until - now);
    }
    try {
      const set = await clientCredentialsToken(connection, {
        timeoutMs: this.#config.settings.tokenRequestTimeoutMs,
        now: this.#now,
      });
      this.#count('client_credentials', 'ok');
      this.#backoff.delete(key);
      this.#rejected.delete(key);
      this.#log.info({ connection: connection.name }, 'app-only access token obtained');
      return this.#remember(key, set.accessToken, set.expiresAt);
    } catch (err) {
      // A ProxyError here is our own refusal before any request (the connection lacks a secret).
      if (isProxyError(err)) throw err;
      const failure = classifyTokenError(err);
      this.#count('client_credentials', failure.kind);
      if (failure.kind === 'permanent') {
        throw new ProxyError(
          'needs-consent',
          `The app registration of connection ${connection.name} was refused (${failure.summary}): check the ` +
            `client secret, and that an admin granted the app access to the mailboxes.`,
          { cause: failure, detail: failure.summary },
        );
      }
      const previous = this.#backoff.get(key);
      const failures = (previous?.failures ?? 0) + 1;
      const until = this.#now() + backoffDelay(failures, failure.retryAfterMs);
      this.#backoff.set(key, { until, failures, refreshToken: undefined, error: failure.summary });
      this.#log.warn(
        { connection: connection.name, error: failure.summary },
        'app-only token request failed',
      );
      const cached = this.#cache.get(key);
      if (!force && cached && cached.expiresAt - this.#now() > MIN_USABLE_MS) return { ...cached };
      return throwUnavailable(key, failure.summary, until - this.#now(), failure);
    }
  }

  #count(grant: TokenRequestGrant, result: TokenRequestResult): void {
    try {
      this.#metrics?.tokenRequest(grant, result);
    } catch (err) {
      this.#log.error({ err: errorText(err) }, 'token metrics failed');
    }
  }

  #safeUpdate(id: string, update: (current: TokenRecord | undefined) => TokenRecord | undefined) {
    try {
      return this.#store.updateToken(id, update);
    } catch (err) {
      this.#log.error({ account: id, err: errorText(err) }, 'cannot record the token state in the store');
      return undefined;
    }
  }

  /** Remembers a state seen in the store (another process may have changed it). */
  #noticeState(record: TokenRecord): void {
    const before = this.#states.get(record.accountId);
    if (before === 'needs-consent' && record.state === 'active') {
      this.#backoff.delete(record.accountId);
      this.#transition(record.accountId, 'active', undefined, 'consented');
      return;
    }
    this.#states.set(record.accountId, record.state);
  }

  #transition(id: string, state: AccountState, error: string | undefined, kind?: TokenEvent['kind']): void {
    const before = this.#states.get(id);
    this.#states.set(id, state);
    let event: TokenEvent['kind'] | undefined = kind;
    if (event === undefined) {
      if (state === 'needs-consent' && before !== 'needs-consent') event = 'needs-consent';
      else if (state === 'failing' && before !== 'failing') event = 'failing';
      else if (state === 'active' && before === 'failing') event = 'recovered';
    }
    if (event === undefined || !this.#onEvent) return;
    const payload: TokenEvent = { kind: event, accountId: id, at: this.#now() };
    if (error !== undefined) payload.error = error;
    try {
      this.#onEvent(payload);
    } catch (err) {
      this.#log.error({ err: errorText(err) }, 'token event handler failed');
    }
  }
}

const APP_PREFIX = 'app-only:';

function cacheKey(account: ResolvedAccount): string {
  // One app-only token serves every mailbox of its connection.
  return account.connection.grant === 'client_credentials'
    ? `${APP_PREFIX}${account.connection.name}`
    : account.id;
}

function backoffDelay(failures: number, retryAfterMs: number | undefined): number {
  const exponential = Math.min(BACKOFF_BASE_MS * 2 ** Math.min(failures - 1, 20), BACKOFF_MAX_MS);
  return Math.max(exponential, Math.min(retryAfterMs ?? 0, RETRY_AFTER_MAX_MS));
}

function needsConsent(id: string, error: string | undefined, cause?: unknown): ProxyError {
  return new ProxyError(
    'needs-consent',
    `The grant of ${id} no longer works${error ? ` (${error})` : ''}: the mailbox owner must consent again ` +
      `(\`xoauth-proxy consent ${id}\`, or a consent link).`,
    { cause, detail: error ?? 'needs consent' },
  );
}

function throwUnavailable(id: string, error: string, retryInMs: number, cause?: unknown): never {
  throw new ProxyError(
    'token-unavailable',
    `The token endpoint is temporarily unavailable for ${id} (${error}); next try in ${Math.ceil(
      Math.max(retryInMs, 0) / 1000,
    )} s. Every token was kept.`,
    { cause, detail: error },
  );
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
