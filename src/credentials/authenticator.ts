/**
 * Local logins: the account's password hash from the config, or one of its app passwords from the store.
 * Failures cost the same whether or not the user exists, and are slowed down by the login limiter.
 */
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import { resolveAccount } from '../config/accounts.js';
import type { Config, ResolvedAccount } from '../config/types.js';
import { ProxyError, isProxyError } from '../errors.js';
import { appPasswordIdOf, isNamedAppPasswordId } from './app-passwords.js';
import type { AppPasswordStore } from '../store/types.js';
import { CredentialCache } from './credential-cache.js';
import { LoginLimiter } from './login-limiter.js';
import { verifyPassword } from './password.js';
import type { Authenticator, LoginAttempt } from './types.js';

/**
 * Verified instead of a real hash when the user is unknown or has no password at all, so the answer
 * takes as long as for a wrong password (same default cost as `hashPassword`). Matches no password
 * that anyone knows: its salt and hash are random bytes.
 */
const DUMMY_HASH = '$scrypt$ln=15,r=8,p=1$Zm2Vf6Xc2JtGCgEeXlB6sA$mB3v7q4m0ZqHnD9c1rC8zJt3bVw2oV8q6Vb1pQGzY2E';

/**
 * lastUsedAt is written at most this often per app password. The write is a synchronous SQLite
 * transaction (synchronous=FULL) on the event loop and waits up to busy_timeout when a CLI holds the
 * write lock, so it must not happen on every login; "last used" to within minutes is all anyone reads.
 */
export const APP_PASSWORD_TOUCH_INTERVAL_MS = 5 * 60_000;
/** App passwords whose last write is remembered; beyond this the least recently used is forgotten. */
const TOUCH_TRACKED_MAX = 10_000;

