/**
 * The upstream SMTP dialogue against a scripted server, for what smtp-server cannot show: the exact
 * lines we send (two-step AUTH, the empty answer to an error challenge, OAUTHBEARER's AQ==),
 * multi-line greetings, temporary refusals, garbage and silence.
 */
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { ConnectionConfig, ResolvedAccount } from '../../../src/config/types.js';
import { isProxyError } from '../../../src/errors.js';
import { smtpUpstreamLogin } from '../../../src/proxy/smtp/upstream.js';
import { getTestCerts } from '../../helpers/certs.js';

type Script = (io: { send(line: string): void; next(): Promise<string>; socket: TLSSocket }) => Promise<void>;

interface Scripted {
  port: number;
  received: string[];
  done: Promise<void>;
  close(): Promise<void>;
}

const servers: Scripted[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function scripted(script: Script): Promise<Scripted> {
  const certs = getTestCerts();
  const received: string[] = [];
  let finish!: () => void;
  let fail!: (e: unknown) => void;
  const done = new Promise<void>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  const sockets = new Set<TLSSocket>();
  const server = createTlsServer({ key: certs.keyPem, cert: certs.certPem }, (socket) => {
    sockets.add(socket);
    let buffer = '';
    const waiters: (() => void)[] = [];
    socket.on('data', (d: Buffer) => {
      buffer += d.toString('latin1');
      waiters.splice(0).forEach((w) => w());
    });
    socket.on('error', () => undefined);
    const next = async (): Promise<string> => {
      for (;;) {
        const nl = buffer.indexOf('\r\n');
        if (nl >= 0) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + 2);
          received.push(line);
          return line;
        }
        await new Promise<void>((r) => waiters.push(r));
      }
    };
    script({ send: (line) => socket.write(`${line}\r\n`), next, socket }).then(finish, fail);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const s: Scripted = {
    port: (server.address() as AddressInfo).port,
    received,
    done,
    close: () =>
      new Promise<void>((r) => {
        for (const sock of sockets) sock.destroy();
        server.close(() => r());
      }),
  };
  servers.push(s);
  return s;
}

function account(port: number, sasl: ConnectionConfig['sasl'] = 'xoauth2'): ResolvedAccount {
  const connection = {
    name: 'scripted',
    provider: 'custom',
    sasl,
    ca: getTestCerts().caPem,
    smtp: { host: '127.0.0.1', port, tls: 'implicit' },
  } as unknown as ConnectionConfig;
  return { id: 'joe@example.com', username: 'joe', email: 'joe@example.com', connection, entry: 'joe' };
}

const TOKEN = `ey${'x'.repeat(3000)}`;
const login = (timeoutMs = 5_000) => smtpUpstreamLogin({ heloName: 'client.local', timeoutMs });
const signal = () => new AbortController().signal;

async function greetAndEhlo(io: Parameters<Script>[0]): Promise<void> {
  io.send('220-smtp.example.com ESMTP');
  io.send('220 second greeting line');
  expect(await io.next()).toBe('EHLO client.local');
  io.send('250-smtp.example.com at your service');
  io.send('250-AUTH LOGIN PLAIN XOAUTH2 OAUTHBEARER');
  io.send('250 ENHANCEDSTATUSCODES');
}

describe('upstream SMTP dialogue', () => {
  it('sends AUTH XOAUTH2 without an initial response, then the (long) token on its own line', async () => {
    const s = await scripted(async (io) => {
      await greetAndEhlo(io);
      expect(await io.next()).toBe('AUTH XOAUTH2');
      io.send('334 ');
      const payload = Buffer.from(await io.next(), 'base64').toString();
      expect(payload).toBe(`user=joe@example.com\x01auth=Bearer ${TOKEN}\x01\x01`);
      io.send('235 2.7.0 Accepted');
    });
    const l = login();
    const up = await l.connect(account(s.port), signal());
    expect(up.extensions).toContain('AUTH LOGIN PLAIN XOAUTH2 OAUTHBEARER');
    expect(await l.authenticate(up, account(s.port), TOKEN)).toEqual({ ok: true });
    await s.done;
    l.close(up);
  });

  it('answers the error challenge with an empty line and reports a reusable rejection', async () => {
    const s = await scripted(async (io) => {
      await greetAndEhlo(io);
      expect(await io.next()).toBe('AUTH XOAUTH2');
      io.send('334 ');
      await io.next();
      io.send(
        `334 ${Buffer.from('{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}').toString('base64')}`,
      );
      expect(await io.next()).toBe('');
      io.send('535-5.7.8 Username and Password not accepted.');
      io.send('535 5.7.8 https://support.google.com/mail/?p=BadCredentials');
    });
    const l = login();
    const up = await l.connect(account(s.port), signal());
    expect(await l.authenticate(up, account(s.port), TOKEN)).toEqual({
      ok: false,
      reason:
        '535-5.7.8 Username and Password not accepted.\n535 5.7.8 https://support.google.com/mail/?p=BadCredentials',
      reusable: true,
    });
    await s.done;
    l.close(up);
  });

  it('OAUTHBEARER: GS2 header with host and port, and AQ== after an error challenge', async () => {
    let port = 0;
    const s = await scripted(async (io) => {
      await greetAndEhlo(io);
      expect(await io.next()).toBe('AUTH OAUTHBEARER');
      io.send('334 ');
      const payload = Buffer.from(await io.next(), 'base64').toString();
      expect(payload).toBe(
        `n,a=joe@example.com,\x01host=127.0.0.1\x01port=${port}\x01auth=Bearer ${TOKEN}\x01\x01`,
      );
      io.send(`334 ${Buffer.from('{"status":"invalid_token"}').toString('base64')}`);
      expect(await io.next()).toBe('AQ==');
      io.send('535 5.7.8 Bad token');
    });
    port = s.port;
    const l = login();
    const acct = account(s.port, 'oauthbearer');
    const up = await l.connect(acct, signal());
    expect(await l.authenticate(up, acct, TOKEN)).toMatchObject({ ok: false, reason: '535 5.7.8 Bad token' });
    await s.done;
    l.close(up);
  });

  it("Exchange's direct 535 5.7.3 (no challenge) is a token rejection worth a retry", async () => {
    const s = await scripted(async (io) => {
      await greetAndEhlo(io);
      expect(await io.next()).toBe('AUTH XOAUTH2');
      io.send('334 ');
      await io.next();
      io.send('535 5.7.3 Authentication unsuccessful [AM0PR01CA0001.eurprd01.prod.exchangelabs.com]');
      expect(await io.next()).toBe('AUTH XOAUTH2');
      io.send('334 ');
      await io.next();
      io.send('235 2.7.0 Authentication successful');
    });
    const l = login();
    const up = await l.connect(account(s.port), signal());
    expect(await l.authenticate(up, account(s.port), 'old')).toMatchObject({ ok: false, reusable: true });
    expect(await l.authenticate(up, account(s.port), 'new')).toEqual({ ok: true });
    await s.done;
    l.close(up);
  });

  it('a 4xx to AUTH is temporary (upstream-unavailable)', async () => {
    const s = await scripted(async (io) => {
      await greetAndEhlo(io);
      await io.next();
      io.send('454 4.7.0 Too many login attempts, please try again later.');
    });
    const l = login();
    const up = await l.connect(account(s.port), signal());
    const err = await l.authenticate(up, account(s.port), TOKEN).catch((e: unknown) => e);
    expect(isProxyError(err, 'upstream-unavailable')).toBe(true);
    expect((err as Error).message).toContain('454 4.7.0 Too many login attempts');
  });

  it('a policy refusal (535 5.7.139) ends the login without a retry (upstream-rejected)', async () => {
    const s = await scripted(async (io) => {
      await greetAndEhlo(io);
      await io.next();
      io.send('334 ');
      await io.next();
      io.send(
        '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.',
      );
    });
    const l = login();
    const up = await l.connect(account(s.port), signal());
    const err = await l.authenticate(up, account(s.port), TOKEN).catch((e: unknown) => e);
    expect(isProxyError(err, 'upstream-rejected')).toBe(true);
    expect((err as { detail?: string }).detail).toBe(
      '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.',
    );
  });

  it.each([
    [
      'a non-220 greeting',
      async (io: Parameters<Script>[0]) => io.send('554 5.3.2 not accepting connections'),
    ],
    ['a garbage greeting', async (io: Parameters<Script>[0]) => io.send('HTTP/1.1 400 Bad Request')],
    [
      'a refused EHLO',
      async (io: Parameters<Script>[0]) => {
        io.send('220 hi');
        await io.next();
        io.send('502 5.5.1 no');
      },
    ],
  ])('%s: upstream-unavailable', async (_name, script) => {
    const s = await scripted(script);
    const err = await login()
      .connect(account(s.port), signal())
      .catch((e: unknown) => e);
    expect(isProxyError(err, 'upstream-unavailable')).toBe(true);
  });

  it('silence after AUTH hits the deadline (upstream-unavailable)', async () => {
    const s = await scripted(async (io) => {
      await greetAndEhlo(io);
      await io.next();
      await new Promise((r) => setTimeout(r, 5_000));
    });
    const l = login(300);
    const up = await l.connect(account(s.port), signal());
    const started = Date.now();
    const err = await l.authenticate(up, account(s.port), TOKEN).catch((e: unknown) => e);
    expect(isProxyError(err, 'upstream-unavailable')).toBe(true);
    expect((err as Error).message).toContain('timed out');
    expect(Date.now() - started).toBeLessThan(4_000);
  });

  it('a certificate that does not chain to a trusted CA is refused', async () => {
    const s = await scripted(async (io) => {
      io.send('220 hi');
    });
    const acct = account(s.port);
    delete (acct.connection as { ca?: string }).ca;
    const err = await login()
      .connect(acct, signal())
      .catch((e: unknown) => e);
    expect(isProxyError(err, 'upstream-unavailable')).toBe(true);
  });
});
