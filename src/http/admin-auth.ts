/**
 * The admin page's door: HTTP Basic with the admin password (scrypt hash in the config) or admin token
 * (compared in constant time). Any user name is accepted; only the secret counts. Repeated failures
 * from one client address (IPv6: one /64; behind `http.trustedProxies` the address they forward) are
 * locked out for a while, because scrypt is cheap to ask for and dear to compute; and all addresses
 * together get a fixed number of checks per minute, so an attacker rotating addresses can neither burn
 * CPU nor guess faster than that. So that neither keeps the admin out, a successful login earns a
 * short-lived session cookie, signed with a key that lives only in this process: with it the password
 * is not checked again, and neither the lock nor the cap applies. An address the admin signed in from
 * recently is not held up by the cap either (its own lock still applies), so a right password from it
 * gets through when the session has expired during an attack.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { LRUCache } from 'lru-cache';
import { addressKey } from '../credentials/login-limiter.js';
import { isPasswordHash, verifyPassword } from '../credentials/password.js';
import { TrustedProxies } from './client-address.js';
import { parseCookies, safeEqual } from './security.js';

const VERIFIED_TTL_MS = 10 * 60_000;
const MAX_FAILURES = 10;
const LOCK_MS = 10 * 60_000;
/** Addresses whose failures are remembered; least recently seen go first, never all at once. */
const MAX_CLIENTS = 50_000;
/** How long an address that signed in successfully skips the global cap, and how many are kept. */
const KNOWN_CLIENT_MS = 24 * 60 * 60_000;
const MAX_KNOWN_CLIENTS = 1_000;
/** Checks of a not yet verified secret per minute, all addresses together; one admin needs a few. */
const ATTEMPTS_PER_MINUTE = 30;
export const ADMIN_ATTEMPT_WINDOW_MS = 60_000;
export const ADMIN_SESSION_COOKIE = 'xoauth_proxy_admin';
export const ADMIN_SESSION_TTL_MS = 60 * 60_000;

/**
 * 'ok': the secret was right (send a session cookie); 'session': a valid session cookie;
 * 'busy': the global cap is reached, the secret was not checked.
 */
export type AdminAuthResult = 'ok' | 'session' | 'missing' | 'wrong' | 'locked' | 'busy';

export interface AdminAuthOptions {
  maxClients?: number;
  attemptsPerMinute?: number;
  /** `http.trustedProxies`: peers whose X-Forwarded-For names the client. */
  trustedProxies?: readonly string[];
  /** Signs session cookies; without one, a per-process key (a restart then ends every session). */
  sessionKey?: Buffer;
}

interface Failures {
  count: number;
  lockedUntil: number;
  first: number;
}

export class AdminAuth {
  /** sha256 of secrets that verified recently, so each page view does not pay for scrypt again. */
  private readonly verified = new Map<string, number>();
  private readonly failures: LRUCache<string, Failures>;
  /** Client addresses (as keyed for failures) with a successful login, until when they skip the cap. */
  private readonly known = new LRUCache<string, number>({ max: MAX_KNOWN_CLIENTS });
  /** Times of the checks in the last minute, oldest first (at most attemptsPerMinute of them). */
  private attempts: number[] = [];
  private readonly attemptsPerMinute: number;
  private readonly proxies: TrustedProxies;
  /** Signs session cookies: from the store key (every instance accepts them), else per process. */
  private readonly sessionKey: Buffer;

  constructor(
    private readonly secret: string,
    private readonly now: () => number,
    options: AdminAuthOptions = {},
  ) {
    this.failures = new LRUCache<string, Failures>({ max: options.maxClients ?? MAX_CLIENTS });
    this.attemptsPerMinute = options.attemptsPerMinute ?? ATTEMPTS_PER_MINUTE;
    this.proxies = new TrustedProxies(options.trustedProxies);
    this.sessionKey = options.sessionKey ?? randomBytes(32);
  }

