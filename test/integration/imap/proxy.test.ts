/**
 * The IMAP proxy end to end with exact transcripts (a raw socket client) against the fake Gmail and
 * the fake authorization server: every error the client can see, token refresh, relay behaviour.
 */
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  CONSENT_HINT,
  EMAIL,
  PASSWORD,
  USER,
  eventually,
  makeMessage,
  sessionLines,
  rawImapHarness,
} from './env.js';

const { setup, open } = rawImapHarness();

/** LOGIN with the password as a literal (it has quotes and a backslash). */
function login(tag: string, pass = PASSWORD): string {
  const bytes = Buffer.byteLength(pass, 'utf8');
  return `${tag} LOGIN ${USER} {${bytes}+}\r\n${pass}\r\n`;
}

const message = makeMessage('transcript', 'Body line 1\r\nBody line 2\r\n');

describe('IMAP proxy: login outcomes', () => {
  it('relays after LOGIN, with the upstream capabilities in our OK and pipelined commands kept in order', async () => {
    const e = await setup({ messages: [message] });
    const c = await open(e);
    // LOGIN, SELECT and FETCH in one write: the last two must reach the upstream after the login.
    c.write(`${login('a1')}a2 SELECT INBOX\r\na3 FETCH 1 (BODY[])\r\n`);
    const text = await c.waitFor(/a3 OK/);
    expect(text).toContain(
      `a1 OK [CAPABILITY ${e.upstream.postLoginCapabilities}] ${EMAIL} authenticated (Success)`,
    );
    expect(text.indexOf('a1 OK')).toBeLessThan(text.indexOf('a2 OK'));
    expect(text).toContain(`* 1 FETCH (UID 1 BODY[] {${message.length}}\r\n${message.toString('utf8')})`);
    expect(e.upstream.commands[0]).toEqual(['AUTHENTICATE XOAUTH2', 'SELECT INBOX', 'FETCH 1 (BODY[])']);
    c.write('a4 LOGOUT\r\n');
    await c.waitClosed();
    await eventually(() => sessionLines(e).length === 1);
    expect(sessionLines(e)[0]).toMatchObject({
      outcome: 'relayed',
      upstream: e.upstream.server.host + ':' + e.upstream.port,
    });
  });

  it('answers a wrong password with NO [AUTHENTICATIONFAILED] and never touches the upstream', async () => {
    const e = await setup();
    const c = await open(e);
    c.write(login('a1', 'Xq9-not-it'));
    expect(await c.waitFor(/a1 .*\r\n/)).toContain('a1 NO [AUTHENTICATIONFAILED] Authentication failed\r\n');
    expect(e.upstream.connections).toBe(0);
    // The connection stays usable for another try.
    c.write(login('a2'));
    await c.waitFor('a2 OK');
    expect(e.logText()).not.toContain('Xq9-not-it');
    expect(e.logText()).not.toContain(PASSWORD);
  });

  it('refreshes an expired token once and retries (Gmail error continuation answered by the proxy)', async () => {
    const e = await setup({ staleAccessToken: true });
    const c = await open(e);
    c.write(login('a1'));
    const text = await c.waitFor(/a1 OK/);
    expect(text).not.toMatch(/^\+ /m); // the client never sees the upstream's continuation
    expect(e.tokens.calls).toEqual([{ forceRefresh: false }, { forceRefresh: true }]);
    expect(e.auth.counts.refresh).toBe(1);
    expect(e.upstream.authAttempts).toEqual([
      { mechanism: 'XOAUTH2', user: EMAIL, ok: false, saslIr: true, errorResponse: '' },
      { mechanism: 'XOAUTH2', user: EMAIL, ok: true, saslIr: true },
    ]);
    expect(e.upstream.connections).toBe(1); // the retry reused the connection
  });

  it('answers AQ== to the error continuation with OAUTHBEARER', async () => {
    const e = await setup({ staleAccessToken: true, sasl: 'oauthbearer' });
    const c = await open(e);
    c.write(login('a1'));
    await c.waitFor(/a1 OK/);
    expect(e.upstream.authAttempts.map((a) => [a.mechanism, a.ok, a.errorResponse])).toEqual([
      ['OAUTHBEARER', false, 'AQ=='],
      ['OAUTHBEARER', true, undefined],
    ]);
  });

  it('tells the client where to grant access when the grant was revoked', async () => {
    const e = await setup();
    e.auth.revoke(EMAIL);
    const c = await open(e);
    c.write(login('a1'));
    const text = await c.waitFor(/a1 .*\r\n/);
    expect(text).toContain(
      `a1 NO [AUTHENTICATIONFAILED] Access to this mailbox has not been granted or was revoked. ${CONSENT_HINT}\r\n`,
    );
    expect(e.tokens.calls).toEqual([{ forceRefresh: false }, { forceRefresh: true }]);
    await eventually(() => e.logLines.some((l) => l.msg === 'login failed' && l.code === 'needs-consent'));
  });

  it('answers NO [UNAVAILABLE] when the upstream is down', async () => {
    const e = await setup();
    await e.upstream.close();
    const c = await open(e);
    c.write(login('a1'));
    expect(await c.waitFor(/a1 .*\r\n/)).toMatch(
      /a1 NO \[UNAVAILABLE\] Mail server unreachable, try again later \(.+\)\r\n/,
    );
  });

  it('answers NO [UNAVAILABLE] within the deadline when the upstream STARTTLS handshake stalls', async () => {
    // Says OK to STARTTLS, then never answers the ClientHello.
    const stalled = new Set<Socket>();
    const server = createServer((s) => {
      stalled.add(s);
      s.on('error', () => undefined);
      s.write('* OK ready\r\n');
      s.once('data', (d: Buffer) => s.write(`${d.toString('latin1').split(' ')[0]} OK Begin TLS\r\n`));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const e = await setup({
        imapServer: { host: '127.0.0.1', port, tls: 'starttls' },
        limits: { upstreamConnectTimeoutMs: 500 },
      });
      const c = await open(e);
      const started = Date.now();
      c.write(login('a1'));
      expect(await c.waitFor(/a1 .*\r\n/)).toMatch(/a1 NO \[UNAVAILABLE\] .*timed out/);
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      for (const s of stalled) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it.each([
    ['[UNAVAILABLE] Temporary authentication failure.', 'Temporary authentication failure.'],
    ['[SERVERBUG] Internal error occurred.', 'Internal error occurred.'],
    ['[INUSE] Mailbox is locked.', 'Mailbox is locked.'],
  ])(
    'an upstream NO %s is temporary: NO [UNAVAILABLE], no token refresh, the client may retry',
    async (refusal, words) => {
      const e = await setup();
      e.upstream.refuseLoginWith = refusal;
      const c = await open(e);
      c.write(login('a1'));
      const reply = await c.waitFor(/a1 .*\r\n/);
      expect(reply).toMatch(/a1 NO \[UNAVAILABLE\] Mail server unreachable, try again later/);
      expect(reply).toContain(words);
      expect(e.tokens.calls).toEqual([{ forceRefresh: false }]);
      expect(e.auth.counts.token).toBe(0);
      expect(e.upstream.authAttempts).toHaveLength(1);
      // Temporary: once the upstream recovers, the same session logs in.
      e.upstream.refuseLoginWith = undefined;
      c.write(login('a2'));
      expect(await c.waitFor(/a2 .*\r\n/)).toMatch(/a2 OK /);
    },
  );

  it.each([
    ['AUTHORIZATIONFAILED', 'IMAP access is disabled for this account.'],
    ['CONTACTADMIN', 'Ask your administrator.'],
    ['EXPIRED', 'Password expired.'],
  ])(
    'an upstream NO [%s] is passed on with its code and text, without a token refresh',
    async (code, words) => {
      const e = await setup();
      e.upstream.refuseLoginWith = `[${code}] ${words}`;
      const c = await open(e);
      c.write(login('a1'));
      expect(await c.waitFor(/a1 .*\r\n/)).toContain(
        `\r\na1 NO [${code}] Mail server refused the login: ${words}\r\n`,
      );
      expect(e.tokens.calls).toEqual([{ forceRefresh: false }]);
      expect(e.auth.counts.token).toBe(0);
      expect(e.upstream.authAttempts).toHaveLength(1);
    },
  );

  it('an upstream NO [AUTHENTICATIONFAILED] without the error continuation still gets one refresh and retry', async () => {
    const e = await setup();
    e.upstream.refuseLoginWith = '[AUTHENTICATIONFAILED] Invalid credentials';
    const c = await open(e);
    c.write(login('a1'));
    expect(await c.waitFor(/a1 .*\r\n/)).toContain(
      '\r\na1 NO [AUTHENTICATIONFAILED] Mail server refused the login: Invalid credentials\r\n',
    );
    expect(e.tokens.calls).toEqual([{ forceRefresh: false }, { forceRefresh: true }]);
    expect(e.upstream.authAttempts).toHaveLength(2);
  });

  it('answers NO [UNAVAILABLE] when the token endpoint fails, and keeps the tokens', async () => {
    const e = await setup({ staleAccessToken: true });
    e.auth.failNext(10, 503);
    const c = await open(e);
    c.write(login('a1'));
    expect(await c.waitFor(/a1 .*\r\n/)).toMatch(
      /a1 NO \[UNAVAILABLE\] Cannot get an access token right now/,
    );
    expect((await e.store.getToken(EMAIL))?.refreshToken).toBeDefined();
  });

  it('passes on the upstream reason when it refuses even a fresh token', async () => {
    const e = await setup();
    e.upstream.refuseAllTokens = true;
    const c = await open(e);
    c.write(login('a1'));
    const text = await c.waitFor(/a1 .*\r\n/);
    expect(text).toContain(
      'a1 NO [AUTHENTICATIONFAILED] Mail server refused the login: Invalid credentials (Failure)\r\n',
    );
    expect(e.tokens.calls).toEqual([{ forceRefresh: false }, { forceRefresh: true }]);
    expect(e.upstream.authAttempts).toHaveLength(2);
  });

  it('closes after the configured number of failed logins', async () => {
    const e = await setup({ limits: { maxFailedLoginsPerConnection: 2 } });
    const c = await open(e);
    c.write(login('a1', 'nope'));
    await c.waitFor('a1 NO');
    expect(c.closed).toBe(false);
    c.write(login('a2', 'nope'));
    await c.waitFor('* BYE Too many failed login attempts');
    await c.waitClosed();
  });
});

describe('IMAP proxy: relay', () => {
  it('ends the client connection when the upstream dies mid-session, and keeps serving others', async () => {
    const e = await setup({ messages: [message] });
    const c = await open(e);
    c.write(login('a1'));
    await c.waitFor('a1 OK');
    e.upstream.dropAll();
    await c.waitClosed();
    const d = await open(e);
    d.write(login('b1'));
    await d.waitFor('b1 OK');
  });

  it('ends the upstream connection when the client goes away', async () => {
    const e = await setup();
    const c = await open(e);
    c.write(login('a1'));
    await c.waitFor('a1 OK');
    c.close();
    await eventually(() => sessionLines(e).length === 1);
    expect(sessionLines(e)[0]).toMatchObject({
      outcome: 'relayed',
      reason: expect.stringContaining('client'),
    });
  });
});

describe('IMAP proxy: TLS on the client leg', () => {
  it('STARTTLS listener: LOGINDISABLED before TLS, login after, injected commands discarded', async () => {
    const e = await setup({ listenerTls: 'starttls', upstreamTls: 'starttls' });
    const c = await open(e);
    expect(c.text).toMatch(/^\* OK \[CAPABILITY IMAP4rev1 LITERAL\+ SASL-IR ID STARTTLS LOGINDISABLED\]/);
    c.write(login('a0'));
    await c.waitFor('a0 NO [PRIVACYREQUIRED]');
    // The injection: a LOGIN pipelined after STARTTLS in the same packet must not run after TLS.
    c.write(`a1 STARTTLS\r\n${login('evil')}`);
    await c.waitFor('a1 OK Begin TLS negotiation now\r\n');
    await c.startTls();
    c.write('a2 CAPABILITY\r\n');
    const text = await c.waitFor('a2 OK');
    expect(text).toContain('* CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID AUTH=PLAIN AUTH=LOGIN\r\n');
    expect(text).not.toContain('evil');
    c.write(login('a3'));
    await c.waitFor('a3 OK');
    expect(e.tokens.calls).toHaveLength(1); // only a3 logged in
  });
});
