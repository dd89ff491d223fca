/**
 * Access tokens for the proxies. The rules that keep users from having to consent again:
 * - one refresh per account in flight, however many logins ask at once (a second concurrent refresh
 *   with a rotating provider would burn the refresh token the first one just replaced);
 * - a rotated refresh token is in the store (committed) before the new access token is handed out;
 *   when that write fails (SQLITE_BUSY while a CLI holds the lock, disk full), the rotated set is kept
 *   in memory, used for the next refresh, and written again on every call and keep-alive tick until
 *   it is committed: with strict rotation the old refresh token is already dead at the provider;
 * - the store is re-read before every refresh, so a grant written by another process (the consent CLI)
 *   is used at once, also for an account that was in `needs-consent`;
 * - failures are classified once (grants/token-errors.ts): transient ones keep every token, record
 *   lastError and back off; the account stays `active` through a blip and becomes `failing` (which
 *   notifies) only when it keeps failing: FAILING_AFTER_FAILURES in a row, or for FAILING_AFTER_MS;
 * - only the keep-alive backs off to minutes. A login may try again once LOGIN_RETRY_MS passed since
 *   the account's last attempt (or a Retry-After the provider sent), so mail works again within
 *   seconds of the provider's recovery, while a login storm still sends at most one request per
 *   account per LOGIN_RETRY_MS. The error a client gets names the latest attempt: when and why;
 *   permanent ones mark it `needs-consent` and the refresh token is kept for diagnosis but not used again.
 *
 * A Map of in-flight promises gives the single flight (lru-cache's `fetch` could too, but it swallows
 * errors on a cold key and has no notion of backoff or of "the stored token changed under us"; a Map
 * keeps all three explicit).
 */
import type { Logger } from 'pino';
import { grantHasNoConsent } from '../config/accounts.js';
import type { Config, ResolvedAccount } from '../config/types.js';
import { isProxyError, ProxyError } from '../errors.js';
import { collectAccountStatus, entryForStoredAccount, type AccountStatus } from './account-status.js';
import { storeGrant } from './grant-record.js';
import { clientCredentialsToken } from './grants/client-credentials.js';
import { serviceAccountAdvice, serviceAccountToken } from './grants/service-account.js';
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
  /** When a run of transient failures makes an account `failing` (defaults below). */
  failingAfter?: { failures?: number; ms?: number };
}

/** Transient failures in a row after which an account is `failing` (and an admin is notified). */
export const FAILING_AFTER_FAILURES = 3;
/** ...or a failure this long after the first failure of the run. */
export const FAILING_AFTER_MS = 15 * 60_000;

/** After a transient failure, no keep-alive request before this (doubling per failure, capped). */
export const BACKOFF_BASE_MS = 5_000;
export const BACKOFF_MAX_MS = 5 * 60_000;
/** After a failed attempt, a login may start the next one this much later (not the keep-alive's backoff). */
export const LOGIN_RETRY_MS = 5_000;
/** A Retry-After longer than this is not honoured in full. */
const RETRY_AFTER_MAX_MS = 60 * 60_000;
/** An old access token is still handed out during an outage only with at least this much left. */
const MIN_USABLE_MS = 60_000;

interface Cached {
  token: string;
  expiresAt: number;
}

/** A refreshed token set the store refused to take; the only copy of a rotated refresh token. */
interface Unsaved {
  set: TokenSet;
  /** The refresh token the store holds for this grant (the one the refresh replaced). */
  replaced: string;
  /** When the refresh was done (lastRefreshAt once saved). */
  at: number;
}

