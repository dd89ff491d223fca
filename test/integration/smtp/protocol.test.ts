/**
 * Wire-level behaviour of the SMTP proxy with a raw client: pipelining across the AUTH boundary,
 * STARTTLS injection, either side closing, limits, old TLS versions, shutdown, and the log line.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  EMAIL,
  PASSWORD,
  USER,
  eventually,
  sessionLines,
  startSmtpEnv,
  type EnvOptions,
  type SmtpEnv,
} from './env.js';
import { RawSmtpClient, plainIr } from './raw-client.js';

let env: SmtpEnv | undefined;
let client: RawSmtpClient | undefined;
afterEach(async () => {
  client?.close();
  client = undefined;
  await env?.close();
  env = undefined;
});

async function start(options: Partial<EnvOptions> = {}): Promise<SmtpEnv> {
  env = await startSmtpEnv({ listenerTls: 'none', upstreamTls: 'implicit', ...options });
  return env;
}

async function connect(e: SmtpEnv, tls = false): Promise<RawSmtpClient> {
  client = await RawSmtpClient.connect(e.port, tls);
  expect(await client.reply()).toBe('220 proxy.test ESMTP xoauth-proxy ready');
  return client;
}

describe('SMTP proxy on the wire', () => {
  it('commands pipelined in the same packet as AUTH reach the upstream in order, answered by the upstream', async () => {
    const e = await start();
    const c = await connect(e);
    c.write(
      `EHLO scanner.local\r\nAUTH PLAIN ${plainIr(USER, PASSWORD)}\r\nMAIL FROM:<${EMAIL}>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n`,
    );
    expect(await c.reply()).toMatch(/^250-proxy\.test\r\n/);
    expect(await c.reply()).toBe('235 2.7.0 Authentication successful');
    // smtp-server's own texts ("Accepted", "End data with"), so these came from the upstream.
    expect(await c.reply()).toBe('250 Accepted');
    expect(await c.reply()).toBe('250 Accepted');
    expect(await c.reply()).toMatch(/^354 End data with/);
    c.write('Subject: pipelined\r\n\r\nbody\r\n.\r\n');
    expect(await c.reply()).toMatch(/^250 2\.0\.0 OK 1 - gsmtp$/);
    expect(await c.command('QUIT')).toBe('221 Bye');
    await c.waitClosed();
    expect(e.upstream.messages[0]!.raw.toString()).toBe('Subject: pipelined\r\n\r\nbody\r\n');
    await eventually(() => sessionLines(e).length === 1);
    const line = sessionLines(e)[0]!;
    expect(line).toMatchObject({ outcome: 'relayed', username: USER, account: EMAIL });
    expect(line.bytesFromClient).toBeGreaterThan(100);
    expect(line.bytesToClient).toBeGreaterThan(100);
  });

  it('STARTTLS injection: a command sent in clear text behind STARTTLS is never executed', async () => {
    const e = await start({ listenerTls: 'starttls' });
    const c = await connect(e);
    await c.command('EHLO scanner.local');
    c.write(`STARTTLS\r\nAUTH PLAIN ${plainIr(USER, PASSWORD)}\r\n`);
    expect(await c.reply()).toBe('220 2.0.0 Ready to start TLS');
    await c.startTls();
    expect(await c.command('NOOP')).toBe('250 2.0.0 OK');
    expect(e.authenticator.attempts).toEqual([]);
    // EHLO is needed again after the handshake (RFC 3207 §4.2), and now AUTH is offered.
    expect(await c.command(`AUTH PLAIN ${plainIr(USER, PASSWORD)}`)).toBe('503 5.5.1 Send EHLO first');
    expect(await c.command('EHLO scanner.local')).toMatch(/250 AUTH PLAIN LOGIN$/);
    expect(await c.command(`AUTH PLAIN ${plainIr(USER, PASSWORD)}`)).toBe(
      '235 2.7.0 Authentication successful',
    );
  });

  it('the upstream going away ends the client connection', async () => {
    const e = await start();
    const c = await connect(e);
    await c.command('EHLO scanner.local');
    expect(await c.command(`AUTH PLAIN ${plainIr(USER, PASSWORD)}`)).toBe(
      '235 2.7.0 Authentication successful',
    );
    e.upstream.dropConnections();
    await c.waitClosed();
    await eventually(() => sessionLines(e).length === 1);
    expect(sessionLines(e)[0]).toMatchObject({ outcome: 'relayed' });
  });

  it('the client going away ends the upstream connection', async () => {
    const e = await start();
    const c = await connect(e);
    await c.command('EHLO scanner.local');
    expect(await c.command(`AUTH PLAIN ${plainIr(USER, PASSWORD)}`)).toBe(
      '235 2.7.0 Authentication successful',
    );
    expect(e.upstream.openConnections).toBe(1);
    c.close();
    await eventually(() => e.upstream.openConnections === 0);
    await eventually(() => sessionLines(e).length === 1);
  });

  it('idle before login: 421 4.4.2 and close', async () => {
    const e = await start({ settings: { preAuthIdleTimeoutMs: 300 } });
    const c = await connect(e);
    expect(await c.reply()).toBe('421 4.4.2 Idle timeout, closing connection');
    await c.waitClosed();
    await eventually(() => sessionLines(e).length === 1);
    expect(sessionLines(e)[0]).toMatchObject({ outcome: 'timeout' });
  });

  it('commands before login: at the cap passes, one over closes with 421', async () => {
    const e = await start({ settings: { maxCommandsBeforeLogin: 3 } });
    const c = await connect(e);
    for (let i = 0; i < 3; i++) expect(await c.command('NOOP')).toBe('250 2.0.0 OK');
    expect(await c.command('NOOP')).toBe(
      '421 4.7.0 Too many commands before authentication, closing connection',
    );
    await c.waitClosed();
    await eventually(() => sessionLines(e).length === 1);
    expect(sessionLines(e)[0]).toMatchObject({ outcome: 'limit' });
  });

  it('line length: at the cap passes, one over closes with 500 5.5.6', async () => {
    const e = await start({ settings: { maxLineLength: 64 } });
    const c = await connect(e);
    expect(await c.command(`NOOP ${'x'.repeat(59)}`)).toBe('250 2.0.0 OK');
    c.write(`NOOP ${'x'.repeat(30)}`);
    c.write(`${'x'.repeat(30)}\r\n`);
    expect(await c.reply()).toBe('500 5.5.6 Line too long');
    await c.waitClosed();
  });

  it('failed logins per connection: the third wrong password ends the connection', async () => {
    const e = await start({ settings: { maxFailedLoginsPerConnection: 3 } });
    const c = await connect(e);
    await c.command('EHLO scanner.local');
    for (let i = 0; i < 2; i++) {
      expect(await c.command(`AUTH PLAIN ${plainIr(USER, `wrong${i}`)}`)).toBe(
        '535 5.7.8 Authentication credentials invalid',
      );
    }
    c.write(`AUTH PLAIN ${plainIr(USER, 'wrong2')}\r\n`);
    expect(await c.reply()).toBe('535 5.7.8 Authentication credentials invalid');
    expect(await c.reply()).toBe('421 4.7.0 Too many failed authentication attempts, closing connection');
    await c.waitClosed();
    await eventually(() => sessionLines(e).length === 1);
    expect(sessionLines(e)[0]).toMatchObject({ outcome: 'bad-credentials' });
  });

  it('old devices: minVersion TLSv1 lets a TLS 1.0 client in; the default refuses it', async () => {
    const old = { minVersion: 'TLSv1', maxVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' } as const;
    const e = await start({ listenerTls: 'implicit', minVersion: 'TLSv1' });
    client = await RawSmtpClient.connect(e.port, true, old);
    expect(await client.reply()).toBe('220 proxy.test ESMTP xoauth-proxy ready');
    client.close();
    await e.close();
    env = undefined;

    const strict = await start({ listenerTls: 'implicit' });
    await expect(RawSmtpClient.connect(strict.port, true, old)).rejects.toThrow();
  });

  it('shutdown: pre-auth sessions get 421 4.3.2, relayed ones are closed', async () => {
    const e = await start();
    const waiting = await RawSmtpClient.connect(e.port);
    await waiting.reply();
    const relayed = await connect(e);
    await relayed.command('EHLO scanner.local');
    expect(await relayed.command(`AUTH PLAIN ${plainIr(USER, PASSWORD)}`)).toBe(
      '235 2.7.0 Authentication successful',
    );
    await e.proxy.close();
    expect(await waiting.reply()).toBe('421 4.3.2 Service shutting down');
    await waiting.waitClosed();
    await relayed.waitClosed();
    await eventually(() => sessionLines(e).length === 2);
    expect(
      sessionLines(e)
        .map((l) => l.outcome)
        .sort(),
    ).toEqual(['shutdown', 'shutdown']);
  });

  it('shutdown during a STARTTLS handshake: no clear-text 421 into the handshake, logged as shutdown', async () => {
    const e = await start({ listenerTls: 'starttls' });
    const c = await connect(e);
    await c.command('EHLO scanner.local');
    expect(await c.command('STARTTLS')).toMatch(/^220 /);
    // The client never starts the handshake: the session waits in starting-tls when the proxy stops.
    await e.proxy.close();
    await c.waitClosed();
    expect(c.unread).toBe('');
    await eventually(() => sessionLines(e).length === 1);
    expect(sessionLines(e)[0]).toMatchObject({ outcome: 'shutdown' });
  });

  it('logs one line per session and never a password or token', async () => {
    const e = await start({ accessToken: 'stale' });
    const c = await connect(e);
    await c.command('EHLO scanner.local');
    await c.command(`AUTH PLAIN ${plainIr(USER, 'Wr0ng-Secret!9')}`);
    await c.command('AUTH LOGIN');
    await c.command(Buffer.from(USER).toString('base64'));
    expect(await c.command(Buffer.from(PASSWORD).toString('base64'))).toBe(
      '235 2.7.0 Authentication successful',
    );
    expect(await c.command('QUIT')).toBe('221 Bye');
    await eventually(() => sessionLines(e).length === 1);
    const text = e.logText();
    for (const secret of [
      PASSWORD,
      'Wr0ng-Secret!9',
      plainIr(USER, PASSWORD),
      Buffer.from(PASSWORD).toString('base64'),
    ]) {
      expect(text).not.toContain(secret);
    }
    expect(text).not.toMatch(/Bearer|auth=/);
    expect(e.logLines.filter((l) => l.msg === 'session end')).toHaveLength(1);
  });
});
