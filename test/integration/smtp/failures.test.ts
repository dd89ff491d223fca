/**
 * What a legacy SMTP client sees when something goes wrong: bad password, expired or revoked tokens,
 * a down upstream or token endpoint, and Exchange's tenant-wide SMTP AUTH switch.
 */
import { createServer, type AddressInfo, type Socket } from 'node:net';
import nodemailer from 'nodemailer';
import { LOGIN_RETRY_MS } from '../../../src/oauth/token-manager.js';
import { afterEach, describe, expect, it } from 'vitest';
import {
  CONSENT_HINT,
  EMAIL,
  PASSWORD,
  USER,
  eventually,
  sessionLines,
  startSmtpEnv,
  type SmtpEnv,
} from './env.js';
import { RawSmtpClient, plainIr } from './raw-client.js';
import { TENANT_DISABLED_TEXT } from '../../helpers/fake-smtp-upstream.js';

let env: SmtpEnv | undefined;
let client: RawSmtpClient | undefined;
afterEach(async () => {
  client?.close();
  client = undefined;
  await env?.close();
  env = undefined;
});

/** Connects to a plain listener, EHLOs and sends AUTH PLAIN; returns the AUTH reply. */
async function login(e: SmtpEnv, password = PASSWORD): Promise<string> {
  client = await RawSmtpClient.connect(e.port);
  expect(await client.reply()).toBe('220 proxy.test ESMTP xoauth-proxy ready');
  await client.command('EHLO scanner.local');
  return client.command(`AUTH PLAIN ${plainIr(USER, password)}`);
}

