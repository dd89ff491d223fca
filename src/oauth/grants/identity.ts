/**
 * Who consented, and whether they may. The id_token's claims are read without checking its signature:
 * it came straight from the token endpoint over TLS in answer to our own code, which OpenID Connect
 * Core §3.1.3.7 (6) accepts in place of a signature check.
 *
 * Which claim names the person matters for Microsoft: its `email` claim is an optional, admin- or
 * user-settable attribute and not verified ("nOAuth"), so it is never used there; `preferred_username`
 * (the sign-in name, UPN) and `upn` are. Google's `email` is verified (and refused when
 * `email_verified` is false). A Microsoft connection bound to one tenant by GUID also checks `tid`: a
 * multi-tenant app registration would otherwise accept a look-alike UPN from any other tenant.
 */
import type { ConnectionConfig, ResolvedAccount } from '../../config/types.js';
import { ProxyError } from '../../errors.js';
import type { ConsentIdentity, TokenSet } from '../types.js';
import { classifyTokenError } from './token-errors.js';
import { DEFAULT_TOKEN_REQUEST_TIMEOUT_MS, type RequestOptions } from './token-response.js';

export function decodeJwtClaims(jwt: string): Record<string, unknown> | undefined {
  const part = jwt.split('.')[1];
  if (!part) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as unknown;
    return claims !== null && typeof claims === 'object' ? (claims as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function pick(claims: Record<string, unknown>, connection: ConnectionConfig): string | undefined {
  const order =
    connection.provider === 'microsoft'
      ? ['preferred_username', 'upn']
      : ['email', 'preferred_username', 'upn'];
  for (const name of order) {
    if (name === 'email' && claims.email_verified === false) continue;
    const value = claims[name];
    if (typeof value === 'string' && value.includes('@')) return value.trim().toLowerCase();
  }
  return undefined;
}

function identity(email: string, claims: Record<string, unknown>): ConsentIdentity {
  const name = typeof claims.name === 'string' && claims.name.trim() !== '' ? claims.name.trim() : undefined;
  return name === undefined ? { email } : { email, name };
}

export async function identityFromTokenSet(
  connection: ConnectionConfig,
  tokenSet: TokenSet,
  options: RequestOptions = {},
): Promise<ConsentIdentity> {
  const claims = tokenSet.idToken ? decodeJwtClaims(tokenSet.idToken) : undefined;
  checkTenant(connection, claims);
  const fromIdToken = claims ? pick(claims, connection) : undefined;
  if (fromIdToken && claims) return identity(fromIdToken, claims);

  if (connection.userinfoUrl) {
    let info: Record<string, unknown>;
    try {
      const res = await fetch(connection.userinfoUrl, {
        headers: { authorization: `Bearer ${tokenSet.accessToken}`, accept: 'application/json' },
        redirect: 'error',
        signal: AbortSignal.timeout(options.timeoutMs ?? DEFAULT_TOKEN_REQUEST_TIMEOUT_MS),
      });
      if (!res.ok) throw new Error(`userinfo answered HTTP ${res.status}`);
      info = (await res.json()) as Record<string, unknown>;
    } catch (err) {
      throw new ProxyError(
        'token-unavailable',
        `Could not read who signed in from ${connection.userinfoUrl}: ${classifyTokenError(err).message}`,
        { cause: err },
      );
    }
    const email = pick(info, connection);
    if (email) return identity(email, { ...claims, ...info });
  }
  throw new ProxyError(
    'needs-consent',
    `Cannot tell who signed in: the token response of connection ${connection.name} has no id_token with an ` +
      `${connection.provider === 'microsoft' ? 'preferred_username/upn' : 'email/preferred_username/upn'} claim` +
      (connection.userinfoUrl
        ? ' and the userinfo endpoint named none'
        : ' and the connection has no userinfoUrl') +
      `. Add the scopes "openid email" (or set userinfoUrl) for this connection.`,
  );
}

/** A Microsoft connection whose tenantId is a GUID accepts only sign-ins that the id_token puts in it. */
function checkTenant(connection: ConnectionConfig, claims: Record<string, unknown> | undefined): void {
  const tenant = connection.tenantId;
  if (connection.provider !== 'microsoft' || tenant === undefined || !GUID.test(tenant)) return;
  const tid = claims?.tid;
  if (typeof tid === 'string' && tid.toLowerCase() === tenant.toLowerCase()) return;
  const got = typeof tid === 'string' ? `tenant ${tid}` : 'no tenant id (tid)';
  throw new ProxyError(
    'needs-consent',
    `The sign-in came from ${got}, but connection ${connection.name} is for tenant ${tenant}. Nothing was ` +
      `stored. Sign in with an account of tenant ${tenant}.`,
    { detail: `id_token tid ${typeof tid === 'string' ? tid : 'missing'}, expected ${tenant}` },
  );
}

/** Refused consent: someone other than the mailbox (or an allowed delegate) signed in. */
export class IdentityMismatchError extends ProxyError {
  readonly expected: string;
  readonly actual: string;
  constructor(expected: string, actual: string, connection: string) {
    super(
      'needs-consent',
      `Signed in as ${actual}, but this account is ${expected}. Nothing was stored. Sign in as ${expected}` +
        ` (use a private browser window if the browser keeps choosing ${actual}), or, if ${actual} is a delegate` +
        ` of this mailbox, list it under allowedIdentities of connection ${connection}.`,
      { detail: `signed in as ${actual}, expected ${expected}` },
    );
    this.name = 'IdentityMismatchError';
    this.expected = expected;
    this.actual = actual;
  }
}

export function checkIdentity(account: ResolvedAccount, who: ConsentIdentity): void {
  const actual = who.email.trim().toLowerCase();
  const allowed = [account.email, ...account.connection.allowedIdentities].map((a) => a.trim().toLowerCase());
  if (!allowed.includes(actual)) {
    throw new IdentityMismatchError(account.email.toLowerCase(), actual, account.connection.name);
  }
}
