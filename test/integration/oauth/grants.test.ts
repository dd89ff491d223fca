import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ResolvedAccount } from '../../../src/config/types.js';
import { isProxyError } from '../../../src/errors.js';
import {
  checkIdentity,
  clientCredentialsToken,
  codeChallengeS256,
  createAuthorizationRequest,
  DeviceFlowError,
  exchangeAuthorizationCode,
  identityFromTokenSet,
  IdentityMismatchError,
  pollDeviceAuthorization,
  refreshAccessToken,
  startDeviceAuthorization,
  TokenEndpointError,
} from '../../../src/oauth/grants/index.js';
import { fakeConnection, startFakeAuthServer, type FakeAuthServer } from '../../helpers/fake-auth-server.js';

let fake: FakeAuthServer;
beforeEach(async () => {
  fake = await startFakeAuthServer();
});
afterEach(async () => {
  await fake.close();
});

const REDIRECT = 'http://127.0.0.1:53682/';

/** Plays the browser: follows the authorization URL to the fake's redirect, returns it. */
async function consentAt(url: string): Promise<URL> {
  const res = await fetch(url, { redirect: 'manual' });
  expect(res.status).toBe(302);
  return new URL(res.headers.get('location')!);
}

function account(email: string, connection = fakeConnection(fake)): ResolvedAccount {
  return { id: email, username: email, email, connection, entry: email };
}

