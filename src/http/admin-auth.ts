/**
 * The admin page's door: HTTP Basic with the admin password (scrypt hash in the config) or admin token
 * (compared in constant time). Any user name is accepted; only the secret counts. Repeated failures
 * from one address are locked out for a while, because scrypt is cheap to ask for and dear to compute.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isPasswordHash, verifyPassword } from '../credentials/password.js';
import { safeEqual } from './security.js';

const VERIFIED_TTL_MS = 10 * 60_000;
const MAX_FAILURES = 10;
const LOCK_MS = 10 * 60_000;

export type AdminAuthResult = 'ok' | 'missing' | 'wrong' | 'locked';

export class AdminAuth {
  /** sha256 of secrets that verified recently, so each page view does not pay for scrypt again. */
  private readonly verified = new Map<string, number>();
  private readonly failures = new Map<string, { count: number; lockedUntil: number; first: number }>();

  constructor(
    private readonly secret: string,
    private readonly now: () => number,
  ) {}

  async check(req: IncomingMessage): Promise<AdminAuthResult> {
    const client = req.socket.remoteAddress ?? 'unknown';
    const t = this.now();
    const f = this.failures.get(client);
    if (f && f.lockedUntil > t) return 'locked';
    const presented = basicPassword(req.headers.authorization);
    if (presented === undefined) return 'missing';
    const ok = await this.verify(presented, t);
    if (ok) {
      this.failures.delete(client);
      return 'ok';
    }
    const entry = f && t - f.first < LOCK_MS ? f : { count: 0, lockedUntil: 0, first: t };
    entry.count += 1;
    if (entry.count >= MAX_FAILURES) entry.lockedUntil = t + LOCK_MS;
    this.failures.set(client, entry);
    if (this.failures.size > 10_000) this.failures.clear();
    return 'wrong';
  }

  private async verify(presented: string, t: number): Promise<boolean> {
    const digest = createHash('sha256').update(presented).digest('hex');
    const until = this.verified.get(digest);
    if (until !== undefined && until > t) return true;
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