interface Backoff {
  /** The keep-alive's next attempt, not before (exponential). */
  until: number;
  /** A login's next attempt, not before: LOGIN_RETRY_MS after the last one, or a Retry-After. */
  loginUntil: number;
  /** Epoch ms of the latest failed attempt (what the error text tells the client). */
  failedAt: number;
  failures: number;
  /** Epoch ms of the first failure of this run. */
  since: number;
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
  /** Rotated token sets not yet committed to the store, per account. */
  readonly #unsaved = new Map<string, Unsaved>();
  /** Access tokens an upstream refused (invalidate): never handed out again from the store. */
  readonly #rejected = new Map<string, string>();
  /** Last state seen per account, to report transitions once. */
  readonly #states = new Map<string, AccountState>();
  /** Account id -> the app-only cache key it used (for invalidate). */
  readonly #appKeys = new Map<string, string>();
  /** Accounts whose stored row could not be read, each logged once until it reads again. */
  readonly #unreadable = new Set<string>();
  readonly #failingAfterFailures: number;
  readonly #failingAfterMs: number;
  #timer: NodeJS.Timeout | undefined;
  #keepAliveRun: Promise<void> | undefined;

  constructor(options: TokenManagerOptions) {
    this.#config = options.config;
    this.#store = options.store;
    this.#log = options.logger;
    this.#now = options.clock ?? Date.now;
    this.#onEvent = options.onEvent;
    this.#metrics = options.metrics;
    this.#failingAfterFailures = Math.max(1, options.failingAfter?.failures ?? FAILING_AFTER_FAILURES);
    this.#failingAfterMs = Math.max(0, options.failingAfter?.ms ?? FAILING_AFTER_MS);
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
      grantHasNoConsent(account.connection)
        ? this.#appOnly(account, key, force)
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
    this.#unsaved.delete(account.id);
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
    this.#flushAllUnsaved();
    for (const id of this.#unsaved.keys()) {
      this.#log.error(
        { account: id },
        'SHUTTING DOWN WITH A ROTATED REFRESH TOKEN THAT COULD NOT BE SAVED: the grant is lost; the account ' +
          'will need consent again',
      );
    }
  }

  /**
   * Refreshes every stored grant not refreshed within keepAliveIntervalMs, one at a time, so that a
   * revoked grant shows in `status` before a user notices and rolling refresh tokens do not age out.
   * Failing accounts are retried here too (after their backoff), which is how they recover unattended.
   */
  async runKeepAlive(): Promise<void> {
    const interval = this.#config.settings.keepAliveIntervalMs;
    this.#flushAllUnsaved();
    let records: TokenRecord[];
    const unreadable = new Set<string>();
    try {
      // A row that cannot be read is reported for its account; every other account is refreshed.
      records = this.#store.listTokens((row) => {
        unreadable.add(row.accountId);
        if (this.#unreadable.has(row.accountId)) return;
        this.#unreadable.add(row.accountId);
        this.#log.error(
          { account: row.accountId, connection: row.connection, reason: row.reason },
          'keep-alive: the stored grant of this account cannot be read (status shows it as unreadable); ' +
            'consent again or restore the store from a backup',
        );
      });
    } catch (err) {
      this.#log.error({ err: errorText(err) }, 'keep-alive: cannot read the token store');
      return;
    }
    for (const id of this.#unreadable) if (!unreadable.has(id)) this.#unreadable.delete(id);
    for (const record of records) {
      if (!record.refreshToken || record.state === 'needs-consent') continue;
      // A run of transient failures (still `active`) is retried here too, so it ends unattended.
      const due =
        this.#now() - (record.lastRefreshAt ?? 0) >= interval ||
        record.state === 'failing' ||
        this.#backoff.has(record.accountId);
      if (!due) continue;
      const connection = this.#config.connections.get(record.connection);
      if (!connection || grantHasNoConsent(connection)) continue;
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
      let record = this.#read(id);
      let pending = this.#unsaved.get(id);
      if (pending) {
        const saved = this.#flushUnsaved(id, pending);
        if (saved !== false) {
          pending = undefined;
          if (saved) record = saved;
        }
      }
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
      // The keep-alive checked its own (longer) backoff before calling; a login only waits this long.
      const backoff = this.#backoff.get(id);
      if (backoff && backoff.loginUntil > now && backoff.refreshToken === record.refreshToken) {
        return this.#duringOutage(id, record, force, backoff);
      }
      if (pending && pending.set.expiresAt - now > this.#marginMs) {
        // Its access token is still fresh: another rotation would only add one more unsaved token.
        throw new ProxyError(
          'token-unavailable',
          `Cannot save the refreshed grant of ${id} to the token store yet; retrying on the next login.`,
        );
      }

      // The stored refresh token, or the rotated one only memory holds (the stored one is dead then).
      const stored = record.refreshToken;
      const used = pending?.set.refreshToken ?? stored;
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
        if (changed?.refreshToken !== undefined && changed.refreshToken !== stored && round === 0) {
          this.#dropUnsaved(id, 'a new grant was stored meanwhile');
          continue;
        }
        if (isClientError(failure))
          return this.#clientProblem(id, stored, failure, force, account.connection.name);
        if (failure.kind === 'permanent') throw this.#permanent(id, stored, failure);
        return this.#transient(id, stored, failure, force);
      }
      this.#count('refresh_token', 'ok');
      // Rotated: the store's refresh token is no longer the live one (also when `used` was unsaved).
      const live = set.refreshToken ?? used;
      const rotated = live !== stored;
      // The rotated refresh token is committed here, before anyone gets the new access token.
      const fallback = record;
      const unsaved: Unsaved = { set: { ...set, refreshToken: live }, replaced: stored, at: this.#now() };
      const saved = this.#persist(id, rotated, unsaved, (update) =>
        this.#store.updateToken(id, (current) => update(current ?? fallback)),
      );
      this.#backoff.delete(id);
      this.#rejected.delete(id);
      this.#log.info(
        { account: id, rotated, expiresAt: new Date(set.expiresAt).toISOString() },
        'access token refreshed',
      );
      this.#transition(id, saved?.state ?? 'active', undefined);
      return this.#remember(id, set.accessToken, set.expiresAt);
    }
    throw new ProxyError(
      'token-unavailable',
      `The grant of ${id} kept changing during the refresh; try again.`,
    );
  }

  /**
   * The store update that commits a refreshed set over the grant it replaced. A grant written meanwhile
   * by a consent (another refresh token in the store) wins: then only a fresh access token is taken.
   */
  #applyRefresh(unsaved: Unsaved): (base: TokenRecord) => TokenRecord {
    const { set, replaced, at } = unsaved;
    return (base) => {
      const refreshToken =
        base.refreshToken !== replaced ? base.refreshToken : (set.refreshToken ?? replaced);
      const next: TokenRecord = {
        ...base,
        accessToken: set.accessToken,
        accessTokenExpiresAt: set.expiresAt,
        scopes: set.scopes,
        state: 'active',
        lastRefreshAt: at,
        updatedAt: this.#now(),
      };
      if (refreshToken === undefined) delete next.refreshToken;
      else next.refreshToken = refreshToken;
      delete next.lastError;
      return next;
    };
  }

  #persist(
    id: string,
    rotated: boolean,
    unsaved: Unsaved,
    write: (update: (base: TokenRecord) => TokenRecord) => TokenRecord | undefined,
  ): TokenRecord | undefined {
    try {
      const saved = write(this.#applyRefresh(unsaved));
      this.#unsaved.delete(id);
      return saved;
    } catch (err) {
      // Not handing out a token whose grant we could not save (the rule above). A rotated refresh
      // token is now the only valid one: it stays in memory, and is saved on the next call or tick.
      if (rotated) {
        this.#unsaved.set(id, unsaved);
        this.#log.error(
          { account: id, err: errorText(err), rotated },
          'CANNOT SAVE THE ROTATED REFRESH TOKEN: kept in memory only and retried on every login and ' +
            'keep-alive tick; a restart before it is saved loses the grant',
        );
      } else {
        this.#log.error({ account: id, err: errorText(err), rotated }, 'cannot save the refreshed grant');
      }
      throw new ProxyError(
        'token-unavailable',
        `Cannot save the refreshed grant of ${id}: ${errorText(err)}`,
        {
          cause: err,
        },
      );
    }
  }

  /**
   * Writes a rotated set the store refused before. Returns the stored record, undefined when there
   * was nothing (left) to save, false when the store refused again.
   */
  #flushUnsaved(id: string, unsaved: Unsaved): TokenRecord | undefined | false {
    const apply = this.#applyRefresh(unsaved);
    let superseded = false;
    try {
      const saved = this.#store.updateToken(id, (current) => {
        if (!current || current.refreshToken !== unsaved.replaced) {
          superseded = true;
          return undefined;
        }
        return apply(current);
      });
      if (superseded) {
        this.#dropUnsaved(id, 'a new grant was stored meanwhile');
        return undefined;
      }
      this.#unsaved.delete(id);
      this.#log.warn({ account: id }, 'the rotated refresh token kept in memory is saved now');
      return saved;
    } catch (err) {
      this.#log.error(
        { account: id, err: errorText(err) },
        'STILL CANNOT SAVE THE ROTATED REFRESH TOKEN: kept in memory only; retrying',
      );
      return false;
    }
  }

  #flushAllUnsaved(): void {
    for (const [id, unsaved] of [...this.#unsaved]) this.#flushUnsaved(id, unsaved);
  }

  #dropUnsaved(id: string, why: string): void {
    if (this.#unsaved.delete(id)) {
      this.#log.warn({ account: id, why }, 'an unsaved rotated refresh token was dropped');
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
    // Not a blip that may pass: the admin has to act, so the account is `failing` at once.
    return this.#transient(id, used, failure, force, {
      error,
      minDelayMs: BACKOFF_MAX_MS,
      failingNow: true,
    });
  }

  #transient(
    id: string,
    used: string,
    failure: TokenEndpointError,
    force: boolean,
    options: { error?: string; minDelayMs?: number; failingNow?: boolean } = {},
  ): AccessToken {
    const now = this.#now();
    const previous = this.#backoff.get(id);
    const sameRun = previous?.refreshToken === used;
    const failures = (sameRun ? previous.failures : 0) + 1;
    const since = sameRun ? previous.since : now;
    const delay = Math.max(backoffDelay(failures, failure.retryAfterMs), options.minDelayMs ?? 0);
    const until = now + delay;
    const error = options.error ?? failure.summary;
    const backoff: Backoff = {
      until,
      loginUntil: now + loginDelay(failure.retryAfterMs),
      failedAt: now,
      failures,
      since,
      refreshToken: used,
      error,
    };
    this.#backoff.set(id, backoff);
    // One blip keeps the account `active`; only an account that keeps failing becomes `failing`.
    const keepsFailing =
      options.failingNow === true ||
      failures >= this.#failingAfterFailures ||
      now - since >= this.#failingAfterMs;
    // Only the grant that failed is marked; a consent written meanwhile stays as it is.
    const record = this.#safeUpdate(id, (current) =>
      current?.refreshToken === used
        ? {
            ...current,
            state: keepsFailing ? 'failing' : current.state,
            lastError: error,
            updatedAt: now,
          }
        : undefined,
    );
    this.#log.warn(
      { account: id, error, failures, failingForMs: now - since, retryInMs: delay },
      'token refresh failed, will retry',
    );
    if (keepsFailing) this.#transition(id, 'failing', error);
    return this.#duringOutage(id, record, force, backoff, failure);
  }

  /** During an outage: the old access token while it is still usable, else "temporarily unavailable". */
  #duringOutage(
    id: string,
    record: TokenRecord | undefined,
    force: boolean,
    backoff: Backoff,
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
    return throwUnavailable(id, backoff, now, cause);
  }

  /**
   * Grants without a refresh token (client credentials; a service account, per mailbox): ask the
   * token endpoint again when the cached token nears expiry.
   */
  async #appOnly(account: ResolvedAccount, key: string, force: boolean): Promise<AccessToken> {
    const connection = account.connection;
    const delegation = connection.grant === 'service_account';
    const grant: TokenRequestGrant = delegation ? 'service_account' : 'client_credentials';
    const now = this.#now();
    // Only logins ask for app-only tokens (no keep-alive), so the login wait is the only one.
    const backoff = this.#backoff.get(key);
    if (backoff && backoff.loginUntil > now) {
      const cached = this.#cache.get(key);
      if (!force && cached && cached.expiresAt - now > MIN_USABLE_MS) return { ...cached };
      return throwUnavailable(key, backoff, now);
    }
    try {
      const options = { timeoutMs: this.#config.settings.tokenRequestTimeoutMs, now: this.#now };
      const set = delegation
        ? await serviceAccountToken(connection, account.email, options)
        : await clientCredentialsToken(connection, options);
      this.#count(grant, 'ok');
      this.#backoff.delete(key);
      this.#rejected.delete(key);
      this.#log.info(
        delegation ? { connection: connection.name, account: account.id } : { connection: connection.name },
        delegation ? 'service account access token obtained' : 'app-only access token obtained',
      );
      return this.#remember(key, set.accessToken, set.expiresAt);
    } catch (err) {
      // A ProxyError here is our own refusal before any request (the connection lacks a secret).
      if (isProxyError(err)) throw err;
      const failure = classifyTokenError(err);
      this.#count(grant, failure.kind);
      if (failure.kind === 'permanent' && delegation) {
        const advice = serviceAccountAdvice(connection, account.email, failure);
        this.#log.warn(
          { connection: connection.name, account: account.id, error: advice },
          'service account refused',
        );
        throw new ProxyError('needs-consent', `Service account token for ${account.id} refused: ${advice}.`, {
          cause: failure,
          detail: advice,
        });
      }
      if (failure.kind === 'permanent') {
        throw new ProxyError(
          'needs-consent',
          `The app registration of connection ${connection.name} was refused (${failure.summary}): check the ` +
            `client secret, and that an admin granted the app access to the mailboxes.`,
          { cause: failure, detail: failure.summary },
        );
      }
      const previous = this.#backoff.get(key);
      const failedAt = this.#now();
      const failures = (previous?.failures ?? 0) + 1;
      const backoff: Backoff = {
        until: failedAt + backoffDelay(failures, failure.retryAfterMs),
        loginUntil: failedAt + loginDelay(failure.retryAfterMs),
        failedAt,
        failures,
        since: previous?.since ?? failedAt,
        refreshToken: undefined,
        error: failure.summary,
      };
      this.#backoff.set(key, backoff);
      this.#log.warn(
        { connection: connection.name, error: failure.summary },
        'app-only token request failed',
      );
      const cached = this.#cache.get(key);
      if (!force && cached && cached.expiresAt - failedAt > MIN_USABLE_MS) return { ...cached };
      return throwUnavailable(key, backoff, failedAt, failure);
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

/** A provider that asked for a pause (Retry-After) gets it from logins too; otherwise LOGIN_RETRY_MS. */
function loginDelay(retryAfterMs: number | undefined): number {
  return Math.max(LOGIN_RETRY_MS, Math.min(retryAfterMs ?? 0, RETRY_AFTER_MAX_MS));
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

/**
 * The temporary error of a login during an outage. Its detail (what the mail client shows) is the
 * latest attempt's time and reason, so a client never reads a failure the provider has moved on from.
 */
function throwUnavailable(id: string, backoff: Backoff, now: number, cause?: unknown): never {
  const ago = Math.max(0, Math.round((now - backoff.failedAt) / 1000));
  const detail = `token endpoint failed ${ago} s ago: ${backoff.error}`;
  const retryIn = Math.ceil(Math.max(backoff.loginUntil - now, 0) / 1000);
  throw new ProxyError(
    'token-unavailable',
    `The ${detail} (account ${id}); a login may try again in ${retryIn} s. Every token was kept.`,
    { cause, detail },
  );
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
