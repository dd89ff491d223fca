/**
 * What a legacy POP3 client sees when something goes wrong: bad password, expired or revoked tokens,
 * a down upstream or token endpoint, an untrusted upstream certificate, and the upstream's own
 * temporary and permanent refusals (RFC 2449 response codes).
 */
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { MICROSOFT_AUTH_FAILED } from '../../helpers/fake-pop3-server.js';
import { RawPop3Client } from './raw-client.js';
import {
  CONSENT_HINT,
  EMAIL,
  PASSWORD,
  USER,
  eventually,
  sessionLines,
  startPop3Env,
  type EnvOptions,
  type Pop3Env,
} from './env.js';

let env: Pop3Env | undefined;
let client: RawPop3Client | undefined;
afterEach(async () => {
  client?.close();
  client = undefined;
  await env?.close();
  env = undefined;
});

async function start(options: Partial<EnvOptions> = {}): Promise<Pop3Env> {
  env = await startPop3Env({ listenerTls: 'none', upstreamTls: 'implicit', messages: [], ...options });
  return env;
}

/** Connects, sends USER and PASS, returns the reply to PASS. */
async function login(e: Pop3Env, password = PASSWORD): Promise<string> {
  client ??= await RawPop3Client.connect(e.port);
  if (client.closed) throw new Error('client closed');
  expect(await client.line()).toBe('+OK xoauth-proxy POP3 ready');
  expect(await client.command(`USER ${USER}`)).toBe('+OK Send PASS');
  return client.command(`PASS ${password}`);
}

/** USER/PASS again on the same connection. */
async function again(password = PASSWORD): Promise<string> {
  expect(await client!.command(`USER ${USER}`)).toBe('+OK Send PASS');
  return client!.command(`PASS ${password}`);
}

const TEMPORARY = /^-ERR \[SYS\/TEMP\] /;

