/**
 * Remembers recently verified credentials for a short time, so a client that reconnects every minute
 * does not pay a full scrypt each time. Only successes are cached. The key is an HMAC (with a random
 * per-process key) of username, password and the stored hash, so changing the hash in the config or
 * deleting an app password invalidates the entry, and no password is kept in memory in a form that is
 * cheap to brute-force offline without the process key.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';

export interface CredentialCacheOptions {
  ttlMs: number;
  /** Entries kept at most (least recently used go first). */
  max?: number;
  /** Clock in milliseconds, for tests. */
  now?: () => number;
}

export class CredentialCache {
  private readonly cache: LRUCache<string, true> | undefined;
  private readonly secret = randomBytes(32);

  constructor(options: CredentialCacheOptions) {
    this.cache =
      options.ttlMs > 0
        ? new LRUCache<string, true>({
            max: options.max ?? 10_000,
            ttl: options.ttlMs,
            ttlResolution: 0,
            ...(options.now && { perf: { now: options.now } }),
          })
        : undefined;
  }

  /** Opaque key for one (username, password, stored hash) triple; also used to share in-flight checks. */
  key(username: string, password: string, storedHash: string): string {
    // JSON keeps the three parts apart whatever bytes they contain.
    return createHmac('sha256', this.secret)
      .update(JSON.stringify([username.toLowerCase(), password, storedHash]))
      .digest('base64');
  }

  has(username: string, password: string, storedHash: string): boolean {
    return this.cache?.get(this.key(username, password, storedHash)) === true;
  }

  remember(username: string, password: string, storedHash: string): void {
    this.cache?.set(this.key(username, password, storedHash), true);
  }

  clear(): void {
    this.cache?.clear();
  }
}