  /** The address failures are counted for (and logged). */
  clientAddress(req: IncomingMessage): string {
    return this.proxies.clientOf(req);
  }

  /** A Set-Cookie value for a new admin session. */
  sessionCookie(secure: boolean): string {
    const expires = this.now() + ADMIN_SESSION_TTL_MS;
    const attrs = [
      'Path=/admin',
      'HttpOnly',
      'SameSite=Strict',
      `Max-Age=${ADMIN_SESSION_TTL_MS / 1000}`,
      ...(secure ? ['Secure'] : []),
    ];
    return `${ADMIN_SESSION_COOKIE}=${expires}.${this.sign(expires)}; ${attrs.join('; ')}`;
  }

  private sign(expires: number): string {
    return createHmac('sha256', this.sessionKey).update(`admin-session:${expires}`).digest('base64url');
  }

  private validSession(req: IncomingMessage, t: number): boolean {
    const m = /^(\d{1,16})\.([A-Za-z0-9_-]{43})$/.exec(parseCookies(req).get(ADMIN_SESSION_COOKIE) ?? '');
    if (!m) return false;
    const expires = Number(m[1]);
    // The expiry is inside the signature, so it cannot be moved; the upper bound is a second guard.
    if (expires <= t || expires > t + ADMIN_SESSION_TTL_MS) return false;
    const want = Buffer.from(this.sign(expires));
    const got = Buffer.from(m[2] as string);
    return got.length === want.length && timingSafeEqual(got, want);
  }

  /** Addresses (IPv6 /64 networks) with failures on record. */
  get trackedClients(): number {
    return this.failures.size;
  }

  async check(req: IncomingMessage): Promise<AdminAuthResult> {
    const t = this.now();
    if (this.validSession(req, t)) return 'session';
    const client = addressKey(this.clientAddress(req));
    const f = this.failures.get(client);
    if (f && f.lockedUntil > t) return 'locked';
    const presented = basicPassword(req.headers.authorization);
    if (presented === undefined) return 'missing';
    const digest = createHash('sha256').update(presented).digest('hex');
    let ok = this.recentlyVerified(digest, t);
    if (!ok) {
      const known = (this.known.get(client) ?? 0) > t;
      if (!known && !this.takeAttempt(t)) return 'busy';
      ok = await this.verify(presented, digest, t);
    }
    if (ok) {
      this.failures.delete(client);
      this.known.set(client, t + KNOWN_CLIENT_MS);
      return 'ok';
    }
    // Read again after the await: concurrent failures from one address must all count.
    const prev = this.failures.get(client);
    const entry = prev && t - prev.first < LOCK_MS ? prev : { count: 0, lockedUntil: 0, first: t };
    entry.count += 1;
    if (entry.count >= MAX_FAILURES) entry.lockedUntil = t + LOCK_MS;
    this.failures.set(client, entry);
    return 'wrong';
  }

  /** Counts one check against the global cap; false when the cap is reached. */
  private takeAttempt(t: number): boolean {
    this.attempts = this.attempts.filter((at) => at > t - ADMIN_ATTEMPT_WINDOW_MS);
    if (this.attempts.length >= this.attemptsPerMinute) return false;
    if (Number.isFinite(this.attemptsPerMinute)) this.attempts.push(t);
    return true;
  }

  private recentlyVerified(digest: string, t: number): boolean {
    const until = this.verified.get(digest);
    return until !== undefined && until > t;
  }

  private async verify(presented: string, digest: string, t: number): Promise<boolean> {
    const ok = isPasswordHash(this.secret)
      ? await verifyPassword(presented, this.secret)
      : safeEqual(presented, this.secret);
    if (ok) {
      if (this.verified.size > 100) this.verified.clear();
      this.verified.set(digest, t + VERIFIED_TTL_MS);
    }
    return ok;
  }
}

function basicPassword(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!m) return undefined;
  const decoded = Buffer.from(m[1] as string, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? undefined : decoded.slice(colon + 1);
}
