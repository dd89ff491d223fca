/**
 * Proves the stand-in before anything is tested against it: Dovecot really validates XOAUTH2 tokens
 * against the fake authorization server (valid in, expired/revoked out with Gmail's `+ <base64 JSON>`
 * continuation), really refuses authentication before TLS, and submission relays to the sink.
 * Needs no proxy.
 */
import { ImapFlow } from 'imapflow';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireDovecot, startDovecot, type DovecotServer } from '../helpers/dovecot.js';
import { startFakeAuthServer, type FakeAuthServer } from '../helpers/fake-auth-server.js';
import { startSmtpSink, type SmtpSink } from '../helpers/smtp-sink.js';
import { LineClient, printLogsOnFailure, testMessage, xoauth2 } from './support.js';

const USER = 'alice@example.com';

describe.runIf(requireDovecot())('Dovecot stand-in (no proxy)', () => {
  let auth: FakeAuthServer;
  let sink: SmtpSink;
  let dovecot: DovecotServer;

  beforeAll(async () => {
    auth = await startFakeAuthServer();
    sink = await startSmtpSink();
    dovecot = await startDovecot({
      tokeninfoUrl: auth.tokeninfoUrl,
      users: [USER],
      submissionRelay: { host: sink.host, port: sink.port },
    });
  });
  afterAll(async () => {
    await dovecot?.stop();
    await sink?.close();
    await auth?.close();
  });
  printLogsOnFailure(() => [dovecot && { name: 'dovecot', text: () => dovecot.log() }]);

  const imapClient = (accessToken: string): ImapFlow =>
    new ImapFlow({
      host: dovecot.host,
      port: dovecot.ports.imaps,
      secure: true,
      tls: { ca: dovecot.caPem, servername: 'localhost' },
      auth: { user: USER, accessToken },
      logger: false,
      disableAutoIdle: true,
    });

  it('accepts a valid token from imapflow (it picks OAUTHBEARER; implicit TLS) and serves a message byte-exact', async () => {
    const raw = testMessage({ to: USER, subject: 'stand-in fetch' });
    dovecot.deliver(USER, raw);
    const { accessToken } = auth.issueGrant(USER);
    const loginsBefore = dovecot.logins().length;
    const client = imapClient(accessToken);
    await client.connect();
    try {
      const lock = await client.getMailboxLock('INBOX');
      try {
        const msg = await client.fetchOne('*', { source: true });
        expect(msg && msg.source?.toString('utf8')).toBe(raw);
        expect(msg && msg.source?.equals(Buffer.from(raw, 'utf8'))).toBe(true);
      } finally {
        lock.release();
      }
    } finally {
      await client.logout();
    }
    const [login] = await dovecot.waitForLogins({ count: 1, since: loginsBefore });
    expect(login).toMatchObject({ protocol: 'imap', user: USER, localPort: dovecot.ports.imaps, tls: true });
    expect(auth.counts.tokeninfo).toBeGreaterThan(0);
  });

  it('refuses an expired token with the XOAUTH2 error continuation, then NO', async () => {
    const { accessToken } = auth.issueGrant(USER, { accessTokenTtlSeconds: 1 });
    // The fake counts a token as expired once its expiry has passed.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const c = await LineClient.open({
      host: dovecot.host,
      port: dovecot.ports.imaps,
      tls: { ca: dovecot.caPem },
    });
    try {
      await c.readUntil(/^\* OK/);
      c.send(`A1 AUTHENTICATE XOAUTH2 ${xoauth2(USER, accessToken)}`);
      const [challenge] = await c.readUntil(/^\+ /);
      const json = JSON.parse(Buffer.from(challenge!.slice(2), 'base64').toString('utf8')) as Record<
        string,
        string
      >;
      expect(json).toMatchObject({ status: '401', schemes: 'bearer' });
      c.send('');
      const lines = await c.readUntil(/^A1 /);
      expect(lines.at(-1)).toMatch(/^A1 NO /);
    } finally {
      c.close();
    }
    await expect(imapClient(accessToken).connect()).rejects.toThrow();
  });

  it('refuses a revoked token and a token for another user', async () => {
    const grant = auth.issueGrant(USER);
    const other = auth.issueGrant('bob@example.com');
    await expect(imapClient(other.accessToken).connect()).rejects.toThrow();
    auth.revoke(USER);
    await expect(imapClient(grant.accessToken).connect()).rejects.toThrow();
  });

  it('refuses any authentication before STARTTLS and accepts XOAUTH2 after it (the upstream TLS check)', async () => {
    const { accessToken } = auth.issueGrant(USER);
    const loginsBefore = dovecot.logins().length;
    const c = await LineClient.open({ host: dovecot.host, port: dovecot.ports.imap });
    try {
      await c.readUntil(/^\* OK/);
      c.send(`A1 AUTHENTICATE XOAUTH2 ${xoauth2(USER, accessToken)}`);
      expect((await c.readUntil(/^A1 /)).at(-1)).toMatch(/^A1 NO \[PRIVACYREQUIRED\]/);
      c.send('A2 STARTTLS');
      await c.readUntil(/^A2 OK/);
      await c.startTls(dovecot.caPem);
      c.send(`A3 AUTHENTICATE XOAUTH2 ${xoauth2(USER, accessToken)}`);
      expect((await c.readUntil(/^A3 /)).at(-1)).toMatch(/^A3 OK/);
    } finally {
      c.close();
    }
    const [login] = await dovecot.waitForLogins({ count: 1, since: loginsBefore });
    expect(login).toMatchObject({ user: USER, localPort: dovecot.ports.imap, tls: true });
  });

  it('submission accepts XOAUTH2 (STARTTLS) and relays the message byte-exact to the sink', async () => {
    const { accessToken } = auth.issueGrant(USER);
    const raw = testMessage({ from: USER, to: 'carol@example.org', subject: 'stand-in submission' });
    const transport = nodemailer.createTransport({
      host: dovecot.host,
      port: dovecot.ports.submission,
      secure: false,
      requireTLS: true,
      tls: { ca: dovecot.caPem, servername: 'localhost' },
      auth: { type: 'OAuth2', user: USER, accessToken },
    });
    const before = sink.messages.length;
    const loginsBefore = dovecot.logins().length;
    await transport.sendMail({ envelope: { from: USER, to: ['carol@example.org'] }, raw });
    transport.close();
    const [msg] = (await sink.waitForMessages(before + 1)).slice(before);
    expect(msg!.mailFrom).toBe(USER);
    expect(msg!.rcptTo).toEqual(['carol@example.org']);
    expect(msg!.raw.toString('latin1')).toMatch(/^Received: /);
    expect(msg!.afterReceived.toString('utf8')).toBe(raw);
    expect(msg!.afterReceived.equals(Buffer.from(raw, 'utf8'))).toBe(true);
    const [login] = await dovecot.waitForLogins({ count: 1, since: loginsBefore });
    expect(login).toMatchObject({ protocol: 'submission', user: USER, tls: true });
  });
});
