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
import { GRAPH_CONSENT_MISSING, isProxyError, ProxyError } from '../errors.js';
import { collectAccountStatus, type AccountStatus } from './account-status.js';
import { storeGrant } from './grant-record.js';
import { clientCredentialsToken } from './grants/client-credentials.js';
import { serviceAccountAdvice, serviceAccountToken } from './grants/service-account.js';
import { refreshAccessToken } from './grants/refresh.js';
import { graphTokenScopes, scopesAfterRefresh } from './grants/scopes.js';
import { classifyTokenError, isClientError, type TokenEndpointError } from './grants/token-errors.js';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { AccountState, GrantStore, TokenRecord } from '../store/types.js';
import { KeepAlive } from './keep-alive.js';
import type {
  AccessToken,
  ConsentIdentity,
  TokenEvent,
  TokenMetrics,
  TokenOptions,
  TokenProvider,
  TokenResource,
  TokenRequestGrant,
  TokenRequestResult,
  TokenSet,
} from './types.js';

export interface TokenManagerOptions {
  config: Pick<Config, 'settings' | 'accounts' | 'connections'>;
  store: GrantStore;
  logger: Logger;
  /** Epoch ms; injectable for tests. */
  clock?: () => number;
  onEvent?: (event: TokenEvent) => void;
  /** Counts token-endpoint requests by grant and outcome (src/metrics); optional. */
  metrics?: TokenMetrics;
  /** When a run of transient failures makes an account `failing` (defaults below). */
  failingAfter?: { failures?: number; ms?: number };
  /** How long a refresh lease runs before another process may take over (default REFRESH_LEASE_MS). */
  refreshLeaseMs?: number;
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
/**
 * A refresh lease runs this long unless renewed; renewed while the token request runs, so only a
 * holder that died (or froze) loses it, and then another process takes over after at most this long.
 */
export const REFRESH_LEASE_MS = 20_000;
/** Waited beyond another holder's lease, so that its expiry is past by the store's clock too. */
const LEASE_SLACK_MS = 100;
/** Leases of other processes waited out for one call before giving up with a temporary error. */
const MAX_LEASE_WAITS = 4;
/** After taking over a lease, a refused refresh token stays `failing` (in doubt) this long. */
const IN_DOUBT_MS = 2 * 60_000;

/** The access token side of an account: what a login may be handed without asking the store. */
type TokenState =
  | { kind: 'none' }
  | { kind: 'cached'; token: string; expiresAt: number }
  /** The upstream refused this one (invalidate): never handed out again, from memory or the store. */
  | { kind: 'refused'; token: string };

/** The token endpoint side: fine, or a run of failed attempts that paces the next ones. */
type Attempts = { kind: 'ok' } | { kind: 'failing'; backoff: Backoff };

/** A refreshed token set the store refused to take; the only copy of a rotated refresh token. */
interface Unsaved {
  set: TokenSet;
  /** Which resource `set`'s access token is for (a Graph token never replaces the stored mail one). */
  resource: TokenResource;
  connection: ResolvedAccount['connection'];
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

/**
 * Everything the manager knows of one account (or, under an `app-only:` key, of one app-only
 * connection), in one place.
 */
interface Entry {
  token: TokenState;
  attempts: Attempts;
  /** The refresh in flight: every concurrent caller awaits this one. */
  flight?: Promise<AccessToken>;
  /** A rotated set the store refused: the only copy of the live refresh token until it is saved. */
  unsaved?: Unsaved;
  /** The last state seen, to report each transition once. */
  seen?: AccountState;
  /** The app-only key this account's logins used (so invalidate reaches it). */
  appKey?: string;
  /** A refresh token refused after a takeover: the process before us may still commit its successor. */
  doubt?: { refreshToken: string; until: number };
}

export class TokenManager implements TokenProvider {
  readonly #config: TokenManagerOptions['config'];
  readonly #store: GrantStore;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #onEvent: ((event: TokenEvent) => void) | undefined;
  readonly #metrics: TokenMetrics | undefined;
  readonly #entries = new Map<string, Entry>();
  readonly #failingAfterFailures: number;
  readonly #failingAfterMs: number;
  readonly #leaseMs: number;
  /** Who this process is when it holds a refresh lease (unique per manager, readable in the store). */
  readonly #holder = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  readonly #keepAlive: KeepAlive;
  /** Changes heard per account, so a wait can tell whether the commit came before it began. */
  readonly #changes = new Map<string, number>();
  readonly #changeWaiters = new Map<string, Set<() => void>>();
  readonly #stopWatching: () => void;
  /**
   * One token request per account at a time in this process, whatever its resource: a mail and a
   * Graph refresh would otherwise both send the same rotating refresh token (the store's lease is
   * per process, so it does not keep them apart).
   */
  readonly #accountTurns = new Map<string, Promise<void>>();

