/**
 * The upstream IMAP login against a scripted TLS server: each test says what the server answers to
 * each line the proxy sends, and checks what the proxy made of it.
 */
import type { AddressInfo } from 'node:net';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import type { ConnectionConfig, ResolvedAccount } from '../../../src/config/types.js';
import { imapUpstreamLogin } from '../../../src/proxy/imap/upstream.js';
import { getTestCerts } from '../../helpers/certs.js';

const certs = getTestCerts();
let server: Server | undefined;
const sockets = new Set<TLSSocket>();
afterEach(async () => {
  for (const s of sockets) s.destroy();
  sockets.clear();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

/** `greeting`, then for each received line the reply function's output (undefined: say nothing). */
async function scripted(
  greeting: string,
  reply: (line: string, n: number) => string | undefined,
): Promise<{ port: number; received: string[] }> {
  const received: string[] = [];
  server = createServer({ cert: certs.certPem, key: certs.keyPem }, (socket: TLSSocket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.write(greeting);
    let buffer = '';
    socket.on('data', (d: Buffer) => {
      buffer += d.toString('utf8');
      for (let i = buffer.indexOf('\r\n'); i >= 0; i = buffer.indexOf('\r\n')) {
        const line = buffer.slice(0, i);
        buffer = buffer.slice(i + 2);
        received.push(line);
        const out = reply(line, received.length);
        if (out === 'CLOSE') socket.destroy();
        else if (out !== undefined) socket.write(out);
      }
    });
  });
  await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
  return { port: (server?.address() as AddressInfo).port, received };
}

function account(port: number, sasl: 'xoauth2' | 'oauthbearer' = 'xoauth2'): ResolvedAccount {
  const connection = {
    name: 'c',
    sasl,
    ca: certs.caPem,
    imap: { host: '127.0.0.1', port, tls: 'implicit' },
  } as unknown as ConnectionConfig;
  return { id: 'joe@example.com', username: 'joe', email: 'joe@example.com', connection, entry: 'joe' };
}

const OK_GREETING = '* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] hi\r\n';
const tagOf = (line: string): string => line.split(' ')[0] ?? '';

describe('imapUpstreamLogin', () => {
  it('uses SASL-IR and takes the capabilities from an untagged CAPABILITY before the OK', async () => {
    const { port, received } = await scripted(
      OK_GREETING,
      (line) => `* CAPABILITY IMAP4rev1 IDLE\r\n${tagOf(line)} OK done\r\n`,
    );
    const login = imapUpstreamLogin(5_000);
    const up = await login.connect(account(port), new AbortController().signal);
    expect(await login.authenticate(up, account(port), 'tok')).toEqual({ ok: true });
    expect(up.postLoginCapabilities).toBe('IMAP4rev1 IDLE');
    expect(up.loginText).toBe('done');
    expect(received[0]).toMatch(/^xp1 AUTHENTICATE XOAUTH2 [A-Za-z0-9+/=]+$/);
    login.close(up);
  });

  it('answers an error continuation once and reports the final NO as reusable', async () => {
    const { port, received } = await scripted(OK_GREETING, (line, n) =>
      n === 1
        ? '+ eyJzdGF0dXMiOiI0MDEifQ==\r\n'
        : `xp1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n`,
    );
    const login = imapUpstreamLogin(5_000);
    const up = await login.connect(account(port), new AbortController().signal);
    expect(await login.authenticate(up, account(port), 'tok')).toEqual({
      ok: false,
      reason: '[AUTHENTICATIONFAILED] Invalid credentials (Failure)',
      reusable: true,
    });
    expect(received[1]).toBe('');
    login.close(up);
  });

  it('fails the dialogue on endless challenges', async () => {
    const { port } = await scripted(OK_GREETING, () => '+ eyJ9\r\n');
    const login = imapUpstreamLogin(5_000);
    const up = await login.connect(account(port), new AbortController().signal);
    await expect(login.authenticate(up, account(port), 'tok')).rejects.toMatchObject({
      code: 'upstream-unavailable',
    });
  });

  it.each([
    ['a BYE greeting', '* BYE too busy\r\n', /server refused: too busy/],
    ['a PREAUTH greeting', '* PREAUTH hi\r\n', /unexpected greeting/],
    ['garbage', 'HTTP/1.1 400 Bad Request\r\n', /unexpected greeting/],
  ])('refuses %s', async (_name, greeting, message) => {
    const { port } = await scripted(greeting, () => undefined);
    await expect(
      imapUpstreamLogin(5_000).connect(account(port), new AbortController().signal),
    ).rejects.toMatchObject({
      code: 'upstream-unavailable',
      message,
    });
  });

  it('times out a server that never answers the login', async () => {
    const { port } = await scripted(OK_GREETING, () => undefined);
    const login = imapUpstreamLogin(300);
    const up = await login.connect(account(port), new AbortController().signal);
    await expect(login.authenticate(up, account(port), 'tok')).rejects.toMatchObject({
      code: 'upstream-unavailable',
      detail: 'timed out during login',
    });
  });

  it.each(['UNAVAILABLE', 'SERVERBUG', 'INUSE'])(
    'turns NO [%s] into upstream-unavailable (no retry worth a new token)',
    async (code) => {
      const { port } = await scripted(OK_GREETING, (line) => `${tagOf(line)} NO [${code}] busy now\r\n`);
      const login = imapUpstreamLogin(5_000);
      const up = await login.connect(account(port), new AbortController().signal);
      await expect(login.authenticate(up, account(port), 'tok')).rejects.toMatchObject({
        code: 'upstream-unavailable',
        detail: 'busy now',
      });
      login.close(up);
    },
  );

  it.each(['AUTHORIZATIONFAILED', 'CONTACTADMIN', 'EXPIRED', 'PRIVACYREQUIRED'])(
    'turns NO [%s] into upstream-rejected with the upstream text',
    async (code) => {
      const { port } = await scripted(OK_GREETING, (line) => `${tagOf(line)} NO [${code}] not you\r\n`);
      const login = imapUpstreamLogin(5_000);
      const up = await login.connect(account(port), new AbortController().signal);
      await expect(login.authenticate(up, account(port), 'tok')).rejects.toMatchObject({
        code: 'upstream-rejected',
        detail: `[${code}] not you`,
      });
      login.close(up);
    },
  );

  it.each(['[AUTHENTICATIONFAILED] Invalid credentials', 'Invalid credentials'])(
    'reports NO %s as a token refusal (worth one refresh)',
    async (text) => {
      const { port } = await scripted(OK_GREETING, (line) => `${tagOf(line)} NO ${text}\r\n`);
      const login = imapUpstreamLogin(5_000);
      const up = await login.connect(account(port), new AbortController().signal);
      expect(await login.authenticate(up, account(port), 'tok')).toEqual({
        ok: false,
        reason: text,
        reusable: true,
      });
      login.close(up);
    },
  );

  it('reports any NO after the error continuation as a token refusal', async () => {
    const { port } = await scripted(OK_GREETING, (line, n) =>
      n === 1 ? '+ eyJzdGF0dXMiOiI0MDEifQ==\r\n' : `xp1 NO [CONTACTADMIN] token invalid\r\n`,
    );
    const login = imapUpstreamLogin(5_000);
    const up = await login.connect(account(port), new AbortController().signal);
    expect(await login.authenticate(up, account(port), 'tok')).toMatchObject({
      ok: false,
      reason: '[CONTACTADMIN] token invalid',
    });
    login.close(up);
  });

  it('reads literals inside responses and reports a BAD login as a refusal', async () => {
    const { port } = await scripted('* OK hi\r\n', (line, n) => {
      if (n === 1)
        return `* CAPABILITY IMAP4rev1 AUTH=OAUTHBEARER\r\n* ID ("name" {4}\r\nfake)\r\n${tagOf(line)} OK caps\r\n`;
      return `${tagOf(line)} BAD no\r\n`;
    });
    const login = imapUpstreamLogin(5_000);
    const up = await login.connect(account(port, 'oauthbearer'), new AbortController().signal);
    expect([...(up.capabilities ?? [])]).toEqual(['IMAP4REV1', 'AUTH=OAUTHBEARER']);
    const outcome = await login.authenticate(up, account(port, 'oauthbearer'), 'tok');
    expect(outcome).toMatchObject({ ok: false, reason: 'no' });
    login.close(up);
  });

  it('sends the payload after the continuation when SASL-IR is not offered', async () => {
    const { port, received } = await scripted('* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] hi\r\n', (line, n) =>
      n === 1 ? '+ \r\n' : `xp1 OK [CAPABILITY IMAP4rev1 MOVE] yes\r\n`,
    );
    const login = imapUpstreamLogin(5_000);
    const up = await login.connect(account(port), new AbortController().signal);
    expect(await login.authenticate(up, account(port), 'tok')).toEqual({ ok: true });
    expect(received[0]).toBe('xp1 AUTHENTICATE XOAUTH2');
    expect(Buffer.from(received[1] ?? '', 'base64').toString()).toBe(
      'user=joe@example.com\x01auth=Bearer tok\x01\x01',
    );
    expect(up.postLoginCapabilities).toBe('IMAP4rev1 MOVE');
    login.close(up);
  });

  it('refuses an account whose connection has no IMAP server', async () => {
    const a = account(1);
    delete (a.connection as { imap?: unknown }).imap;
    await expect(imapUpstreamLogin(5_000).connect(a, new AbortController().signal)).rejects.toMatchObject({
      code: 'upstream-unavailable',
      detail: 'no IMAP server configured',
    });
  });
});