describe('POP3 proxy failures', () => {
  it('wrong password: -ERR [AUTH], no token fetched, no upstream contacted, the client may retry', async () => {
    const e = await start();
    expect(await login(e, 'wrong')).toBe('-ERR [AUTH] Authentication failed');
    expect(e.tokens.calls).toEqual([]);
    expect(e.upstream.connections).toBe(0);
    expect(await again()).toBe('+OK Welcome.');
  });

  it('expired token: the error challenge is answered with an empty line, one forced refresh, retry on the same connection', async () => {
    const e = await start({ staleAccessToken: true });
    expect(await login(e)).toBe('+OK Welcome.');
    expect(e.tokens.calls).toEqual([{ forceRefresh: false }, { forceRefresh: true }]);
    expect(e.auth.counts.refresh).toBe(1);
    expect(e.upstream.authAttempts.map((a) => [a.ok, a.errorResponse])).toEqual([
      [false, ''],
      [true, undefined],
    ]);
    expect(e.upstream.connections).toBe(1);
    expect(await client!.command('STAT')).toBe('+OK 0 0');
    await client!.command('QUIT');
    await eventually(() => sessionLines(e).length === 1);
    expect(sessionLines(e)[0]).toMatchObject({ outcome: 'relayed', account: EMAIL });
  });

  it('expired token with OAUTHBEARER: the challenge is answered with AQ== (RFC 7628)', async () => {
    const e = await start({ staleAccessToken: true, sasl: 'oauthbearer' });
    expect(await login(e)).toBe('+OK Welcome.');
    expect(e.upstream.authAttempts.map((a) => [a.mechanism, a.ok, a.errorResponse])).toEqual([
      ['OAUTHBEARER', false, 'AQ=='],
      ['OAUTHBEARER', true, undefined],
    ]);
  });

  it('expired token, Exchange style (plain -ERR, no challenge): one forced refresh and retry', async () => {
    const e = await start({ staleAccessToken: true, fake: { style: 'microsoft' } });
    expect(await login(e)).toBe('+OK Welcome.');
    expect(e.tokens.calls).toEqual([{ forceRefresh: false }, { forceRefresh: true }]);
    expect(e.upstream.authAttempts.map((a) => a.ok)).toEqual([false, true]);
  });

  it('revoked grant: -ERR [AUTH] saying where to grant access', async () => {
    const e = await start();
    e.auth.revoke(EMAIL);
    expect(await login(e)).toBe(
      `-ERR [AUTH] Access to this mailbox has not been granted or was revoked. ${CONSENT_HINT}`,
    );
    expect(e.upstream.authAttempts.map((a) => a.ok)).toEqual([false]);
    await client!.command('QUIT');
    await eventually(() => sessionLines(e).length === 1);
    expect(sessionLines(e)[0]).toMatchObject({ outcome: 'needs-consent', account: EMAIL });
  });

  it('a fresh token refused too: -ERR [AUTH] with the upstream reason', async () => {
    const e = await start({ fake: { style: 'microsoft' } });
    e.upstream.failNextAuth(2, MICROSOFT_AUTH_FAILED);
    expect(await login(e)).toBe(
      '-ERR [AUTH] Mail server refused the login: Authentication failure: unknown user name or bad password.',
    );
    expect(e.tokens.calls).toEqual([{ forceRefresh: false }, { forceRefresh: true }]);
  });

  it('upstream down: -ERR [SYS/TEMP] and the session log names the upstream', async () => {
    const e = await start();
    const port = e.upstream.port;
    await e.upstream.close();
    expect(await login(e)).toMatch(TEMPORARY);
    await client!.command('QUIT');
    await eventually(() => sessionLines(e).length === 1);
    expect(sessionLines(e)[0]).toMatchObject({ outcome: 'upstream-unavailable' });
    expect(String(sessionLines(e)[0]!.reason)).toContain(`127.0.0.1:${port}`);
  });

  it('an upstream that accepts but never greets: one deadline, then -ERR [SYS/TEMP]', async () => {
    const silent = new Set<Socket>();
    const server = createServer((s) => silent.add(s));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const e = await start({
        pop3Server: { host: '127.0.0.1', port, tls: 'starttls' },
        limits: { upstreamConnectTimeoutMs: 500 },
      });
      const started = Date.now();
      const reply = await login(e);
      expect(reply).toMatch(TEMPORARY);
      expect(reply).toContain('timed out');
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      for (const s of silent) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('an upstream whose STLS handshake stalls: one deadline, then -ERR [SYS/TEMP]', async () => {
    // Says +OK to STLS, then never answers the ClientHello.
    const stalled = new Set<Socket>();
    const server = createServer((s) => {
      stalled.add(s);
      s.on('error', () => undefined);
      s.write('+OK ready\r\n');
      s.once('data', () => s.write('+OK Begin TLS negotiation\r\n'));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const e = await start({
        pop3Server: { host: '127.0.0.1', port, tls: 'starttls' },
        limits: { upstreamConnectTimeoutMs: 500 },
      });
      const started = Date.now();
      const reply = await login(e);
      expect(reply).toMatch(TEMPORARY);
      expect(reply).toContain('timed out');
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      for (const s of stalled) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it.each([
    ['greets with -ERR', '-ERR [SYS/TEMP] Too busy\r\n', 'unexpected greeting'],
    ['refuses STLS', '+OK ready\r\n', 'STLS refused'],
  ])(
    'an upstream that %s: -ERR [SYS/TEMP], and nothing but STLS was ever sent in clear',
    async (_what, greeting, why) => {
      const received: string[] = [];
      const sockets = new Set<Socket>();
      const server = createServer((s) => {
        sockets.add(s);
        s.on('error', () => undefined);
        s.on('data', (d: Buffer) => {
          received.push(d.toString('latin1'));
          s.write('-ERR [SYS/PERM] No TLS here\r\n');
        });
        s.write(greeting);
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        const port = (server.address() as AddressInfo).port;
        const e = await start({ pop3Server: { host: '127.0.0.1', port, tls: 'starttls' } });
        const reply = await login(e);
        expect(reply).toMatch(TEMPORARY);
        expect(reply).toContain(why);
        expect(received.join('')).toMatch(/^(?:STLS\r\n)?$/);
      } finally {
        for (const s of sockets) s.destroy();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    },
  );

  it('an upstream certificate from an unknown CA is refused: -ERR [SYS/TEMP], no token sent', async () => {
    const e = await start({ untrustedUpstream: true });
    const reply = await login(e);
    expect(reply).toMatch(TEMPORARY);
    expect(reply).toMatch(/certificate/i);
    expect(e.upstream.authAttempts).toEqual([]);
  });

  it('token endpoint failing: -ERR [SYS/TEMP] (temporary), the grant is kept, the endpoint not hammered', async () => {
    const e = await start();
    // Get the stored token into the cache and mark it refused, so the next login must refresh.
    expect(await login(e)).toBe('+OK Welcome.');
    client!.close();
    client = undefined;
    e.tokens.invalidate(EMAIL);
    const refreshesBefore = e.auth.counts.refresh;
    e.auth.failNext(1, 503);
    expect(await login(e)).toMatch(/^-ERR \[SYS\/TEMP\] Cannot get an access token right now/);
    // A retry right away meets the token manager's backoff: still temporary, no new token request.
    expect(await again()).toMatch(TEMPORARY);
    expect(e.auth.counts.refresh).toBe(refreshesBefore + 1);
    expect((await e.store.getToken(EMAIL))?.refreshToken).toBeTruthy();
    await client!.command('QUIT');
    await eventually(() => sessionLines(e).length === 2);
    expect(sessionLines(e)[1]).toMatchObject({ outcome: 'token-unavailable' });
  });

  it('[IN-USE] from the upstream (mailbox locked) is temporary and not worth a refresh', async () => {
    const e = await start();
    e.upstream.failNextAuth(1, '-ERR [IN-USE] Mailbox is locked by another session.');
    expect(await login(e)).toBe(
      '-ERR [SYS/TEMP] Mail server unavailable, try again later ([IN-USE] Mailbox is locked by another session.)',
    );
    expect(e.tokens.calls).toEqual([{ forceRefresh: false }]);
    expect(await again()).toBe('+OK Welcome.');
  });

  it('[SYS/PERM] from the upstream (POP disabled) is passed on without a refresh', async () => {
    const e = await start();
    e.upstream.failNextAuth(1, '-ERR [SYS/PERM] POP access is disabled for this account.');
    expect(await login(e)).toBe(
      '-ERR [AUTH] Mail server refused the login: POP access is disabled for this account.',
    );
    expect(e.tokens.calls).toEqual([{ forceRefresh: false }]);
  });

  it('upstream STLS leg: an expired token is refreshed and retried there too', async () => {
    const e = await start({ upstreamTls: 'starttls', staleAccessToken: true });
    expect(await login(e)).toBe('+OK Welcome.');
    expect(e.upstream.commands[0]?.slice(0, 5)).toEqual([
      'STLS',
      'AUTH XOAUTH2',
      '<payload>',
      '',
      'AUTH XOAUTH2',
    ]);
  });
});