export interface LocalAuthenticatorOptions {
  config: Config;
  store?: Pick<AppPasswordStore, 'listAppPasswords' | 'touchAppPassword'>;
  logger: Logger;
  limiter?: LoginLimiter;
  cache?: CredentialCache;
  /** Clock and sleep, for tests. */
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class LocalAuthenticator implements Authenticator {
  private readonly config: Config;
  private readonly store: LocalAuthenticatorOptions['store'];
  private readonly logger: Logger;
  private readonly limiter: LoginLimiter;
  private readonly cache: CredentialCache;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  /** Checks running now, by cache key: 50 clients logging in at once with one password cost one scrypt. */
  private readonly inflight = new Map<string, Promise<boolean>>();
  /** App password id -> when we last tried to write its lastUsedAt. */
  private readonly touched = new LRUCache<string, number>({ max: TOUCH_TRACKED_MAX });

  constructor(options: LocalAuthenticatorOptions) {
    this.config = options.config;
    this.store = options.store;
    this.logger = options.logger;
    this.now = options.now ?? Date.now;
    this.sleep = options.sleep ?? defaultSleep;
    this.limiter = options.limiter ?? new LoginLimiter(this.config.settings.loginLimiter, { now: this.now });
    this.cache =
      options.cache ?? new CredentialCache({ ttlMs: this.config.settings.credentialCacheMs, now: this.now });
  }

  async verify(attempt: LoginAttempt): Promise<ResolvedAccount> {
    const keys = { remoteAddress: attempt.remoteAddress, username: attempt.username };
    const log = { username: attempt.username, remoteAddress: attempt.remoteAddress };
    const lock = this.limiter.status(keys);
    if (lock.locked) {
      this.logger.warn({ ...log, retryAfterMs: lock.retryAfterMs }, 'login refused: too many failures');
      await this.sleep(this.config.settings.loginLimiter.baseDelayMs);
      throw new ProxyError('bad-credentials', 'login locked after too many failures', {
        detail: 'Too many failed logins; try again later',
      });
    }

    const account = resolveAccount(this.config, attempt.username);
    const how = account ? await this.check(account, attempt.password) : undefined;
    if (!account)
      await this.verifyShared(`unknown:${attempt.username.toLowerCase()}`, attempt.password, DUMMY_HASH);
    if (how === 'unavailable') {
      // Counted like a wrong password: otherwise an outage would let anyone test config passwords
      // without limit (this answer differs from the one a right config password gets).
      const delay = this.limiter.fail(keys);
      this.logger.warn({ ...log, delayMs: delay }, 'local login not checked: the store cannot be read');
      if (delay > 0) await this.sleep(delay);
      throw new ProxyError(
        'token-unavailable',
        `The app passwords of ${attempt.username} cannot be read from the store right now; try again shortly.`,
        { detail: 'the store is unavailable' },
      );
    }
    if (account && how) {
      this.limiter.succeed(keys);
      this.logger.info({ ...log, account: account.id, via: how }, 'local login ok');
      return account;
    }

    const delay = this.limiter.fail(keys);
    this.logger.warn(
      { ...log, reason: account ? 'wrong password' : 'unknown user', delayMs: delay },
      'local login failed',
    );
    if (delay > 0) await this.sleep(delay);
    throw new ProxyError('bad-credentials', 'invalid username or password', {
      detail: 'Invalid username or password',
    });
  }

  /**
   * 'password' or 'app-password' when the password is right, else undefined.
   * The config password is tried against the cache before the store is read, so a client using it
   * costs no SQLite read. App passwords are always read from the store, even when their check is
   * cached: `app-password revoke` runs in another process, and a revoked password must stop working
   * at the next login, not when the cache entry expires.
   *
   * One scrypt per attempt, whatever the account holds: a password that names one of the account's
   * app passwords (its first group is the record id) is checked against that hash only; any other
   * password against the config password, or a dummy hash when there is none. So a wrong password
   * takes as long for an account with many app passwords as for an unknown user. App passwords made
   * before ids were part of the password cannot be named, and are still tried one by one.
   */
  private async check(
    account: ResolvedAccount,
    password: string,
  ): Promise<'password' | 'app-password' | 'unavailable' | undefined> {
    if (account.passwordHash !== undefined && this.cache.has(account.id, password, account.passwordHash)) {
      return this.accept(undefined);
    }
    const apps = await this.appPasswords(account);
    if (apps === undefined) {
      // The store cannot be read: the config password still works; anything else may be an app
      // password we cannot check now, so the client is told to try again, not that it is wrong.
      const config =
        account.passwordHash !== undefined &&
        (await this.verifyShared(account.id, password, account.passwordHash));
      return config ? this.accept(undefined) : 'unavailable';
    }
    const namedId = appPasswordIdOf(password);
    const named = namedId === undefined ? undefined : apps.find((a) => a.id === namedId);
    const candidates: { hash: string; appPasswordId?: string }[] = [];
    if (named) {
      candidates.push({ hash: named.hash, appPasswordId: named.id });
    } else {
      if (account.passwordHash !== undefined) candidates.push({ hash: account.passwordHash });
      for (const app of apps) {
        if (!isNamedAppPasswordId(app.id)) candidates.push({ hash: app.hash, appPasswordId: app.id });
      }
    }

    for (const c of candidates) {
      if (this.cache.has(account.id, password, c.hash)) return this.accept(c.appPasswordId);
    }
    if (candidates.length === 0) {
      await this.verifyShared(account.id, password, DUMMY_HASH);
      return undefined;
    }
    for (const c of candidates) {
      if (await this.verifyShared(account.id, password, c.hash)) return this.accept(c.appPasswordId);
    }
    return undefined;
  }

  /** verifyPassword, shared with identical checks in flight, remembered in the cache on success. */
  private verifyShared(accountId: string, password: string, hash: string): Promise<boolean> {
    const key = this.cache.key(accountId, password, hash);
    const running = this.inflight.get(key);
    if (running) return running;
    const check = this.verifySafely(password, hash)
      .then((ok) => {
        if (ok) this.cache.remember(accountId, password, hash);
        return ok;
      })
      .finally(() => this.inflight.delete(key));
    this.inflight.set(key, check);
    return check;
  }

  private accept(appPasswordId: string | undefined): 'password' | 'app-password' {
    if (appPasswordId === undefined) return 'password';
    const now = this.now();
    const last = this.touched.get(appPasswordId);
    if (last === undefined || now - last >= APP_PASSWORD_TOUCH_INTERVAL_MS) {
      // Remembered before the write: a store that fails (or waits on a lock) is not asked again at
      // every login, only once per interval.
      this.touched.set(appPasswordId, now);
      // Not awaited: recording the use must not slow the login down.
      this.store?.touchAppPassword(appPasswordId, now).catch((err: unknown) => {
        this.logger.warn({ err }, 'could not record app password use');
      });
    }
    return 'app-password';
  }

  /** The account's app passwords; undefined when the store cannot be read. */
  private async appPasswords(account: ResolvedAccount) {
    if (!this.store) return [];
    try {
      return await this.store.listAppPasswords(account.id);
    } catch (err) {
      this.logger.error({ err, account: account.id }, 'cannot read app passwords');
      return undefined;
    }
  }

  private async verifySafely(password: string, hash: string): Promise<boolean> {
    try {
      return await verifyPassword(password, hash);
    } catch (err) {
      if (!isProxyError(err, 'config')) throw err;
      this.logger.error('a stored password hash is malformed; that password cannot be used');
      return false;
    }
  }
}