  constructor(options: TokenManagerOptions) {
    this.#config = options.config;
    this.#store = options.store;
    this.#log = options.logger;
    this.#now = options.clock ?? Date.now;
    this.#onEvent = options.onEvent;
    this.#metrics = options.metrics;
    this.#failingAfterFailures = Math.max(1, options.failingAfter?.failures ?? FAILING_AFTER_FAILURES);
    this.#failingAfterMs = Math.max(0, options.failingAfter?.ms ?? FAILING_AFTER_MS);
    this.#leaseMs = Math.max(1000, options.refreshLeaseMs ?? REFRESH_LEASE_MS);
    this.#keepAlive = new KeepAlive({
      config: this.#config,
      store: this.#store,
      logger: this.#log,
      now: this.#now,
      tokens: this,
      flush: () => this.#flushAllUnsaved(),
    });
    // Watching from the start rather than per wait: a networked store needs a moment to start
    // listening, and a commit that lands in that moment must not leave a waiter waiting for the
    // whole lease.
    this.#stopWatching = this.#store.watchGrants((id) => this.#heard(id));
  }

  #heard(id: string): void {
    this.#changes.set(id, (this.#changes.get(id) ?? 0) + 1);
    const waiters = this.#changeWaiters.get(id);
    if (!waiters) return;
    this.#changeWaiters.delete(id);
    for (const wake of waiters) wake();
  }

  #entry(key: string): Entry {
    let entry = this.#entries.get(key);
    if (!entry) {
      entry = { token: { kind: 'none' }, attempts: { kind: 'ok' } };
      this.#entries.set(key, entry);
    }
    return entry;
  }

  #backoffOf(key: string): Backoff | undefined {
    const attempts = this.#entries.get(key)?.attempts;
    return attempts?.kind === 'failing' ? attempts.backoff : undefined;
  }

  #clearBackoff(key: string): void {
    const entry = this.#entries.get(key);
    if (entry) entry.attempts = { kind: 'ok' };
  }

  #setBackoff(key: string, backoff: Backoff): void {
    this.#entry(key).attempts = { kind: 'failing', backoff };
  }

  #cached(key: string): { token: string; expiresAt: number } | undefined {
    const token = this.#entries.get(key)?.token;
    return token?.kind === 'cached' ? token : undefined;
  }

  #refused(key: string): string | undefined {
    const token = this.#entries.get(key)?.token;
    return token?.kind === 'refused' ? token.token : undefined;
  }

  /** Whether the keep-alive should refresh this grant now (not while its backoff for that token runs). */
  keepAliveDue(accountId: string, refreshToken: string): { due: boolean; failing: boolean } {
    const backoff = this.#backoffOf(accountId);
    if (!backoff) return { due: true, failing: false };
    return { due: !(backoff.until > this.#now() && backoff.refreshToken === refreshToken), failing: true };
  }

  get #marginMs(): number {
    return this.#config.settings.refreshMarginMs;
  }

  async getAccessToken(account: ResolvedAccount, options: TokenOptions = {}): Promise<AccessToken> {
    const resource = options.resource ?? 'mail';
    if (resource === 'graph' && !account.connection.graph) {
      throw new ProxyError(
        'config',
        `Connection ${account.connection.name} does not send through Microsoft Graph (no send: graph or auto).`,
      );
    }
    const key = resource === 'graph' ? graphKey(account) : cacheKey(account);
    if (resource === 'mail' && key !== account.id) this.#entry(account.id).appKey = key;
    const entry = this.#entry(key);
    if (!options.forceRefresh) {
      const cached = this.#cached(key);
      if (cached && cached.expiresAt - this.#now() > this.#marginMs) {
        return { token: cached.token, expiresAt: cached.expiresAt };
      }
    }
    // A refresh already running produces a token at least as fresh as a forced one would.
    if (entry.flight) return entry.flight;
    const force = options.forceRefresh === true;
    const promise = (
      grantHasNoConsent(account.connection)
        ? this.#appOnly(account, key, force, resource)
        : this.#inTurn(account.id, () => this.#refresh(account, force, resource))
    ).finally(() => {
      if (entry.flight === promise) delete entry.flight;
    });
    entry.flight = promise;
    return promise;
  }

  /** Runs `work` after every earlier token request of the account in this process has ended. */
  async #inTurn<T>(id: string, work: () => Promise<T>): Promise<T> {
    const before = this.#accountTurns.get(id);
    let done!: () => void;
    const mine = new Promise<void>((resolve) => {
      done = resolve;
    });
    const turn = (before ?? Promise.resolve()).then(() => mine);
    this.#accountTurns.set(id, turn);
    try {
      if (before) await before;
      return await work();
    } finally {
      done();
      if (this.#accountTurns.get(id) === turn) this.#accountTurns.delete(id);
    }
  }

  invalidate(accountId: string): void {
    const appKey = this.#entries.get(accountId)?.appKey;
    for (const key of appKey === undefined ? [accountId] : [accountId, appKey]) {
      const entry = this.#entries.get(key);
      if (entry?.token.kind === 'cached') entry.token = { kind: 'refused', token: entry.token.token };
    }
  }

  /** Stores a grant obtained by consent (CLI or web) and clears every failure memory of the account. */
  async recordConsent(
    account: ResolvedAccount,
    tokenSet: TokenSet,
    identity: ConsentIdentity,
  ): Promise<TokenRecord> {
    const record = await storeGrant(this.#store, account, tokenSet, identity, this.#now());
    const entry = this.#entry(account.id);
    delete entry.unsaved;
    entry.attempts = { kind: 'ok' };
    entry.token = { kind: 'cached', token: tokenSet.accessToken, expiresAt: tokenSet.expiresAt };
    this.#transition(account.id, 'active', undefined, 'consented');
    return record;
  }

  status(): Promise<AccountStatus[]> {
    return collectAccountStatus(this.#config, this.#store);
  }

  /** Starts the keep-alive timer (unref'd: it never keeps the process alive on its own). */
  start(): void {
    this.#keepAlive.start();
  }

  async stop(): Promise<void> {
    this.#stopWatching();
    await this.#keepAlive.stop();
    await Promise.allSettled([...this.#entries.values()].flatMap((e) => (e.flight ? [e.flight] : [])));
    await this.#flushAllUnsaved();
    for (const [id, entry] of this.#entries) {
      if (!entry.unsaved) continue;
      this.#log.error(
        { account: id },
        'SHUTTING DOWN WITH A ROTATED REFRESH TOKEN THAT COULD NOT BE SAVED: the grant is lost; the account ' +
          'will need consent again',
      );
    }
  }

  /** One keep-alive pass now (the timer's work; tests and `check` call it directly). */
  runKeepAlive(): Promise<void> {
    return this.#keepAlive.run();
  }

  async #refresh(account: ResolvedAccount, forced: boolean, resource: TokenResource): Promise<AccessToken> {
    const id = account.id;
    const entry = this.#entry(id);
    let force = forced;
    // `changes`: at most one retry when another process replaced the grant while our request with
    // the old refresh token failed. `waits`: how often another process's lease was waited out.
    let changes = 0;
    for (let waits = 0; ;) {
      let record = await this.#read(id);
      let pending = entry.unsaved;
      if (pending) {
        const saved = await this.#flushUnsaved(id, pending);
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
        if (entry.token.kind === 'cached') entry.token = { kind: 'none' };
        throw needsConsent(id, record.lastError);
      }
      const now = this.#now();
      const refused = this.#refused(id);
      if (
        resource === 'mail' &&
        !force &&
        record.accessToken !== undefined &&
        record.accessToken !== refused &&
        (record.accessTokenExpiresAt ?? 0) - now > this.#marginMs
      ) {
        // Another process refreshed, or we restarted: no request needed.
        return this.#remember(id, record.accessToken, record.accessTokenExpiresAt ?? 0);
      }
      // The keep-alive checked its own (longer) backoff before calling; a login only waits this long.
      const backoff = this.#backoffOf(id);
      if (backoff && backoff.loginUntil > now && backoff.refreshToken === record.refreshToken) {
        return this.#duringOutage(id, record, force, backoff, undefined, resource);
      }
      if (pending && pending.set.expiresAt - now > this.#marginMs) {
        // Its access token is still fresh: another rotation would only add one more unsaved token.
        throw new ProxyError(
          'token-unavailable',
          `Cannot save the refreshed grant of ${id} to the token store yet; retrying on the next login.`,
        );
      }

      // One process at a time asks the token endpoint for an account: the others wait for its commit
      // (or for its lease to run out, if it died) and then read what it stored.
      const lease = await this.#takeLease(id);
      if (lease.kind === 'busy') {
        if (++waits > MAX_LEASE_WAITS) {
          throw new ProxyError(
            'token-unavailable',
            `Another proxy process (${lease.holder}) is refreshing the grant of ${id} and has not finished; ` +
              'try again shortly.',
          );
        }
        // What another process stored answers a forced refresh too (a refused token is never reused).
        force = false;
        continue;
      }
      if (lease.kind !== 'unleased') {
        // Another process may have refreshed and let go of the lease between our read and our take:
        // then its grant answers, and a second request would only rotate the token again.
        const current = await this.#read(id).catch(() => record);
        if (
          current &&
          (current.refreshToken !== record.refreshToken || current.accessToken !== record.accessToken)
        ) {
          await this.#releaseLease(id, lease.stopRenewing);
          if (++waits > MAX_LEASE_WAITS) {
            throw new ProxyError(
              'token-unavailable',
              `The grant of ${id} keeps changing in the token store while this process refreshes; try again shortly.`,
            );
          }
          force = false;
          continue;
        }
      }
      try {
        const grant = { ...record, refreshToken: record.refreshToken };
        const outcome = await this.#request(
          account,
          grant,
          pending,
          force,
          lease.kind === 'took-over',
          changes,
          resource,
        );
        if (outcome !== 'changed') return outcome;
        changes++;
      } finally {
        if (lease.kind !== 'unleased') await this.#releaseLease(id, lease.stopRenewing);
      }
    }
  }

  /** The token request and its commit, under the account's lease. 'changed': read the store again. */
  async #request(
    account: ResolvedAccount,
    record: TokenRecord & { refreshToken: string },
    pending: Unsaved | undefined,
    force: boolean,
    tookOver: boolean,
    changes: number,
    resource: TokenResource,
  ): Promise<AccessToken | 'changed'> {
    const id = account.id;
    // The stored refresh token, or the rotated one only memory holds (the stored one is dead then).
    const stored = record.refreshToken;
    const used = pending?.set.refreshToken ?? stored;
    let set: TokenSet;
    try {
      set = await refreshAccessToken(account.connection, used, {
        timeoutMs: this.#config.settings.tokenRequestTimeoutMs,
        now: this.#now,
        ...(resource === 'graph' ? { scopes: graphTokenScopes(account.connection) } : {}),
      });
    } catch (err) {
      const failure = classifyTokenError(err);
      this.#count('refresh_token', failure.kind);
      const changed = await this.#read(id);
      if (changed?.refreshToken !== undefined && changed.refreshToken !== stored && changes === 0) {
        this.#dropUnsaved(id, 'a new grant was stored meanwhile');
        return 'changed';
      }
      if (resource === 'graph' && failure.kind === 'permanent' && !isClientError(failure)) {
        // A refusal of the Graph token alone (no Graph consent, a policy on Graph only) must not stop
        // IMAP and POP: only sending is refused here. A grant that is really gone fails its next
        // mail refresh too, which marks it as a mail refusal always has.
        if (!lacksGraphConsent(failure)) {
          this.#log.warn({ account: id, error: failure.summary }, 'Microsoft Graph refused the grant');
          throw new ProxyError(
            'needs-consent',
            `The token endpoint refused a Microsoft Graph token for ${id} (${failure.summary}): sending ` +
              'through Graph needs the mailbox owner to consent again.',
            { cause: failure, detail: failure.summary },
          );
        }
        // The grant still works for mail: only sending through Graph needs the owner to consent again.
        this.#log.warn({ account: id, error: failure.summary }, 'the grant does not cover Microsoft Graph');
        throw new ProxyError(
          'needs-consent',
          `The grant of ${id} does not allow sending through Microsoft Graph (${failure.summary}): the ` +
            `mailbox owner must consent again (\`xoauth-proxy consent ${id}\`, or a consent link), and ` +
            'the app registration needs the Mail.Send permission.',
          { cause: failure, detail: GRAPH_CONSENT_MISSING },
        );
      }
      if (isClientError(failure))
        return this.#clientProblem(id, stored, failure, force, account.connection.name, resource);
      if (failure.kind === 'permanent' && tookOver) {
        // The process whose lease ran out may have used this refresh token and be about to commit the
        // one that replaced it: in doubt, not yet a lost grant. Its late commit makes it active again.
        const until = this.#now() + IN_DOUBT_MS;
        return this.#transient(id, stored, failure, force, {
          resource,
          error:
            `${failure.summary} (in doubt until ${new Date(until).toISOString()}: another proxy process ` +
            'stopped while refreshing this grant and may still save a newer refresh token; if none arrives, ' +
            'the owner must consent again)',
          failingNow: true,
          inDoubt: until,
        });
      }
      if (failure.kind === 'permanent') {
        const doubt = this.#entry(id).doubt;
        // Other instances sharing the store learn of the doubt from the stored grant, not from memory.
        const latest = changed ?? record;
        const storedUntil = latest.refreshToken === stored ? latest.inDoubtUntil : undefined;
        if (storedUntil !== undefined && storedUntil > this.#now()) {
          return this.#transient(id, stored, failure, force, {
            resource,
            failingNow: true,
            error: latest.lastError,
          });
        }
        if (doubt && doubt.refreshToken === stored && doubt.until > this.#now()) {
          return this.#transient(id, stored, failure, force, {
            resource,
            failingNow: true,
            error: this.#backoffOf(id)?.error,
          });
        }
        throw await this.#permanent(id, stored, failure);
      }
      return this.#transient(id, stored, failure, force, { resource });
    }
    this.#count('refresh_token', 'ok');
    // Rotated: the store's refresh token is no longer the live one (also when `used` was unsaved).
    const live = set.refreshToken ?? used;
    const rotated = live !== stored;
    // The rotated refresh token is committed here, before anyone gets the new access token, and only
    // over the refresh token that was sent (compare-and-set in #applyRefresh).
    const fallback = record;
    const unsaved: Unsaved = {
      set: { ...set, refreshToken: live },
      resource,
      connection: account.connection,
      replaced: stored,
      at: this.#now(),
    };
    const saved = await this.#persist(id, rotated, unsaved, (update) =>
      this.#store.updateToken(id, (current) => update(current ?? fallback)),
    );
    const entry = this.#entry(id);
    entry.attempts = { kind: 'ok' };
    delete entry.doubt;
    this.#log.info(
      { account: id, resource, rotated, expiresAt: new Date(set.expiresAt).toISOString() },
      'access token refreshed',
    );
    this.#transition(id, saved?.state ?? 'active', undefined);
    return this.#remember(resource === 'graph' ? graphKey(account) : id, set.accessToken, set.expiresAt);
  }

  /**
   * The account's refresh lease. 'busy': another process holds it, and we waited until it committed
   * or its lease ran out. 'unleased': the store cannot be written, so go on as the only process would
   * (the commit's compare-and-set still guards the refresh token).
   */
  async #takeLease(
    id: string,
  ): Promise<
    | { kind: 'held' | 'took-over'; stopRenewing: () => void }
    | { kind: 'unleased' }
    | { kind: 'busy'; holder: string }
  > {
    let result;
    const seen = this.#changes.get(id) ?? 0;
    try {
      result = await this.#store.acquireRefreshLease(id, this.#holder, this.#leaseMs);
    } catch (err) {
      this.#log.warn(
        { account: id, err: errorText(err) },
        'cannot take the refresh lease; refreshing without',
      );
      return { kind: 'unleased' };
    }
    if (!result.acquired) {
      await this.#waitForChange(id, seen, result.remainingMs);
      return { kind: 'busy', holder: result.holder };
    }
    // Renewed while the request runs, so only a holder that died or froze loses it.
    const timer = setInterval(
      () => {
        this.#store.acquireRefreshLease(id, this.#holder, this.#leaseMs).catch(() => undefined);
      },
      Math.max(250, Math.floor(this.#leaseMs / 3)),
    );
    timer.unref();
    if (result.tookOver) {
      this.#log.warn(
        { account: id, previousHolder: result.tookOver },
        'took over the refresh lease of a process that did not finish its refresh',
      );
    }
    return { kind: result.tookOver ? 'took-over' : 'held', stopRenewing: () => clearInterval(timer) };
  }

  async #releaseLease(id: string, stopRenewing: () => void): Promise<void> {
    stopRenewing();
    try {
      await this.#store.releaseRefreshLease(id, this.#holder);
    } catch (err) {
      // It runs out by itself; until then another process waits at most that long.
      this.#log.warn({ account: id, err: errorText(err) }, 'cannot release the refresh lease');
    }
  }

  /**
   * Until the store reports a change of the account after the `seen`-th one (at once if it already
   * did), or `ms` (plus a little) passed.
   */
  #waitForChange(id: string, seen: number, ms: number): Promise<void> {
    if ((this.#changes.get(id) ?? 0) !== seen) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#changeWaiters.get(id)?.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.min(Math.max(ms, 0), this.#leaseMs) + LEASE_SLACK_MS);
      timer.unref();
      const waiters = this.#changeWaiters.get(id) ?? new Set();
      waiters.add(done);
      this.#changeWaiters.set(id, waiters);
    });
  }

  /**
   * The store update that commits a refreshed set over the grant it replaced. A grant written meanwhile
   * by a consent (another refresh token in the store) wins: then only a fresh access token is taken.
   */
  #applyRefresh(unsaved: Unsaved): (base: TokenRecord) => TokenRecord {
    const { set, replaced, at, resource, connection } = unsaved;
    return (base) => {
      const refreshToken =
        base.refreshToken !== replaced ? base.refreshToken : (set.refreshToken ?? replaced);
      // The store keeps the mail token only; a Graph token is cached by each process (see docs).
      const access =
        resource === 'mail'
          ? { accessToken: set.accessToken, accessTokenExpiresAt: set.expiresAt }
          : {
              ...(base.accessToken !== undefined ? { accessToken: base.accessToken } : {}),
              ...(base.accessTokenExpiresAt !== undefined
                ? { accessTokenExpiresAt: base.accessTokenExpiresAt }
                : {}),
            };
      const next: TokenRecord = {
        ...base,
        ...access,
        scopes: scopesAfterRefresh(connection, base.scopes, set.scopes, resource),
        state: 'active',
        lastRefreshAt: at,
        updatedAt: this.#now(),
      };
      if (refreshToken === undefined) delete next.refreshToken;
      else next.refreshToken = refreshToken;
      delete next.lastError;
      delete next.inDoubtUntil;
      return next;
    };
  }

  async #persist(
    id: string,
    rotated: boolean,
    unsaved: Unsaved,
    write: (update: (base: TokenRecord) => TokenRecord) => Promise<TokenRecord | undefined>,
  ): Promise<TokenRecord | undefined> {
    const entry = this.#entry(id);
    try {
      const saved = await write(this.#applyRefresh(unsaved));
      delete entry.unsaved;
      return saved;
    } catch (err) {
      // Not handing out a token whose grant we could not save (the rule above). A rotated refresh
      // token is now the only valid one: it stays in memory, and is saved on the next call or tick.
      if (rotated) {
        entry.unsaved = unsaved;
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
  async #flushUnsaved(id: string, unsaved: Unsaved): Promise<TokenRecord | undefined | false> {
    const apply = this.#applyRefresh(unsaved);
    let superseded = false;
    try {
      const saved = await this.#store.updateToken(id, (current) => {
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
      const entry = this.#entry(id);
      if (entry.unsaved === unsaved) delete entry.unsaved;
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

  async #flushAllUnsaved(): Promise<void> {
    for (const [id, entry] of [...this.#entries]) {
      if (entry.unsaved) await this.#flushUnsaved(id, entry.unsaved);
    }
  }

  #dropUnsaved(id: string, why: string): void {
    const entry = this.#entries.get(id);
    if (entry?.unsaved) {
      delete entry.unsaved;
      this.#log.warn({ account: id, why }, 'an unsaved rotated refresh token was dropped');
    }
  }

  #remember(key: string, token: string, expiresAt: number): AccessToken {
    this.#entry(key).token = { kind: 'cached', token, expiresAt };
    return { token, expiresAt };
  }

  async #read(id: string): Promise<TokenRecord | undefined> {
    try {
      return await this.#store.getToken(id);
    } catch (err) {
      // A login should get "try again later", not "wrong password", when the store is unreadable.
      throw new ProxyError('token-unavailable', `Token store unavailable: ${errorText(err)}`, { cause: err });
    }
  }

  async #permanent(id: string, used: string, failure: TokenEndpointError): Promise<ProxyError> {
    const error = failure.summary;
    const entry = this.#entry(id);
    if (entry.token.kind === 'cached') entry.token = { kind: 'none' };
    entry.attempts = { kind: 'ok' };
    await this.#safeUpdate(id, (current) =>
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
    resource: TokenResource,
  ): Promise<AccessToken> {
    const error =
      `${failure.summary} (the provider refused the OAuth client of connection ${connection}: check its ` +
      'clientId/clientSecret and app registration; the grant is kept)';
    // Not a blip that may pass: the admin has to act, so the account is `failing` at once.
    return this.#transient(id, used, failure, force, {
      resource,
      error,
      minDelayMs: BACKOFF_MAX_MS,
      failingNow: true,
    });
  }

  async #transient(
    id: string,
    used: string,
    failure: TokenEndpointError,
    force: boolean,
    options: {
      resource?: TokenResource;
      error?: string | undefined;
      minDelayMs?: number;
      failingNow?: boolean;
      /** Epoch ms until which a refusal of `used` is in doubt. */
      inDoubt?: number;
    } = {},
  ): Promise<AccessToken> {
    const now = this.#now();
    const previous = this.#backoffOf(id);
    if (options.inDoubt !== undefined) this.#entry(id).doubt = { refreshToken: used, until: options.inDoubt };
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
    this.#setBackoff(id, backoff);
    // One blip keeps the account `active`; only an account that keeps failing becomes `failing`.
    const keepsFailing =
      options.failingNow === true ||
      failures >= this.#failingAfterFailures ||
      now - since >= this.#failingAfterMs;
    // Only the grant that failed is marked; a consent written meanwhile stays as it is.
    const record = await this.#safeUpdate(id, (current) =>
      current?.refreshToken === used
        ? {
            ...current,
            state: keepsFailing ? 'failing' : current.state,
            lastError: error,
            ...(options.inDoubt !== undefined ? { inDoubtUntil: options.inDoubt } : {}),
            updatedAt: now,
          }
        : undefined,
    );
    this.#log.warn(
      { account: id, error, failures, failingForMs: now - since, retryInMs: delay },
      'token refresh failed, will retry',
    );
    if (keepsFailing) this.#transition(id, 'failing', error);
    return this.#duringOutage(id, record, force, backoff, failure, options.resource ?? 'mail');
  }

  /** During an outage: the old access token while it is still usable, else "temporarily unavailable". */
  #duringOutage(
    id: string,
    record: TokenRecord | undefined,
    force: boolean,
    backoff: Backoff,
    cause?: unknown,
    resource: TokenResource = 'mail',
  ): AccessToken {
    const now = this.#now();
    if (resource === 'graph') {
      const key = `${GRAPH_PREFIX}${id}`;
      const cached = this.#cached(key);
      if (!force && cached && cached.expiresAt - now > MIN_USABLE_MS) return { ...cached };
      return throwUnavailable(id, backoff, now, cause);
    }
    const token = record?.accessToken;
    const expiresAt = record?.accessTokenExpiresAt ?? 0;
    if (!force && token !== undefined && token !== this.#refused(id) && expiresAt - now > MIN_USABLE_MS) {
      return this.#remember(id, token, expiresAt);
    }
    return throwUnavailable(id, backoff, now, cause);
  }

  /**
   * Grants without a refresh token (client credentials; a service account, per mailbox): ask the
   * token endpoint again when the cached token nears expiry.
   */
  async #appOnly(
    account: ResolvedAccount,
    key: string,
    force: boolean,
    resource: TokenResource,
  ): Promise<AccessToken> {
    const connection = account.connection;
    const delegation = connection.grant === 'service_account';
    const grant: TokenRequestGrant = delegation ? 'service_account' : 'client_credentials';
    const now = this.#now();
    // Only logins ask for app-only tokens (no keep-alive), so the login wait is the only one.
    const backoff = this.#backoffOf(key);
    if (backoff && backoff.loginUntil > now) {
      const cached = this.#cached(key);
      if (!force && cached && cached.expiresAt - now > MIN_USABLE_MS) return { ...cached };
      return throwUnavailable(key, backoff, now);
    }
    try {
      const options = { timeoutMs: this.#config.settings.tokenRequestTimeoutMs, now: this.#now };
      const set = delegation
        ? await serviceAccountToken(connection, account.email, options)
        : await clientCredentialsToken(
            connection,
            resource === 'graph' ? { ...options, scopes: graphTokenScopes(connection) } : options,
          );
      this.#count(grant, 'ok');
      this.#clearBackoff(key);
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
      const previous = this.#backoffOf(key);
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
      this.#setBackoff(key, backoff);
      this.#log.warn(
        { connection: connection.name, error: failure.summary },
        'app-only token request failed',
      );
      const cached = this.#cached(key);
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

  async #safeUpdate(
    id: string,
    update: (current: TokenRecord | undefined) => TokenRecord | undefined,
  ): Promise<TokenRecord | undefined> {
    try {
      return await this.#store.updateToken(id, update);
    } catch (err) {
      this.#log.error({ account: id, err: errorText(err) }, 'cannot record the token state in the store');
      return undefined;
    }
  }

  /** Remembers a state seen in the store (another process may have changed it). */
  #noticeState(record: TokenRecord): void {
    const entry = this.#entry(record.accountId);
    if (entry.seen === 'needs-consent' && record.state === 'active') {
      entry.attempts = { kind: 'ok' };
      this.#transition(record.accountId, 'active', undefined, 'consented');
      return;
    }
    entry.seen = record.state;
  }

  #transition(id: string, state: AccountState, error: string | undefined, kind?: TokenEvent['kind']): void {
    const entry = this.#entry(id);
    const before = entry.seen;
    entry.seen = state;
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
/** Graph tokens are cached apart from the mail token of the same account (or app-only connection). */
const GRAPH_PREFIX = 'graph:';

function graphKey(account: ResolvedAccount): string {
  return `${GRAPH_PREFIX}${cacheKey(account)}`;
}

/**
 * A Graph refresh refused because the user never consented to Graph (a grant from before the
 * connection sent through Graph, or Mail.Send missing from the app): Entra says AADSTS65001
 * (consent_required) or refuses the scope. The refresh token itself is fine for mail then.
 */
function lacksGraphConsent(failure: TokenEndpointError): boolean {
  const code = failure.oauthError ?? '';
  if (code === 'invalid_scope' || code === 'consent_required' || code === 'interaction_required') return true;
  return code === 'invalid_grant' && /AADSTS65001|consent/i.test(failure.description ?? '');
}

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
