/**
 * Token life cycle through the running proxy binary, judged by a real server: Dovecot asks the fake
 * authorization server about every token, so an expired or revoked token is really refused upstream.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LOGIN_RETRY_MS } from '../../src/oauth/token-manager.js';
import { requireDovecot } from '../helpers/dovecot.js';
import {
  imapLogin,
  printLogsOnFailure,
  smtpAuth,
  startWorld,
  waitUntil,
  worldLogs,
  worldSecrets,
  type World,
} from './support.js';

const PW = 'token-tests-pw';
const EXPIRY = 'expiry@example.com';
const ROTATION = 'rotation@example.com';
const REVOKED = 'revoked@example.com';
const FLAKY = 'flaky@example.com';
const HANGING = 'hanging@example.com';
const REFUSED_IMAP = 'refused-imap@example.com';
const REFUSED_BEARER = 'refused-bearer@example.com';
const REFUSED_SMTP = 'refused-smtp@example.com';

describe.runIf(requireDovecot())('tokens through the proxy binary, validated by Dovecot', () => {
  let world: World;
  const imap = (user: string, password = PW): Promise<string> =>
    imapLogin(world.proxy.ports.imap.none!, user, password);
  const smtp = (user: string, password = PW): Promise<string> =>
    smtpAuth(world.proxy.ports.smtp.none!, user, password);

  beforeAll(async () => {
    world = await startWorld({
      // Access tokens seeded with 1 s to live are expired by the time a test logs in.
      accounts: [
        ...[EXPIRY, ROTATION, FLAKY, HANGING].map((email) => ({
          email,
          password: PW,
          accessTokenTtlSeconds: 1,
        })),
        { email: REVOKED, password: PW },
        { email: REFUSED_IMAP, password: PW, refusedAccessToken: true },
        { email: REFUSED_BEARER, password: PW, refusedAccessToken: true, connection: 'e2e-bearer' as const },
        { email: REFUSED_SMTP, password: PW, refusedAccessToken: true },
      ],
      listen: { imap: ['none'], smtp: ['none'] },
      settings: { refreshMargin: '1s', tokenRequestTimeout: '3s' },
      // Everything the proxy can log, so the last test can look for secrets in all of it.
      env: { LOG_LEVEL: 'trace' },
    });
  });
  afterAll(async () => world?.stop());
  afterEach(() => {
    world.auth.options.accessTokenTtlSeconds = undefined;
    world.auth.options.rotateRefreshTokens = false;
    world.auth.setHanging(false);
  });
  printLogsOnFailure(worldLogs(() => world));

  it('a token that expires between two logins is refreshed exactly once, and the second login works', async () => {
    await waitUntil(world.grants.get(EXPIRY)!.expiresAt + 50);
    world.auth.options.accessTokenTtlSeconds = 6;
    const refreshes = world.auth.counts.refresh;

    // The seeded token has expired: this login refreshes it.
    expect(await imap(EXPIRY)).toMatch(/^a1 OK/);
    expect(world.auth.counts.refresh - refreshes).toBe(1);
    const refreshedAt = Date.now();

    // Still valid (5 s left before the 1 s margin, plenty on a loaded machine): served from the cache.
    expect(await imap(EXPIRY)).toMatch(/^a1 OK/);
    expect(world.auth.counts.refresh - refreshes).toBe(1);

    // Expires between two logins: exactly one more refresh, and it works.
    await waitUntil(refreshedAt + 6_000);
    expect(await imap(EXPIRY)).toMatch(/^a1 OK/);
    expect(world.auth.counts.refresh - refreshes).toBe(2);
    expect(world.auth.lastTokenRequest?.get('grant_type')).toBe('refresh_token');
  });

  it('with rotation on, the rotated refresh token is the one used next (and the old one is dead)', async () => {
    world.auth.options.rotateRefreshTokens = true;
    world.auth.options.accessTokenTtlSeconds = 3;
    const first = world.grants.get(ROTATION)!.refreshToken;
    await waitUntil(world.grants.get(ROTATION)!.expiresAt + 50);

    expect(await imap(ROTATION)).toMatch(/^a1 OK/);
    expect(world.auth.lastTokenRequest?.get('refresh_token')).toBe(first);
    const refreshedAt = Date.now();
    expect(world.auth.isRefreshTokenValid(first)).toBe(false);

    const store = await world.proxy.openStore();
    let second: string | undefined;
    try {
      second = (await store.getToken(ROTATION))?.refreshToken;
    } finally {
      await store.close();
    }
    expect(second).toBeDefined();
    expect(second).not.toBe(first);
    expect(world.auth.isRefreshTokenValid(second!)).toBe(true);

    await waitUntil(refreshedAt + 3_000);
    expect(await imap(ROTATION)).toMatch(/^a1 OK/);
    expect(world.auth.lastTokenRequest?.get('refresh_token')).toBe(second);
  });

  it.each([
    ['IMAP XOAUTH2', REFUSED_IMAP, 'XOAUTH2'],
    ['IMAP OAUTHBEARER', REFUSED_BEARER, 'OAUTHBEARER'],
    ['SMTP XOAUTH2', REFUSED_SMTP, 'XOAUTH2'],
  ] as const)(
    '%s: a token the server refuses although it looks valid is refreshed once and the login retried',
    async (kind, user, method) => {
      const refreshes = world.auth.counts.refresh;
      const reply = kind.startsWith('SMTP') ? await smtp(user) : await imap(user);
      expect(reply).toMatch(kind.startsWith('SMTP') ? /^235 / : /^a1 OK/);
      expect(world.auth.counts.refresh - refreshes).toBe(1);
      // Dovecot really refused the first token (its tokeninfo call said 400), then accepted the fresh one.
      await world.dovecot.waitForLog(
        new RegExp(`oauth2\\(${user.replace(/\./g, '\\.')},.*Token validation failed`),
      );
      const logins = await world.dovecot.waitForLogins({ count: 1, filter: (l) => l.user === user });
      expect(logins).toEqual([
        expect.objectContaining({
          protocol: kind.startsWith('SMTP') ? 'submission' : 'imap',
          method,
          tls: true,
        }),
      ]);
    },
  );

  it('a revoked grant: the client gets the needs-consent error and status shows needs-consent', async () => {
    // Works before the revocation (the seeded token is valid for an hour).
    expect(await imap(REVOKED)).toMatch(/^a1 OK/);
    world.auth.revoke(REVOKED);

    const reply = await imap(REVOKED);
    expect(reply).toMatch(/^a1 NO \[AUTHENTICATIONFAILED\]/);
    expect(reply).toMatch(/consent/i);
    const smtpReply = await smtp(REVOKED);
    expect(smtpReply).toMatch(/^535 5\.7\.8 /);
    expect(smtpReply).toMatch(/consent/i);

    const status = await world.proxy.status();
    expect(accountState(status, REVOKED)).toBe('needs-consent');
    expect(accountState(status, EXPIRY)).toBe('active');
    // status never shows a token.
    const text = JSON.stringify(status);
    for (const grant of world.grants.values()) {
      expect(text).not.toContain(grant.refreshToken);
      expect(text).not.toContain(grant.accessToken);
    }
  });

  it('the authorization server failing with 500: a temporary error, and the next login after recovery works', async () => {
    await waitUntil(world.grants.get(FLAKY)!.expiresAt + 50);
    // More failures than any retry policy uses; the rest are drained after the check.
    world.auth.failNext(50, 500);
    let failedAt: number;
    try {
      expect(await imap(FLAKY)).toMatch(/^a1 NO \[UNAVAILABLE\]/);
      failedAt = Date.now();
      expect(await smtp(FLAKY)).toMatch(/^454 4\.7\.0 /);
    } finally {
      await drainFailures(world);
    }
    // The token manager makes no new request during its backoff after a failure (by design, so a down
    // endpoint is not hammered); "after recovery" is after the endpoint is back and that pause is over.
    await waitUntil(failedAt + LOGIN_RETRY_MS + 200);
    expect(await imap(FLAKY)).toMatch(/^a1 OK/);
    expect(await smtp(FLAKY)).toMatch(/^235 /);
    expect(accountState(await world.proxy.status(), FLAKY)).toBe('active');
  });

  it('the authorization server hanging: a temporary error after the request timeout, then recovery', async () => {
    await waitUntil(world.grants.get(HANGING)!.expiresAt + 50);
    world.auth.setHanging(true);
    const started = Date.now();
    expect(await imap(HANGING)).toMatch(/^a1 NO \[UNAVAILABLE\]/);
    // tokenRequestTimeout is 3 s; the reply must not wait for the hang to end.
    expect(Date.now() - started).toBeLessThan(20_000);
    const failedAt = Date.now();
    world.auth.setHanging(false);
    await waitUntil(failedAt + LOGIN_RETRY_MS + 200);
    expect(await imap(HANGING)).toMatch(/^a1 OK/);
  });

  it('after all of the above, the proxy log holds no password, access token or refresh token', async () => {
    const secrets = await worldSecrets(world, [PW]);
    const log = world.proxy.output();
    expect(log.length).toBeGreaterThan(0);
    expect(log).toContain(EXPIRY);
    for (const secret of secrets) expect(log.includes(secret), 'a secret is in the proxy log').toBe(false);
    // PLAIN/LOGIN payloads carry the password base64-encoded.
    expect(log).not.toContain(Buffer.from(PW).toString('base64'));
  });
});

/** `xoauth-proxy status --json` prints an array of AccountStatus rows. */
function accountState(status: unknown, accountId: string): string | undefined {
  expect(Array.isArray(status)).toBe(true);
  const rows = status as Array<{ accountId?: string; state?: string }>;
  return rows.find((row) => row.accountId === accountId)?.state;
}

/** Uses up the failures still queued in the fake (failNext has no "cancel"). */
async function drainFailures(world: World): Promise<void> {
  for (let i = 0; i < 60; i++) {
    const res = await fetch(world.auth.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=refresh_token&refresh_token=drain&client_id=e2e-client&client_secret=e2e-secret',
    });
    await res.arrayBuffer();
    if (res.status !== 500) return;
  }
  throw new Error('the fake authorization server kept failing');
}
