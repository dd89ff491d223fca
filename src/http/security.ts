/**
 * Response hardening, cookies and CSRF tokens for the pages. There is no script on any page, so the
 * CSP forbids scripts entirely; forms may only post to ourselves (plus, for the consent page, the
 * provider's origin, because Chromium applies form-action to the redirect that follows a POST).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

export function securityHeaders(formActionOrigins: readonly string[] = []): Record<string, string> {
  const formAction = ["'self'", ...formActionOrigins].join(' ');
  return {
    'Content-Security-Policy':
      `default-src 'none'; style-src 'self'; img-src 'self' data:; form-action ${formAction}; ` +
      "frame-ancestors 'none'; base-uri 'none'",
    'Referrer-Policy': 'no-referrer',
    'X-Frame-Options': 'DENY',
    'X-Content-Type-Options': 'nosniff',
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cache-Control': 'no-store',
  };
}

export function parseCookies(req: IncomingMessage): Map<string, string> {
  const out = new Map<string, string>();
  const header = req.headers.cookie;
  if (!header) return out;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (!out.has(name)) out.set(name, value);
  }
  return out;
}

/** Cookie that ties a consent in progress (and CSRF tokens) to one browser. */
export const BROWSER_COOKIE = 'xoauth_proxy_browser';
const BROWSER_ID_PATTERN = /^[A-Za-z0-9_-]{22,64}$/;

/** The browser's id from its cookie, or a new one that `setBrowserCookie` must send. */
export function browserId(req: IncomingMessage): { id: string; isNew: boolean } {
  const existing = parseCookies(req).get(BROWSER_COOKIE);
  if (existing && BROWSER_ID_PATTERN.test(existing)) return { id: existing, isNew: false };
  return { id: randomBytes(24).toString('base64url'), isNew: true };
}

export function setBrowserCookie(res: ServerResponse, id: string, secure: boolean): void {
  // SameSite=Lax: the provider's redirect back to /oauth/callback is a top-level GET from another site,
  // which must still carry the cookie; cross-site POSTs do not.
  const attrs = ['Path=/', 'HttpOnly', 'SameSite=Lax', 'Max-Age=86400'];
  if (secure) attrs.push('Secure');
  appendSetCookie(res, `${BROWSER_COOKIE}=${id}; ${attrs.join('; ')}`);
}

/** Adds a Set-Cookie header without replacing one set earlier for the same response. */
export function appendSetCookie(res: ServerResponse, cookie: string): void {
  const prev = res.getHeader('Set-Cookie');
  const list = prev === undefined ? [] : Array.isArray(prev) ? prev : [String(prev)];
  res.setHeader('Set-Cookie', [...list, cookie]);
}

/**
 * Keyed HMACs: a CSRF token is bound to a browser and a purpose. The key comes from the store, so a
 * form served by one instance may be posted to another behind the same load balancer.
 */
export class CsrfTokens {
  constructor(private readonly secret: Buffer = randomBytes(32)) {}

  issue(browser: string, purpose: string): string {
    return createHmac('sha256', this.secret).update(`${purpose}\u0000${browser}`).digest('base64url');
  }

  verify(browser: string, purpose: string, token: string | undefined): boolean {
    if (!token) return false;
    return safeEqual(this.issue(browser, purpose), token);
  }
}

export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  // Compare equal-length buffers so the time taken does not reveal where they differ.
  if (x.length !== y.length) {
    timingSafeEqual(x, x);
    return false;
  }
  return timingSafeEqual(x, y);
}
