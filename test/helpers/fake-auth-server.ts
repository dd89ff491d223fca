/**
 * An in-process fake OAuth2 authorization server (real HTTP on 127.0.0.1, port 0), Google-like by
 * default, Microsoft-like with `rotateRefreshTokens`. Most integration and e2e suites depend on its
 * behaviour, so add to it rather than change it.
 *
 * It is strict where real providers are strict and where being lax would hide our bugs:
 * PKCE S256 is verified, codes are single-use and bound to their redirect_uri, a rotated refresh token
 * invalidates the old one (stricter than Microsoft, so a lost rotation shows up at once), and an empty
 * `client_secret` is refused like Microsoft refuses secrets from public clients (AADSTS700025).
 */
import { createHash, randomBytes, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import type { ConnectionConfig } from '../../src/config/types.js';

/** The tenant the fake's id_tokens come from, as the test configs' Microsoft tenantId. */
export const FAKE_TENANT_ID = '11111111-2222-3333-4444-555555555555';

export interface FakeAuthOptions {
  /** Default 3600. */
  accessTokenTtlSeconds?: number;
  /** Microsoft style: a new refresh token on every refresh (default false = Google style, none returned). */
  rotateRefreshTokens?: boolean;
  /** Answers every token request this much later (a slow provider, so concurrent refreshes overlap). */
  tokenDelayMs?: number;
  /**
   * A successful refresh is answered this much later, after the refresh token was already rotated: a
   * client that dies meanwhile has lost the new one, and its old one is dead.
   */
  refreshAnswerDelayMs?: number;
  /** Scope string put in tokens / tokeninfo (default 'https://mail.google.com/'). */
  scope?: string;
  /** The `tid` claim of id_tokens, like a Microsoft tenant (default FAKE_TENANT_ID). */
  tenantId?: string;
  /** Who "signs in" at /authorize (default: login_hint, else 'user@example.com'). */
  autoConsentEmail?: string;
  /** /authorize redirects with ?error=access_denied (the user clicked "cancel"). */
  denyConsent?: boolean;
  /** `interval` (seconds) announced by /devicecode (default 1). */
  deviceIntervalSeconds?: number;
  /** `expires_in` (seconds) announced by /devicecode (default 900). */
  deviceExpiresSeconds?: number;
  /**
   * Google-like service accounts for grant_type=jwt-bearer, by client_email: the public key that
   * must have signed, whether the domain admin delegated the mail scope (default true), and the known
   * mailboxes (default: any address).
   */
  serviceAccounts?: Record<string, { publicKey: KeyObject; delegated?: boolean; users?: string[] }>;
  /** Certificate credentials by client id: the public key of a client assertion and its x5t#S256. */
  clientCertificates?: Record<string, { publicKey: KeyObject; thumbprintS256?: string }>;
  /**
   * Entra-like resources: a scope `https://host/Name` belongs to the resource `https://host`. A token
   * request naming scopes of two resources is refused (AADSTS28000), a refresh asking for scopes the
   * grant was not consented with is refused (AADSTS65001), and each access token is for one resource
   * (`describeAccessToken`). Without it the fake ignores what a request's scope says.
   */
  multiResource?: boolean;
}

/** What an access token was issued for. */
export interface FakeAccessToken {
  owner: string;
  /** The scopes it carries (one resource's, in multiResource mode). */
  scopes: string[];
  /** multiResource: the resource (`https://graph.microsoft.com`); otherwise undefined. */
  audience: string | undefined;
}

export type DeviceOutcome = 'approve' | 'declined' | 'expired' | 'slow_down-then-approve';

export interface FakeAuthCounts {
  /** Every POST /token. */
  token: number;
  /** grant_type=refresh_token requests. */
  refresh: number;
  /** Refresh requests that presented a refresh token already rotated away (strict rotation refuses them). */
  refreshReuse: number;
  /** grant_type=authorization_code requests. */
  authorizationCode: number;
  /** grant_type=device_code polls at /token. */
  deviceCode: number;
  /** grant_type=client_credentials requests. */
  clientCredentials: number;
  /** GET /tokeninfo requests. */
  tokeninfo: number;
  /** POST /devicecode requests. */
  deviceAuthorization: number;
  /** GET /authorize requests. */
  authorize: number;
  /** GET /userinfo requests. */
  userinfo: number;
  /** grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer requests (service accounts). */
  jwtBearer: number;
  /** Requests that authenticated with a client assertion (accepted or not). */
  clientAssertion: number;
}

export interface FakeClientAuth {
  /** How the client authenticated at /token. */
  method: 'basic' | 'body' | 'assertion' | 'none';
  clientId: string | undefined;
  clientSecret: string | undefined;
}

export interface FakeAuthServer {
  readonly url: string;
  readonly authorizeUrl: string;
  readonly tokenUrl: string;
  readonly deviceCodeUrl: string;
  readonly userinfoUrl: string;
  readonly tokeninfoUrl: string;
  /** Where a user would type the device code (nobody does; deviceScript decides). */
  readonly verificationUrl: string;
  options: FakeAuthOptions;
  /** `scopes`: what the owner consented to (multiResource checks refreshes against it; default: anything). */
  issueGrant(
    email: string,
    opts?: { accessTokenTtlSeconds?: number; scopes?: string[] },
  ): { refreshToken: string; accessToken: string; expiresAt: number };
  checkAccessToken(token: string): string | undefined;
  /** Who and what a live access token is for; undefined when unknown or expired. */
  describeAccessToken(token: string): FakeAccessToken | undefined;
  /** True while this refresh token would be accepted. */
  isRefreshTokenValid(token: string): boolean;
  revoke(email: string): void;
  /**
   * Make the next n /token requests fail with this HTTP status (default 500) or hang ('hang'). The body
   * is `{error}` with `error` (default 'temporarily_unavailable'), e.g. failNext(1, 401, 'invalid_client').
   */
  failNext(n: number, status?: number | 'hang', error?: string, retryAfterSeconds?: number): void;
  /** Drops the failures failNext queued and not yet served (the provider recovers). */
  clearFailures(): void;
  setHanging(on: boolean): void;
  deviceScript(pendingPolls: number, outcome?: DeviceOutcome, email?: string): void;
  readonly counts: FakeAuthCounts;
  readonly lastTokenRequest: URLSearchParams | undefined;
  /** Client authentication of the last /token request. */
  readonly lastClientAuth: FakeClientAuth | undefined;
  /** Query of the last GET /authorize. */
  readonly lastAuthorizeRequest: URLSearchParams | undefined;
  /** Header and claims of the last JWT (assertion or client assertion) that verified. */
  readonly lastAssertion: { header: Record<string, unknown>; claims: JWTPayload } | undefined;
  close(): Promise<void>;
}

interface AuthCode {
  email: string;
  clientId: string;
  redirectUri: string;
  challenge: string | undefined;
  challengeMethod: string | undefined;
  scope: string;
  expiresAt: number;
}

interface DeviceGrant {
  pendingLeft: number;
  outcome: DeviceOutcome;
  slowDownSent: boolean;
  email: string;
  clientId: string;
  expiresAt: number;
}

const CODE_TTL_MS = 10 * 60_000;

export async function startFakeAuthServer(initial: FakeAuthOptions = {}): Promise<FakeAuthServer> {
  const options: FakeAuthOptions = { ...initial };
  const codes = new Map<string, AuthCode>();
  /** refresh token -> email */
  const refreshTokens = new Map<string, string>();
  /** refresh token -> the scopes its grant was consented with (absent: anything goes) */
  const consented = new Map<string, string[]>();
  /** Refresh tokens rotated away: presenting one again is a reuse. */
  const retired = new Set<string>();
  /** access token -> owner + expiry */
  const accessTokens = new Map<
    string,
    { owner: string; expiresAt: number; scopes: string[]; audience: string | undefined }
  >();
  const deviceGrants = new Map<string, DeviceGrant>();
  let nextDeviceScript: { pendingPolls: number; outcome: DeviceOutcome; email?: string } | undefined;
  const failures: Array<{ status: number | 'hang'; error: string; retryAfter?: number }> = [];
  let hanging = false;
  const hungResponses = new Set<ServerResponse>();
  const counts: FakeAuthCounts = {
    token: 0,
    refresh: 0,
    refreshReuse: 0,
    authorizationCode: 0,
    deviceCode: 0,
    clientCredentials: 0,
    tokeninfo: 0,
    deviceAuthorization: 0,
    authorize: 0,
    userinfo: 0,
    jwtBearer: 0,
    clientAssertion: 0,
  };
  /** jti values seen, so a replayed assertion is refused (RFC 7523 §3, item 7). */
  const seenJti = new Set<string>();
  let lastAssertion: { header: Record<string, unknown>; claims: JWTPayload } | undefined;
  let lastTokenRequest: URLSearchParams | undefined;
  let lastClientAuth: FakeClientAuth | undefined;
  let lastAuthorizeRequest: URLSearchParams | undefined;

  const scope = (): string => options.scope ?? 'https://mail.google.com/';
  const ttl = (override?: number): number => override ?? options.accessTokenTtlSeconds ?? 3600;
  const random = (prefix: string): string => `${prefix}${randomBytes(18).toString('base64url')}`;

  function mintAccess(
    owner: string,
    ttlSeconds?: number,
    scopes: string[] = scope().split(' '),
  ): { accessToken: string; expiresIn: number } {
    const expiresIn = ttl(ttlSeconds);
    const accessToken = random('at-');
    const audience = options.multiResource ? resourcesOf(scopes)[0] : undefined;
    accessTokens.set(accessToken, { owner, expiresAt: Date.now() + expiresIn * 1000, scopes, audience });
    return { accessToken, expiresIn };
  }

  function mintRefresh(email: string, scopes?: string[]): string {
    const token = random('rt-');
    refreshTokens.set(token, email);
    if (scopes) consented.set(token, scopes);
    return token;
  }

  /** The resources (URL origins) a scope list names; OIDC and offline_access belong to none. */
  function resourcesOf(scopes: string[]): string[] {
    const out: string[] = [];
    for (const s of scopes) {
      if (!s.includes('://')) continue;
      const origin = new URL(s).origin;
      if (!out.includes(origin)) out.push(origin);
    }
    return out;
  }

  /**
   * multiResource: the scopes one token may carry. `requested` absent: the consented ones of the first
   * resource (what Entra does for a code whose authorization named several resources).
   */
  function tokenScopes(requested: string[] | undefined, grantScopes: string[] | undefined): string[] {
    const base = requested ?? grantScopes ?? scope().split(' ');
    if (!options.multiResource) return requested ?? scope().split(' ');
    const first = resourcesOf(base)[0];
    return base.filter((s) => s.includes('://') && new URL(s).origin === first);
  }

  const requestedScopes = (body: URLSearchParams): string[] | undefined => {
    const raw = body.get('scope');
    return raw === null || raw.trim() === '' ? undefined : raw.trim().split(/\s+/);
  };

  function idToken(email: string, clientId: string): string {
    const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      iss: url,
      aud: clientId,
      sub: createHash('sha256').update(email).digest('hex').slice(0, 20),
      email,
      preferred_username: email,
      tid: options.tenantId ?? FAKE_TENANT_ID,
      name: displayName(email),
      iat: now,
      exp: now + 3600,
    };
    return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
  }

  function json(
    res: ServerResponse,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ): void {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'content-type': 'application/json',
      'cache-control': 'no-store',
      'content-length': Buffer.byteLength(text),
      ...headers,
    });
    res.end(text);
  }

  function oauthError(res: ServerResponse, status: number, error: string, description: string): void {
    json(res, status, { error, error_description: description });
  }

  async function readBody(req: IncomingMessage): Promise<URLSearchParams> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > 64 * 1024) throw new Error('body too large');
      chunks.push(chunk as Buffer);
    }
    const text = Buffer.concat(chunks).toString('utf8');
    if ((req.headers['content-type'] ?? '').includes('application/json') && text.trim() !== '') {
      const obj = JSON.parse(text) as Record<string, unknown>;
      return new URLSearchParams(Object.entries(obj).map(([k, v]): [string, string] => [k, String(v)]));
    }
    return new URLSearchParams(text);
  }

  function clientAuth(req: IncomingMessage, body: URLSearchParams): FakeClientAuth {
    const header = req.headers.authorization;
    if (header?.startsWith('Basic ')) {
      const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      // RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
      const dec = (s: string): string => decodeURIComponent(s.replace(/\+/g, ' '));
      return {
        method: 'basic',
        clientId: dec(colon < 0 ? decoded : decoded.slice(0, colon)),
        clientSecret: colon < 0 ? undefined : dec(decoded.slice(colon + 1)),
      };
    }
    if (body.has('client_secret')) {
      return {
        method: 'body',
        clientId: body.get('client_id') ?? undefined,
        clientSecret: body.get('client_secret') ?? '',
      };
    }
    return { method: 'none', clientId: body.get('client_id') ?? undefined, clientSecret: undefined };
  }

  /**
   * Verifies an RFC 7523 JWT: signature with the configured public key (only the given algorithms),
   * aud = our token URL, exp/nbf (no leeway), a bounded lifetime, and a jti not seen before. Returns
   * the claims, or the reason it was refused.
   */
  async function verifyAssertion(
    jwt: string,
    publicKey: KeyObject,
    expect: { issuer: string; subject?: string; algorithms: string[]; maxLifetimeS: number },
  ): Promise<{ claims: JWTPayload; header: Record<string, unknown> } | { reason: string }> {
    let verified;
    try {
      verified = await jwtVerify(jwt, publicKey, {
        audience: `${url}/token`,
        issuer: expect.issuer,
        algorithms: expect.algorithms,
        ...(expect.subject === undefined ? {} : { subject: expect.subject }),
        requiredClaims: ['exp', 'iat', 'jti'],
      });
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      if (code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED') return { reason: 'Invalid JWT Signature.' };
      if (code === 'ERR_JWT_EXPIRED') return { reason: 'Invalid JWT: Token has expired.' };
      return { reason: `Invalid JWT: ${(err as Error).message}` };
    }
    const { payload, protectedHeader } = verified;
    if ((payload.exp ?? 0) - (payload.iat ?? 0) > expect.maxLifetimeS) {
      return { reason: 'Invalid JWT: Token must be a short-lived token.' };
    }
    const jti = payload.jti ?? '';
    if (seenJti.has(jti)) return { reason: `Invalid JWT: jti ${jti} was already used (replay).` };
    seenJti.add(jti);
    const header = protectedHeader as Record<string, unknown>;
    lastAssertion = { header, claims: payload };
    return { claims: payload, header };
  }

  /** private_key_jwt: a client assertion instead of a secret; undefined when none was sent. */
  async function checkClientAssertion(body: URLSearchParams): Promise<string | undefined | true> {
    const assertion = body.get('client_assertion');
    if (assertion === null) return undefined;
    counts.clientAssertion++;
    if (body.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') {
      return 'client_assertion_type is missing or wrong.';
    }
    const clientId = body.get('client_id') ?? '';
    const registered = options.clientCertificates?.[clientId];
    if (!registered) return `AADSTS700027: no certificate is registered for client ${clientId}.`;
    let header: Record<string, unknown>;
    try {
      header = decodeProtectedHeader(assertion) as Record<string, unknown>;
    } catch {
      return 'client_assertion is not a JWT.';
    }
    if (registered.thumbprintS256 !== undefined && header['x5t#S256'] !== registered.thumbprintS256) {
      return 'AADSTS700027: the x5t#S256 thumbprint names no registered certificate.';
    }
    const result = await verifyAssertion(assertion, registered.publicKey, {
      issuer: clientId,
      subject: clientId,
      algorithms: ['RS256', 'PS256'],
      maxLifetimeS: 600,
    });
    return 'reason' in result ? `AADSTS700027: ${result.reason}` : true;
  }

  async function handleJwtBearer(body: URLSearchParams, res: ServerResponse): Promise<void> {
    const assertion = body.get('assertion') ?? '';
    let issuer: unknown;
    try {
      issuer = JSON.parse(Buffer.from(assertion.split('.')[1] ?? '', 'base64url').toString('utf8')).iss;
    } catch {
      issuer = undefined;
    }
    const account = typeof issuer === 'string' ? options.serviceAccounts?.[issuer] : undefined;
    if (!account) {
      oauthError(res, 400, 'invalid_grant', 'Invalid grant: account not found');
      return;
    }
    const result = await verifyAssertion(assertion, account.publicKey, {
      issuer: issuer as string,
      algorithms: ['RS256'],
      maxLifetimeS: 3600,
    });
    if ('reason' in result) {
      oauthError(res, 400, 'invalid_grant', result.reason);
      return;
    }
    const sub = result.claims.sub;
    const claimedScope = result.claims.scope;
    if (typeof claimedScope !== 'string' || !claimedScope.split(' ').includes(scope())) {
      oauthError(res, 400, 'invalid_scope', 'Invalid OAuth scope or ID token audience provided.');
      return;
    }
    if (account.delegated === false) {
      oauthError(
        res,
        401,
        'unauthorized_client',
        'Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.',
      );
      return;
    }
    if (typeof sub !== 'string' || (account.users !== undefined && !account.users.includes(sub))) {
      oauthError(res, 400, 'invalid_grant', 'Invalid email or User ID');
      return;
    }
    const { accessToken, expiresIn } = mintAccess(sub);
    json(res, 200, {
      token_type: 'Bearer',
      access_token: accessToken,
      expires_in: expiresIn,
      scope: scope(),
    });
  }

  function handleAuthorize(reqUrl: URL, res: ServerResponse): void {
    counts.authorize++;
    const q = reqUrl.searchParams;
    lastAuthorizeRequest = new URLSearchParams(q);
    const redirectUri = q.get('redirect_uri');
    const clientId = q.get('client_id');
    if (!redirectUri || !clientId) {
      json(res, 400, {
        error: 'invalid_request',
        error_description: 'client_id and redirect_uri are required',
      });
      return;
    }
    const target = new URL(redirectUri);
    const state = q.get('state');
    if (state !== null) target.searchParams.set('state', state);
    const challenge = q.get('code_challenge') ?? undefined;
    const challengeMethod = q.get('code_challenge_method') ?? undefined;
    if (q.get('response_type') !== 'code') {
      target.searchParams.set('error', 'unsupported_response_type');
    } else if (challenge !== undefined && challengeMethod !== 'S256') {
      target.searchParams.set('error', 'invalid_request');
      target.searchParams.set('error_description', 'code_challenge_method must be S256');
    } else if (options.denyConsent) {
      target.searchParams.set('error', 'access_denied');
      target.searchParams.set('error_description', 'The user denied the request.');
    } else {
      const email = options.autoConsentEmail ?? q.get('login_hint') ?? 'user@example.com';
      const code = random('code-');
      codes.set(code, {
        email,
        clientId,
        redirectUri,
        challenge,
        challengeMethod,
        scope: q.get('scope') ?? scope(),
        expiresAt: Date.now() + CODE_TTL_MS,
      });
      target.searchParams.set('code', code);
    }
    res.writeHead(302, { location: target.toString(), 'content-length': 0 });
    res.end();
  }

  function tokenResponse(
    email: string,
    clientId: string,
    withRefresh: boolean,
    withIdToken: boolean,
    grant: { requested?: string[] | undefined; consented?: string[] | undefined } = {},
  ) {
    const scopes = tokenScopes(grant.requested, grant.consented);
    const { accessToken, expiresIn } = mintAccess(email, undefined, scopes);
    const body: Record<string, unknown> = {
      token_type: 'Bearer',
      access_token: accessToken,
      expires_in: expiresIn,
      scope: options.multiResource ? scopes.join(' ') : scope(),
    };
    if (withRefresh) body.refresh_token = mintRefresh(email, grant.consented);
    if (withIdToken) body.id_token = idToken(email, clientId);
    return body;
  }

  async function handleToken(req: IncomingMessage, res: ServerResponse): Promise<void> {
    counts.token++;
    const body = await readBody(req);
    lastTokenRequest = body;
    const auth = clientAuth(req, body);
    lastClientAuth = auth;

    const failure = failures.shift();
    if (failure?.status === 'hang' || (failure === undefined && hanging)) {
      hungResponses.add(res);
      res.on('close', () => hungResponses.delete(res));
      return;
    }
    if (options.tokenDelayMs) await new Promise((r) => setTimeout(r, options.tokenDelayMs));
    const grantType = body.get('grant_type');
    if (grantType === 'refresh_token') counts.refresh++;
    else if (grantType === 'authorization_code') counts.authorizationCode++;
    else if (grantType === 'urn:ietf:params:oauth:grant-type:device_code') counts.deviceCode++;
    else if (grantType === 'client_credentials') counts.clientCredentials++;
    else if (grantType === 'urn:ietf:params:oauth:grant-type:jwt-bearer') counts.jwtBearer++;
    if (failure !== undefined) {
      const status = failure.status as number;
      const retryAfter = failure.retryAfter ?? (status === 429 || status === 503 ? 1 : undefined);
      const extra: Record<string, string> =
        retryAfter === undefined ? {} : { 'retry-after': String(retryAfter) };
      json(res, status, { error: failure.error, error_description: `fake failure ${status}` }, extra);
      return;
    }
    if (grantType === 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
      // The assertion is the whole credential (Google): no client id or secret.
      await handleJwtBearer(body, res);
      return;
    }
    if (!auth.clientId) {
      oauthError(res, 401, 'invalid_client', 'client_id missing');
      return;
    }
    const assertion = await checkClientAssertion(body);
    if (typeof assertion === 'string') {
      oauthError(res, 401, 'invalid_client', assertion);
      return;
    }
    if (assertion === true) {
      auth.method = 'assertion';
      lastClientAuth = auth;
    }
    if (auth.method === 'body' && auth.clientSecret === '') {
      oauthError(
        res,
        401,
        'invalid_client',
        "AADSTS700025: Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
      );
      return;
    }

    const asked = requestedScopes(body);
    if (options.multiResource && asked && resourcesOf(asked).length > 1) {
      oauthError(
        res,
        400,
        'invalid_scope',
        'AADSTS28000: Provided value for the input parameter scope is not valid because it contains more than one resource.',
      );
      return;
    }

    switch (grantType) {
      case 'authorization_code': {
        const code = body.get('code') ?? '';
        const grant = codes.get(code);
        codes.delete(code);
        if (!grant || grant.expiresAt < Date.now()) {
          oauthError(res, 400, 'invalid_grant', 'The authorization code is invalid or expired.');
          return;
        }
        if (grant.clientId !== auth.clientId) {
          oauthError(res, 400, 'invalid_grant', 'The code was issued to another client.');
          return;
        }
        if (body.get('redirect_uri') !== grant.redirectUri) {
          oauthError(res, 400, 'invalid_grant', 'redirect_uri does not match the authorization request.');
          return;
        }
        const verifier = body.get('code_verifier');
        if (grant.challenge !== undefined) {
          if (!verifier) {
            oauthError(res, 400, 'invalid_grant', 'code_verifier required.');
            return;
          }
          const computed = createHash('sha256').update(verifier).digest('base64url');
          if (computed !== grant.challenge) {
            oauthError(res, 400, 'invalid_grant', 'PKCE verification failed.');
            return;
          }
        } else if (verifier) {
          oauthError(res, 400, 'invalid_grant', 'code_verifier sent but no code_challenge was.');
          return;
        }
        json(
          res,
          200,
          tokenResponse(grant.email, grant.clientId, true, true, {
            requested: asked,
            consented: grant.scope.split(' '),
          }),
        );
        return;
      }
      case 'refresh_token': {
        const presented = body.get('refresh_token') ?? '';
        const email = refreshTokens.get(presented);
        if (retired.has(presented)) counts.refreshReuse++;
        if (email === undefined) {
          oauthError(res, 400, 'invalid_grant', 'Token has been expired or revoked.');
          return;
        }
        const grantScopes = consented.get(presented);
        if (options.multiResource && asked && grantScopes) {
          const free = new Set(['offline_access', 'openid', 'email', 'profile']);
          const held = new Set(grantScopes.map((x) => x.toLowerCase()));
          const missing = asked.filter((x) => !free.has(x) && !held.has(x.toLowerCase()));
          if (missing.length > 0) {
            oauthError(
              res,
              400,
              'invalid_grant',
              `AADSTS65001: The user or administrator has not consented to use the application with ID '${auth.clientId}'. Send an interactive authorization request for this user and resource.`,
            );
            return;
          }
        }
        const response = tokenResponse(email, auth.clientId, options.rotateRefreshTokens === true, false, {
          requested: asked,
          consented: grantScopes,
        });
        if (options.rotateRefreshTokens) {
          refreshTokens.delete(presented);
          consented.delete(presented);
          retired.add(presented);
        }
        if (options.refreshAnswerDelayMs) {
          await new Promise((r) => setTimeout(r, options.refreshAnswerDelayMs));
        }
        json(res, 200, response);
        return;
      }
      case 'urn:ietf:params:oauth:grant-type:device_code': {
        const deviceCode = body.get('device_code') ?? '';
        const grant = deviceGrants.get(deviceCode);
        if (!grant || grant.clientId !== auth.clientId) {
          // Microsoft's answer for an unknown device code.
          oauthError(res, 400, 'bad_verification_code', 'The device code is not known.');
          return;
        }
        if (grant.outcome === 'expired' && grant.pendingLeft <= 0) {
          deviceGrants.delete(deviceCode);
          oauthError(res, 400, 'expired_token', 'The device code has expired.');
          return;
        }
        if (grant.expiresAt < Date.now()) {
          deviceGrants.delete(deviceCode);
          oauthError(res, 400, 'expired_token', 'The device code has expired.');
          return;
        }
        if (grant.outcome === 'slow_down-then-approve' && !grant.slowDownSent) {
          grant.slowDownSent = true;
          oauthError(res, 400, 'slow_down', 'Polling too fast.');
          return;
        }
        if (grant.pendingLeft > 0) {
          grant.pendingLeft--;
          oauthError(res, 400, 'authorization_pending', 'The user has not yet finished signing in.');
          return;
        }
        deviceGrants.delete(deviceCode);
        if (grant.outcome === 'declined') {
          oauthError(res, 400, 'authorization_declined', 'The user declined the request.');
          return;
        }
        json(res, 200, tokenResponse(grant.email, grant.clientId, true, true));
        return;
      }
      case 'client_credentials': {
        if (!auth.clientSecret && auth.method !== 'assertion') {
          oauthError(res, 401, 'invalid_client', 'client_credentials needs a confidential client.');
          return;
        }
        const { accessToken, expiresIn } = mintAccess(
          `app:${auth.clientId}`,
          undefined,
          asked ?? scope().split(' '),
        );
        json(res, 200, { token_type: 'Bearer', access_token: accessToken, expires_in: expiresIn });
        return;
      }
      default:
        oauthError(
          res,
          400,
          'unsupported_grant_type',
          `grant_type ${grantType ?? '(none)'} is not supported.`,
        );
    }
  }

  async function handleDeviceCode(req: IncomingMessage, res: ServerResponse): Promise<void> {
    counts.deviceAuthorization++;
    const body = await readBody(req);
    const auth = clientAuth(req, body);
    if (!auth.clientId) {
      oauthError(res, 400, 'invalid_client', 'client_id missing');
      return;
    }
    const script = nextDeviceScript ?? { pendingPolls: 0, outcome: 'approve' as const };
    nextDeviceScript = undefined;
    const deviceCode = random('dc-');
    const userCode = randomBytes(4).toString('hex').toUpperCase();
    const expiresIn = options.deviceExpiresSeconds ?? 900;
    deviceGrants.set(deviceCode, {
      pendingLeft: script.pendingPolls,
      outcome: script.outcome,
      slowDownSent: false,
      email: script.email ?? options.autoConsentEmail ?? 'user@example.com',
      clientId: auth.clientId,
      expiresAt: Date.now() + expiresIn * 1000,
    });
    json(res, 200, {
      device_code: deviceCode,
      user_code: userCode,
      verification_uri: verificationUrl,
      expires_in: expiresIn,
      interval: options.deviceIntervalSeconds ?? 1,
      message: `To sign in, open ${verificationUrl} and enter the code ${userCode}.`,
    });
  }

  function bearer(req: IncomingMessage): string | undefined {
    const h = req.headers.authorization;
    return h?.startsWith('Bearer ') ? h.slice(7).trim() : undefined;
  }

  function checkAccessToken(token: string): string | undefined {
    const entry = accessTokens.get(token);
    if (!entry || entry.expiresAt <= Date.now()) return undefined;
    return entry.owner;
  }

  function describeAccessToken(token: string): FakeAccessToken | undefined {
    const entry = accessTokens.get(token);
    if (!entry || entry.expiresAt <= Date.now()) return undefined;
    return { owner: entry.owner, scopes: [...entry.scopes], audience: entry.audience };
  }

  function handleUserinfo(req: IncomingMessage, res: ServerResponse): void {
    counts.userinfo++;
    const owner = checkAccessToken(bearer(req) ?? '');
    if (!owner) {
      oauthError(res, 401, 'invalid_token', 'The access token is invalid or expired.');
      return;
    }
    json(res, 200, { email: owner, name: displayName(owner), email_verified: true });
  }

  function handleTokeninfo(reqUrl: URL, req: IncomingMessage, res: ServerResponse): void {
    counts.tokeninfo++;
    const token = reqUrl.searchParams.get('access_token') ?? bearer(req) ?? '';
    const entry = accessTokens.get(token);
    if (!entry || entry.expiresAt <= Date.now()) {
      oauthError(res, 400, 'invalid_token', 'Invalid Value');
      return;
    }
    json(res, 200, {
      email: entry.owner,
      scope: scope(),
      expires_in: Math.max(0, Math.floor((entry.expiresAt - Date.now()) / 1000)),
    });
  }

  const server = createServer((req, res) => {
    const reqUrl = new URL(req.url ?? '/', 'http://127.0.0.1');
    const route = `${req.method ?? 'GET'} ${reqUrl.pathname}`;
    const fail = (err: unknown): void => {
      if (!res.headersSent) json(res, 400, { error: 'invalid_request', error_description: String(err) });
      else res.destroy();
    };
    switch (route) {
      case 'GET /authorize':
        handleAuthorize(reqUrl, res);
        return;
      case 'POST /token':
        handleToken(req, res).catch(fail);
        return;
      case 'POST /devicecode':
        handleDeviceCode(req, res).catch(fail);
        return;
      case 'GET /userinfo':
        handleUserinfo(req, res);
        return;
      case 'GET /tokeninfo':
      case 'POST /tokeninfo':
        handleTokeninfo(reqUrl, req, res);
        return;
      case 'GET /device':
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('Enter the code shown on your device.');
        return;
      default:
        json(res, 404, { error: 'not_found' });
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  const verificationUrl = `${url}/device`;

  return {
    url,
    authorizeUrl: `${url}/authorize`,
    tokenUrl: `${url}/token`,
    deviceCodeUrl: `${url}/devicecode`,
    userinfoUrl: `${url}/userinfo`,
    tokeninfoUrl: `${url}/tokeninfo`,
    verificationUrl,
    get options() {
      return options;
    },
    set options(value: FakeAuthOptions) {
      for (const key of Object.keys(options)) delete (options as Record<string, unknown>)[key];
      Object.assign(options, value);
    },
    issueGrant(email, opts) {
      const refreshToken = mintRefresh(email, opts?.scopes);
      const { accessToken, expiresIn } = mintAccess(
        email,
        opts?.accessTokenTtlSeconds,
        tokenScopes(undefined, opts?.scopes),
      );
      return { refreshToken, accessToken, expiresAt: accessTokens.get(accessToken)?.expiresAt ?? expiresIn };
    },
    checkAccessToken,
    describeAccessToken,
    isRefreshTokenValid(token) {
      return refreshTokens.has(token);
    },
    revoke(email) {
      for (const [token, owner] of refreshTokens) if (owner === email) refreshTokens.delete(token);
      for (const [token, entry] of accessTokens) if (entry.owner === email) accessTokens.delete(token);
    },
    failNext(n, status = 500, error = 'temporarily_unavailable', retryAfterSeconds) {
      for (let i = 0; i < n; i++)
        failures.push(
          retryAfterSeconds === undefined
            ? { status, error }
            : { status, error, retryAfter: retryAfterSeconds },
        );
    },
    clearFailures() {
      failures.length = 0;
    },
    setHanging(on) {
      hanging = on;
      if (!on) {
        for (const res of hungResponses) res.destroy();
        hungResponses.clear();
      }
    },
    deviceScript(pendingPolls, outcome = 'approve', email) {
      nextDeviceScript = { pendingPolls, outcome, ...(email === undefined ? {} : { email }) };
    },
    counts,
    get lastTokenRequest() {
      return lastTokenRequest;
    },
    get lastClientAuth() {
      return lastClientAuth;
    },
    get lastAuthorizeRequest() {
      return lastAuthorizeRequest;
    },
    get lastAssertion() {
      return lastAssertion;
    },
    close() {
      for (const res of hungResponses) res.destroy();
      hungResponses.clear();
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

function displayName(email: string): string {
  const local = email.split('@')[0] ?? email;
  return local
    .split(/[._-]+/)
    .filter(Boolean)
    .map((p) => p[0]!.toUpperCase() + p.slice(1))
    .join(' ');
}

/**
 * A ConnectionConfig pointing at the fake (provider 'custom', confidential client, Google-like scope).
 * Override what a test needs: `{ clientSecret: undefined }` for a public client, `{ provider: 'microsoft' }`.
 */
export function fakeConnection(
  fake: FakeAuthServer,
  overrides: Partial<ConnectionConfig> = {},
): ConnectionConfig {
  return {
    name: 'fake',
    provider: 'custom',
    clientId: 'test-client',
    clientSecret: 'test-secret',
    grant: 'authorization_code',
    authorizeUrl: fake.authorizeUrl,
    tokenUrl: fake.tokenUrl,
    deviceCodeUrl: fake.deviceCodeUrl,
    userinfoUrl: fake.userinfoUrl,
    scopes: [fake.options.scope ?? 'https://mail.google.com/'],
    authorizeParams: {},
    sasl: 'xoauth2',
    allowedIdentities: [],
    ...overrides,
  };
}