describe('authorization code with PKCE', () => {
  it('builds the URL with S256 challenge, state, scopes and extra params, and exchanges the code', async () => {
    const connection = fakeConnection(fake, {
      authorizeParams: { access_type: 'offline', prompt: 'consent' },
      scopes: ['https://mail.google.com/', 'openid', 'email'],
    });
    const req = createAuthorizationRequest(connection, {
      redirectUri: REDIRECT,
      loginHint: 'alice@example.com',
    });
    const url = new URL(req.url);
    expect(url.origin + url.pathname).toBe(fake.authorizeUrl);
    expect(Object.fromEntries(url.searchParams)).toMatchObject({
      response_type: 'code',
      client_id: 'test-client',
      redirect_uri: REDIRECT,
      state: req.state,
      code_challenge: codeChallengeS256(req.codeVerifier),
      code_challenge_method: 'S256',
      login_hint: 'alice@example.com',
      access_type: 'offline',
      prompt: 'consent',
      scope: 'https://mail.google.com/ openid email',
    });
    expect(req.url).not.toContain(req.codeVerifier);
    expect(req.codeVerifier).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(req.state.length).toBeGreaterThanOrEqual(32);

    const back = await consentAt(req.url);
    expect(back.searchParams.get('state')).toBe(req.state);
    const set = await exchangeAuthorizationCode(connection, {
      code: back.searchParams.get('code')!,
      redirectUri: REDIRECT,
      codeVerifier: req.codeVerifier,
    });
    expect(fake.checkAccessToken(set.accessToken)).toBe('alice@example.com');
    expect(set.refreshToken).toEqual(expect.any(String));
    expect(set.expiresAt).toBeGreaterThan(Date.now() + 3500_000);
    expect(fake.lastTokenRequest?.get('code_verifier')).toBe(req.codeVerifier);
    expect(await identityFromTokenSet(connection, set)).toEqual({
      email: 'alice@example.com',
      name: 'Alice',
    });
  });

  it('the fake refuses a wrong verifier (so the round trip above proves S256)', async () => {
    const connection = fakeConnection(fake);
    const req = createAuthorizationRequest(connection, { redirectUri: REDIRECT });
    const back = await consentAt(req.url);
    const other = createAuthorizationRequest(connection, { redirectUri: REDIRECT });
    const err = await exchangeAuthorizationCode(connection, {
      code: back.searchParams.get('code')!,
      redirectUri: REDIRECT,
      codeVerifier: other.codeVerifier,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TokenEndpointError);
    expect(err).toMatchObject({ kind: 'permanent', oauthError: 'invalid_grant', status: 400 });
  });

  it('keeps query parameters written into the authorize URL', () => {
    const connection = fakeConnection(fake, { authorizeUrl: `${fake.authorizeUrl}?domain_hint=example.com` });
    const url = new URL(createAuthorizationRequest(connection, { redirectUri: REDIRECT }).url);
    expect(url.pathname).toBe('/authorize');
    expect(url.searchParams.get('domain_hint')).toBe('example.com');
    expect(url.searchParams.get('code_challenge_method')).toBe('S256');
  });

  it('a public client sends no client_secret at all', async () => {
    const connection = fakeConnection(fake, { clientSecret: undefined });
    const req = createAuthorizationRequest(connection, { redirectUri: REDIRECT });
    const back = await consentAt(req.url);
    const set = await exchangeAuthorizationCode(connection, {
      code: back.searchParams.get('code')!,
      redirectUri: REDIRECT,
      codeVerifier: req.codeVerifier,
    });
    expect(fake.lastTokenRequest?.has('client_secret')).toBe(false);
    expect(fake.lastClientAuth).toEqual({ method: 'none', clientId: 'test-client', clientSecret: undefined });

    await refreshAccessToken(connection, set.refreshToken!);
    expect(fake.lastTokenRequest?.get('grant_type')).toBe('refresh_token');
    expect(fake.lastTokenRequest?.has('client_secret')).toBe(false);
    expect(fake.lastClientAuth?.method).toBe('none');
  });

  it('a confidential client authenticates with its secret in the body', async () => {
    const grant = fake.issueGrant('x@example.com');
    await refreshAccessToken(fakeConnection(fake), grant.refreshToken);
    expect(fake.lastClientAuth).toEqual({
      method: 'body',
      clientId: 'test-client',
      clientSecret: 'test-secret',
    });
  });
});

describe('identity', () => {
  it('falls back to userinfo when there is no id_token', async () => {
    const grant = fake.issueGrant('bob.jones@example.com');
    const who = await identityFromTokenSet(fakeConnection(fake), {
      accessToken: grant.accessToken,
      expiresAt: grant.expiresAt,
      scopes: [],
    });
    expect(who).toEqual({ email: 'bob.jones@example.com', name: 'Bob Jones' });
    expect(fake.counts.userinfo).toBe(1);
  });

  it('says what to configure when it cannot tell who signed in', async () => {
    const err = await identityFromTokenSet(fakeConnection(fake, { userinfoUrl: undefined }), {
      accessToken: 'x',
      expiresAt: 0,
      scopes: [],
    }).catch((e: unknown) => e);
    expect(isProxyError(err, 'needs-consent')).toBe(true);
    expect((err as Error).message).toContain('openid email');
  });

  it('prefers preferred_username over the unverified email claim for Microsoft', async () => {
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const idToken = `${b64({ alg: 'none' })}.${b64({ email: 'victim@example.com', preferred_username: 'Mallory@Evil.example' })}.`;
    const set = { accessToken: 'x', expiresAt: 0, scopes: [], idToken };
    expect((await identityFromTokenSet(fakeConnection(fake, { provider: 'microsoft' }), set)).email).toBe(
      'mallory@evil.example',
    );
    expect((await identityFromTokenSet(fakeConnection(fake, { provider: 'google' }), set)).email).toBe(
      'victim@example.com',
    );
    const unverified = `${b64({ alg: 'none' })}.${b64({ email: 'v@example.com', email_verified: false })}.`;
    const err = await identityFromTokenSet(
      fakeConnection(fake, { provider: 'google', userinfoUrl: undefined }),
      {
        ...set,
        idToken: unverified,
      },
    ).catch((e: unknown) => e);
    expect(isProxyError(err, 'needs-consent')).toBe(true);
  });

  it('checkIdentity accepts the mailbox or an allowed identity, case-insensitively, and names both on mismatch', () => {
    const acct = account(
      'Alice@Example.com',
      fakeConnection(fake, { allowedIdentities: ['Boss@Example.com'] }),
    );
    expect(() => checkIdentity(acct, { email: 'alice@example.COM' })).not.toThrow();
    expect(() => checkIdentity(acct, { email: 'boss@example.com' })).not.toThrow();
    let err: unknown;
    try {
      checkIdentity(acct, { email: 'eve@example.com' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(IdentityMismatchError);
    expect((err as Error).message).toContain('eve@example.com');
    expect((err as Error).message).toContain('alice@example.com');
    expect(isProxyError(err, 'needs-consent')).toBe(true);
  });
});

describe('refresh', () => {
  it('Google style: a response without refresh_token keeps the old one (simple-oauth2 5.1 bug)', async () => {
    const grant = fake.issueGrant('g@example.com');
    const set = await refreshAccessToken(fakeConnection(fake), grant.refreshToken);
    // The fake sent no refresh_token; without the workaround this is undefined.
    expect(set.refreshToken).toBe(grant.refreshToken);
    expect(fake.checkAccessToken(set.accessToken)).toBe('g@example.com');
    expect(fake.lastTokenRequest?.has('scope')).toBe(false);
  });

  it('Microsoft style: the rotated refresh token is returned, and scopes are sent again', async () => {
    fake.options.rotateRefreshTokens = true;
    const grant = fake.issueGrant('m@example.com');
    const connection = fakeConnection(fake, { provider: 'microsoft', scopes: ['a', 'offline_access'] });
    const set = await refreshAccessToken(connection, grant.refreshToken);
    expect(set.refreshToken).not.toBe(grant.refreshToken);
    expect(fake.isRefreshTokenValid(set.refreshToken!)).toBe(true);
    expect(fake.lastTokenRequest?.get('scope')).toBe('a offline_access');
  });

  it('classifies failures: 500, 429, 408, hang → transient; invalid_grant → permanent', async () => {
    const grant = fake.issueGrant('c@example.com');
    const connection = fakeConnection(fake);
    for (const status of [500, 503, 429, 408]) {
      fake.failNext(1, status);
      await expect(refreshAccessToken(connection, grant.refreshToken)).rejects.toMatchObject({
        kind: 'transient',
        status,
      });
    }
    fake.failNext(1, 'hang');
    const started = Date.now();
    await expect(
      refreshAccessToken(connection, grant.refreshToken, { timeoutMs: 300 }),
    ).rejects.toMatchObject({
      kind: 'transient',
    });
    expect(Date.now() - started).toBeLessThan(10_000);
    // Same for the fetch path (public clients).
    fake.failNext(1, 'hang');
    await expect(
      refreshAccessToken(fakeConnection(fake, { clientSecret: undefined }), grant.refreshToken, {
        timeoutMs: 300,
      }),
    ).rejects.toMatchObject({ kind: 'transient' });
    fake.revoke('c@example.com');
    await expect(refreshAccessToken(connection, grant.refreshToken)).rejects.toMatchObject({
      kind: 'permanent',
      oauthError: 'invalid_grant',
    });
  });

  it('classifies a refused connection as transient', async () => {
    const connection = fakeConnection(fake, { tokenUrl: 'http://127.0.0.1:1/token' });
    await expect(refreshAccessToken(connection, 'x')).rejects.toMatchObject({ kind: 'transient' });
    await expect(
      refreshAccessToken({ ...connection, clientSecret: undefined }, 'x', { timeoutMs: 5000 }),
    ).rejects.toMatchObject({ kind: 'transient' });
  });
});

describe('client credentials', () => {
  it('gets an app-only token without a refresh token', async () => {
    const connection = fakeConnection(fake, {
      grant: 'client_credentials',
      scopes: ['https://outlook.office365.com/.default'],
    });
    const set = await clientCredentialsToken(connection);
    expect(set.refreshToken).toBeUndefined();
    expect(fake.checkAccessToken(set.accessToken)).toBe('app:test-client');
    expect(fake.lastTokenRequest?.get('scope')).toBe('https://outlook.office365.com/.default');
    expect(fake.counts.clientCredentials).toBe(1);
  });

  it('refuses a public client', async () => {
    const err = await clientCredentialsToken(fakeConnection(fake, { clientSecret: undefined })).catch(
      (e: unknown) => e,
    );
    expect(isProxyError(err, 'config')).toBe(true);
  });
});

describe('device code', () => {
  function fastClock() {
    let now = Date.now();
    const sleeps: number[] = [];
    return {
      now: () => now,
      sleep: async (ms: number) => {
        sleeps.push(ms);
        now += ms;
      },
      sleeps,
    };
  }

  it('polls through authorization_pending to tokens at the server interval', async () => {
    const connection = fakeConnection(fake, { provider: 'microsoft', clientSecret: undefined });
    fake.options.deviceIntervalSeconds = 3;
    fake.deviceScript(3, 'approve', 'dev@example.com');
    const clock = fastClock();
    const auth = await startDeviceAuthorization(connection, clock);
    expect(auth).toMatchObject({ verificationUri: fake.verificationUrl, intervalMs: 3000 });
    expect(auth.userCode).toMatch(/^[0-9A-F]{8}$/);
    const pending: string[] = [];
    const set = await pollDeviceAuthorization(connection, auth, { ...clock, onPoll: (a) => pending.push(a) });
    expect(fake.checkAccessToken(set.accessToken)).toBe('dev@example.com');
    expect(set.refreshToken).toEqual(expect.any(String));
    expect(pending).toEqual(['authorization_pending', 'authorization_pending', 'authorization_pending']);
    expect(clock.sleeps).toEqual([3000, 3000, 3000, 3000]);
    expect(fake.counts.deviceCode).toBe(4);
    expect(fake.lastTokenRequest?.has('client_secret')).toBe(false);
    expect((await identityFromTokenSet(connection, set)).email).toBe('dev@example.com');
  });

  it('slow_down adds 5 seconds to the interval for good', async () => {
    const connection = fakeConnection(fake, { clientSecret: undefined });
    fake.deviceScript(2, 'slow_down-then-approve');
    const clock = fastClock();
    const auth = await startDeviceAuthorization(connection, clock);
    await pollDeviceAuthorization(connection, auth, clock);
    expect(clock.sleeps).toEqual([1000, 6000, 6000, 6000]);
  });

  it('declined and expired end the flow with a clear reason', async () => {
    const connection = fakeConnection(fake, { clientSecret: undefined });
    for (const [outcome, reason] of [
      ['declined', 'authorization_declined'],
      ['expired', 'expired_token'],
    ] as const) {
      fake.deviceScript(1, outcome);
      const clock = fastClock();
      const auth = await startDeviceAuthorization(connection, clock);
      const err = await pollDeviceAuthorization(connection, auth, clock).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DeviceFlowError);
      expect(err).toMatchObject({ reason, code: 'needs-consent' });
    }
  });

  it('bad_verification_code ends the flow; the code expiring on our clock too', async () => {
    const connection = fakeConnection(fake, { clientSecret: undefined });
    const clock = fastClock();
    const bogus = {
      deviceCode: 'nope',
      userCode: 'X',
      verificationUri: 'x',
      expiresAt: clock.now() + 60_000,
      intervalMs: 1000,
    };
    await expect(pollDeviceAuthorization(connection, bogus, clock)).rejects.toMatchObject({
      reason: 'bad_verification_code',
    });
    fake.deviceScript(1000);
    const auth = await startDeviceAuthorization(connection, clock);
    const short = { ...auth, expiresAt: clock.now() + 5000 };
    await expect(pollDeviceAuthorization(connection, short, clock)).rejects.toMatchObject({
      reason: 'expired_token',
    });
    expect(fake.counts.deviceCode).toBeLessThanOrEqual(6);
  });

  it('keeps polling through a transient 500', async () => {
    const connection = fakeConnection(fake, { clientSecret: undefined });
    fake.deviceScript(0);
    const clock = fastClock();
    const auth = await startDeviceAuthorization(connection, clock);
    fake.failNext(2, 500);
    const answers: string[] = [];
    await pollDeviceAuthorization(connection, auth, { ...clock, onPoll: (a) => answers.push(a) });
    expect(answers).toEqual(['transient-error', 'transient-error']);
  });

  it('a connection without deviceCodeUrl says so', async () => {
    const err = await startDeviceAuthorization(fakeConnection(fake, { deviceCodeUrl: undefined })).catch(
      (e: unknown) => e,
    );
    expect(isProxyError(err, 'config')).toBe(true);
  });
});
