import { createHash, randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startFakeAuthServer, type FakeAuthServer } from '../../helpers/fake-auth-server.js';

let fake: FakeAuthServer;
beforeEach(async () => {
  fake = await startFakeAuthServer();
});
afterEach(async () => {
  await fake.close();
});

async function postToken(form: Record<string, string>, headers: Record<string, string> = {}) {
  const res = await fetch(fake.tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function authorize(params: Record<string, string>): Promise<URL> {
  const url = new URL(fake.authorizeUrl);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  const res = await fetch(url, { redirect: 'manual' });
  expect(res.status).toBe(302);
  return new URL(res.headers.get('location')!);
}

function pkce() {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

describe('fake auth server', () => {
  it('listens on 127.0.0.1 with the documented endpoints', () => {
    expect(fake.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(fake.tokenUrl).toBe(`${fake.url}/token`);
    expect(fake.authorizeUrl).toBe(`${fake.url}/authorize`);
    expect(fake.deviceCodeUrl).toBe(`${fake.url}/devicecode`);
  });

  it('runs an authorization code grant with PKCE S256 and returns an id_token', async () => {
    const { verifier, challenge } = pkce();
    const redirect = 'http://127.0.0.1:9/cb';
    const location = await authorize({
      response_type: 'code',
      client_id: 'cid',
      redirect_uri: redirect,
      state: 'st',
      code_challenge: challenge,
      code_challenge_method: 'S256',
      login_hint: 'alice@example.com',
    });
    expect(location.origin + location.pathname).toBe(redirect);
    expect(location.searchParams.get('state')).toBe('st');
    const code = location.searchParams.get('code')!;

    const bad = await postToken({
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirect,
      client_id: 'cid',
      client_secret: 's',
      code_verifier: 'wrong-verifier-wrong-verifier-wrong-verifier',
    });
    expect(bad).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });

    // The code is single use: after a failed attempt the user must consent again.
    const location2 = await authorize({
      response_type: 'code',
      client_id: 'cid',
      redirect_uri: redirect,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      login_hint: 'alice@example.com',
    });
    const ok = await postToken({
      grant_type: 'authorization_code',
      code: location2.searchParams.get('code')!,
      redirect_uri: redirect,
      client_id: 'cid',
      client_secret: 's',
      code_verifier: verifier,
    });
    expect(ok.status).toBe(200);
    expect(ok.body.refresh_token).toEqual(expect.any(String));
    const payload = JSON.parse(Buffer.from(String(ok.body.id_token).split('.')[1]!, 'base64url').toString());
    expect(payload.email).toBe('alice@example.com');
    expect(fake.checkAccessToken(String(ok.body.access_token))).toBe('alice@example.com');
    expect(fake.counts.authorizationCode).toBe(2);
  });

  it('redirects with access_denied when consent is denied', async () => {
    fake.options.denyConsent = true;
    const location = await authorize({
      response_type: 'code',
      client_id: 'c',
      redirect_uri: 'http://x/cb',
      state: 's',
    });
    expect(location.searchParams.get('error')).toBe('access_denied');
    expect(location.searchParams.get('state')).toBe('s');
  });

  it('refreshes Google style (no new refresh token) and Microsoft style (rotation)', async () => {
    const grant = fake.issueGrant('bob@example.com');
    const google = await postToken({
      grant_type: 'refresh_token',
      refresh_token: grant.refreshToken,
      client_id: 'c',
      client_secret: 's',
    });
    expect(google.status).toBe(200);
    expect(google.body.refresh_token).toBeUndefined();

    fake.options.rotateRefreshTokens = true;
    const ms = await postToken({
      grant_type: 'refresh_token',
      refresh_token: grant.refreshToken,
      client_id: 'c',
      client_secret: 's',
    });
    expect(ms.body.refresh_token).toEqual(expect.any(String));
    expect(fake.isRefreshTokenValid(grant.refreshToken)).toBe(false);
    expect(fake.isRefreshTokenValid(String(ms.body.refresh_token))).toBe(true);
    expect(fake.counts.refresh).toBe(2);
  });

  it('revoke makes the next refresh invalid_grant and kills access tokens', async () => {
    const grant = fake.issueGrant('carol@example.com');
    expect(fake.checkAccessToken(grant.accessToken)).toBe('carol@example.com');
    fake.revoke('carol@example.com');
    expect(fake.checkAccessToken(grant.accessToken)).toBeUndefined();
    const res = await postToken({
      grant_type: 'refresh_token',
      refresh_token: grant.refreshToken,
      client_id: 'c',
      client_secret: 's',
    });
    expect(res).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
  });

  it('failNext fails exactly n requests, then serves again', async () => {
    const grant = fake.issueGrant('d@example.com');
    fake.failNext(2, 503);
    const form = {
      grant_type: 'refresh_token',
      refresh_token: grant.refreshToken,
      client_id: 'c',
      client_secret: 's',
    };
    expect((await postToken(form)).status).toBe(503);
    expect((await postToken(form)).status).toBe(503);
    expect((await postToken(form)).status).toBe(200);
  });

  it('hangs token requests until turned off', async () => {
    fake.setHanging(true);
    const grant = fake.issueGrant('e@example.com');
    const form = {
      grant_type: 'refresh_token',
      refresh_token: grant.refreshToken,
      client_id: 'c',
      client_secret: 's',
    };
    await expect(
      fetch(fake.tokenUrl, {
        method: 'POST',
        body: new URLSearchParams(form),
        signal: AbortSignal.timeout(300),
      }),
    ).rejects.toThrow();
    fake.setHanging(false);
    expect((await postToken(form)).status).toBe(200);
  });

  it('accepts Basic client auth and refuses an empty client_secret like Microsoft', async () => {
    const grant = fake.issueGrant('f@example.com');
    const basic = await postToken(
      { grant_type: 'refresh_token', refresh_token: grant.refreshToken },
      { authorization: `Basic ${Buffer.from('cid:sec').toString('base64')}` },
    );
    expect(basic.status).toBe(200);
    expect(fake.lastClientAuth).toEqual({ method: 'basic', clientId: 'cid', clientSecret: 'sec' });

    const empty = await postToken({
      grant_type: 'refresh_token',
      refresh_token: grant.refreshToken,
      client_id: 'c',
      client_secret: '',
    });
    expect(empty).toMatchObject({ status: 401, body: { error: 'invalid_client' } });

    const pub = await postToken({
      grant_type: 'refresh_token',
      refresh_token: grant.refreshToken,
      client_id: 'c',
    });
    expect(pub.status).toBe(200);
    expect(fake.lastTokenRequest?.has('client_secret')).toBe(false);
    expect(fake.lastClientAuth?.method).toBe('none');
  });

  it('scripts the device flow', async () => {
    fake.deviceScript(2, 'slow_down-then-approve', 'g@example.com');
    const res = await fetch(fake.deviceCodeUrl, {
      method: 'POST',
      body: new URLSearchParams({ client_id: 'c', scope: 'x' }),
    });
    const dc = (await res.json()) as { device_code: string; interval: number; verification_uri: string };
    expect(dc.interval).toBe(1);
    const poll = () =>
      postToken({
        grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
        device_code: dc.device_code,
        client_id: 'c',
      });
    expect((await poll()).body.error).toBe('slow_down');
    expect((await poll()).body.error).toBe('authorization_pending');
    expect((await poll()).body.error).toBe('authorization_pending');
    const done = await poll();
    expect(done.status).toBe(200);
    expect(fake.checkAccessToken(String(done.body.access_token))).toBe('g@example.com');
    expect((await poll()).body.error).toBe('bad_verification_code');
    expect(fake.counts.deviceCode).toBe(5);

    for (const [outcome, error] of [
      ['declined', 'authorization_declined'],
      ['expired', 'expired_token'],
    ] as const) {
      fake.deviceScript(1, outcome);
      const r = await fetch(fake.deviceCodeUrl, {
        method: 'POST',
        body: new URLSearchParams({ client_id: 'c' }),
      });
      const code = ((await r.json()) as { device_code: string }).device_code;
      const p = () =>
        postToken({
          grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
          device_code: code,
          client_id: 'c',
        });
      expect((await p()).body.error).toBe('authorization_pending');
      expect((await p()).body.error).toBe(error);
    }
  });

  it('issues client credentials tokens without a refresh token', async () => {
    const res = await postToken({
      grant_type: 'client_credentials',
      client_id: 'app',
      client_secret: 's',
      scope: 'x',
    });
    expect(res.status).toBe(200);
    expect(res.body.refresh_token).toBeUndefined();
    expect(fake.checkAccessToken(String(res.body.access_token))).toBe('app:app');
    expect(fake.counts.clientCredentials).toBe(1);
  });

  it('answers userinfo and tokeninfo', async () => {
    const grant = fake.issueGrant('h.smith@example.com', { accessTokenTtlSeconds: 120 });
    const ui = await fetch(fake.userinfoUrl, { headers: { authorization: `Bearer ${grant.accessToken}` } });
    expect(await ui.json()).toMatchObject({ email: 'h.smith@example.com', name: 'H Smith' });
    const ti = await fetch(`${fake.tokeninfoUrl}?access_token=${grant.accessToken}`);
    const info = (await ti.json()) as { email: string; scope: string; expires_in: number };
    expect(info.email).toBe('h.smith@example.com');
    expect(info.scope).toBe('https://mail.google.com/');
    expect(info.expires_in).toBeGreaterThan(100);
    expect((await fetch(`${fake.tokeninfoUrl}?access_token=nope`)).status).toBe(400);
    expect(fake.counts.tokeninfo).toBe(2);
  });

  it('expired access tokens are refused', async () => {
    const grant = fake.issueGrant('i@example.com', { accessTokenTtlSeconds: 0 });
    expect(grant.expiresAt).toBeLessThanOrEqual(Date.now());
    expect(fake.checkAccessToken(grant.accessToken)).toBeUndefined();
  });
});