describe('SMTP proxy failures', () => {
  it('wrong password: 535 5.7.8, no token fetched, no upstream contacted', async () => {
    env = await startSmtpEnv({ listenerTls: 'none', upstreamTls: 'implicit' });
    expect(await login(env, 'wrong')).toBe('535 5.7.8 Authentication credentials invalid');
    expect(env.tokens.calls).toEqual([]);
    expect(env.upstream.connections).toBe(0);
    // The dialogue goes on: the client may try again.
    expect(await client!.command('MAIL FROM:<a@example.com>')).toBe('530 5.7.0 Authentication required');
    expect(await client!.command('QUIT')).toBe('221 2.0.0 Bye');
    await eventually(() => sessionLines(env!).length === 1);
    expect(sessionLines(env)[0]).toMatchObject({ outcome: 'bad-credentials', username: USER });
  });

  it('wrong password: the 535 comes only after the login limiter delay', async () => {
    env = await startSmtpEnv({
      listenerTls: 'none',
      upstreamTls: 'implicit',
      loginLimiter: { freeFailures: 0, baseDelayMs: 600, maxDelayMs: 600 },
    });
    const started = Date.now();
    expect(await login(env, 'wrong')).toBe('535 5.7.8 Authentication credentials invalid');
    expect(Date.now() - started).toBeGreaterThanOrEqual(550);
  });

  it('expired token: the upstream error challenge is answered, one forced refresh, retry succeeds', async () => {
    env = await startSmtpEnv({ listenerTls: 'none', upstreamTls: 'starttls', accessToken: 'stale' });
    expect(await login(env)).toBe('235 2.7.0 Authentication successful');
    expect(env.tokens.calls).toEqual([{ forceRefresh: false }, { forceRefresh: true }]);
    expect(env.auth.counts.refresh).toBe(1);
    expect(env.upstream.authAttempts.map((a) => a.ok)).toEqual([false, true]);
    // Retried on the same upstream connection.
    expect(env.upstream.connections).toBe(1);
    expect(await client!.command(`MAIL FROM:<${EMAIL}>`)).toMatch(/^250 /);
  });

  it("a fresh token refused too: the client gets the upstream's own 535 after exactly one retry", async () => {
    env = await startSmtpEnv({
      listenerTls: 'none',
      upstreamTls: 'implicit',
      grantFor: 'mallory@example.com',
    });
    // smtp-server's final reply has no enhanced code; the proxy adds one since it advertised them.
    expect(await login(env)).toBe('535 5.7.8 Error: Username and Password not accepted');
    expect(env.tokens.calls).toEqual([{ forceRefresh: false }, { forceRefresh: true }]);
    expect(env.upstream.authAttempts.map((a) => a.ok)).toEqual([false, false]);
    await client!.command('QUIT');
    await eventually(() => sessionLines(env!).length === 1);
    expect(sessionLines(env)[0]).toMatchObject({ outcome: 'upstream-rejected' });
  });

  it('revoked grant: 535 5.7.8 saying where to grant access', async () => {
    env = await startSmtpEnv({ listenerTls: 'none', upstreamTls: 'implicit' });
    env.auth.revoke(EMAIL);
    expect(await login(env)).toBe(`535 5.7.8 Account needs consent from the mailbox owner. ${CONSENT_HINT}`);
    expect(env.upstream.authAttempts.map((a) => a.ok)).toEqual([false]);
    await client!.command('QUIT');
    await eventually(() => sessionLines(env!).length === 1);
    expect(sessionLines(env)[0]).toMatchObject({ outcome: 'needs-consent', account: EMAIL });
  });

  it('upstream down: 454 4.7.0 and the session log names the upstream', async () => {
    env = await startSmtpEnv({ listenerTls: 'none', upstreamTls: 'implicit' });
    const port = env.upstream.port;
    await env.upstream.close();
    expect(await login(env)).toBe('454 4.7.0 Temporary authentication failure, try again later');
    await client!.command('QUIT');
    await eventually(() => sessionLines(env!).length === 1);
    expect(sessionLines(env)[0]).toMatchObject({ outcome: 'upstream-unavailable' });
    expect(String(sessionLines(env)[0]!.reason)).toContain(`127.0.0.1:${port}`);
  });

  it('upstream STARTTLS handshake stalling: 454 4.7.0 within the deadline', async () => {
    // Says 220 to STARTTLS, then never answers the ClientHello.
    const stalled = new Set<Socket>();
    const server = createServer((s) => {
      stalled.add(s);
      s.on('error', () => undefined);
      s.write('220 stall.test ESMTP\r\n');
      let text = '';
      const onData = (d: Buffer): void => {
        text += d.toString('latin1');
        if (/^EHLO /im.test(text) && !text.includes('STARTTLS')) {
          s.write('250-stall.test\r\n250 STARTTLS\r\n');
          text = text.replace(/^EHLO [^\n]*\n/im, '');
        }
        if (text.includes('STARTTLS\r\n')) {
          s.off('data', onData);
          s.write('220 2.0.0 Ready to start TLS\r\n');
        }
      };
      s.on('data', onData);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      env = await startSmtpEnv({
        listenerTls: 'none',
        upstreamTls: 'implicit',
        smtpServer: { host: '127.0.0.1', port, tls: 'starttls' },
        settings: { upstreamConnectTimeoutMs: 500 },
      });
      const started = Date.now();
      expect(await login(env)).toBe('454 4.7.0 Temporary authentication failure, try again later');
      expect(Date.now() - started).toBeLessThan(10_000);
      await client!.command('QUIT');
      await eventually(() => sessionLines(env!).length === 1);
      expect(sessionLines(env)[0]).toMatchObject({ outcome: 'upstream-unavailable' });
      expect(String(sessionLines(env)[0]!.reason)).toContain('timed out');
    } finally {
      for (const s of stalled) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('token endpoint failing: 454 4.7.0 (temporary), the grant is kept, and a login after the backoff works', async () => {
    env = await startSmtpEnv({ listenerTls: 'none', upstreamTls: 'implicit', accessToken: 'expired' });
    env.auth.failNext(1, 503);
    expect(await login(env)).toBe('454 4.7.0 Temporary authentication failure, try again later');
    expect(env.upstream.authAttempts).toEqual([]);
    env.advanceClock(LOGIN_RETRY_MS + 1_000);
    expect(await client!.command(`AUTH PLAIN ${plainIr(USER, PASSWORD)}`)).toBe(
      '235 2.7.0 Authentication successful',
    );
    expect(env.auth.counts.refresh).toBe(2);
  });

  it('Exchange "SmtpClientAuthentication is disabled for the Tenant" is passed on as is, without a refresh', async () => {
    env = await startSmtpEnv({ listenerTls: 'none', upstreamTls: 'implicit' });
    env.upstream.tenantAuthDisabled = true;
    expect(await login(env)).toBe(`535 ${TENANT_DISABLED_TEXT}`);
    expect(env.tokens.calls).toEqual([{ forceRefresh: false }]);
    expect(env.upstream.authAttempts).toHaveLength(1);
  });

  it('nodemailer sees the 454 as a temporary error and the 535 as EAUTH', async () => {
    env = await startSmtpEnv({ listenerTls: 'none', upstreamTls: 'implicit' });
    const send = (pass: string) =>
      nodemailer
        .createTransport({ host: '127.0.0.1', port: env!.port, ignoreTLS: true, auth: { user: USER, pass } })
        .sendMail({ envelope: { from: EMAIL, to: ['b@example.net'] }, raw: 'Subject: x\r\n\r\nx\r\n' })
        .then(
          () => undefined,
          (e: unknown) => e as { code?: string; responseCode?: number },
        );
    expect(await send('nope')).toMatchObject({ code: 'EAUTH', responseCode: 535 });
    await env.upstream.close();
    expect(await send(PASSWORD)).toMatchObject({ code: 'EAUTH', responseCode: 454 });
  });
});
