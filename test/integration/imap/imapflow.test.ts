/**
 * The IMAP proxy driven by a real client library (imapflow), forcing each of our login paths, over
 * every TLS combination of both legs, with a byte-exact fetch, a 20 MB literal and IDLE.
 */
import { createHash, randomBytes } from 'node:crypto';
import { ImapFlow } from 'imapflow';
import { afterEach, describe, expect, it } from 'vitest';
import type { TlsMode } from '../../../src/config/types.js';
import { getTestCerts } from '../../helpers/certs.js';
import {
  EMAIL,
  PASSWORD,
  USER,
  eventually,
  makeMessage,
  sessionLines,
  startImapEnv,
  type ImapEnv,
} from './env.js';

let env: ImapEnv | undefined;
let clients: ImapFlow[] = [];
afterEach(async () => {
  for (const c of clients) c.close();
  clients = [];
  await env?.close();
  env = undefined;
});

interface ClientOptions {
  loginMethod?: 'LOGIN' | 'AUTH=PLAIN';
  listenerTls?: TlsMode;
  pass?: string;
  /** Lines imapflow logs as sent, to check which login command it really used. */
  sent?: string[];
  /** Let imapflow use COMPRESS=DEFLATE when offered (off by default to keep traffic readable). */
  compress?: boolean;
}

function client(e: ImapEnv, opts: ClientOptions = {}): ImapFlow {
  const tls = opts.listenerTls ?? 'none';
  const sent = opts.sent;
  const c = new ImapFlow({
    host: '127.0.0.1',
    port: e.port,
    secure: tls === 'implicit',
    doSTARTTLS: tls === 'starttls',
    tls: { ca: getTestCerts().caPem, servername: 'localhost' },
    auth: {
      user: USER,
      pass: opts.pass ?? PASSWORD,
      ...(opts.loginMethod ? { loginMethod: opts.loginMethod } : {}),
    },
    logger: sent
      ? {
          debug: (o: { src?: string; msg?: string; data?: string }) => {
            if (o.src === 'c' && typeof o.msg === 'string') sent.push(o.msg);
          },
          trace: () => undefined,
          info: () => undefined,
          warn: () => undefined,
          error: () => undefined,
        }
      : false,
    disableAutoIdle: true,
    disableCompression: opts.compress !== true,
    connectionTimeout: 30_000,
    greetingTimeout: 30_000,
  });
  clients.push(c);
  return c;
}

const body = Buffer.from(
  'Hello Alice,\r\ntrailing spaces   \r\n\ttab, ümlauts, a lone \n LF, NUL-free 8bit: \xff\r\n.\r\n',
  'latin1',
);

describe('IMAP proxy driven by imapflow', () => {
  it.each(['LOGIN', 'AUTH=PLAIN'] as const)(
    'logs in with %s and fetches a message byte-exact',
    async (loginMethod) => {
      const message = makeMessage('first', body);
      env = await startImapEnv({ listenerTls: 'none', upstreamTls: 'implicit', messages: [message] });
      const sent: string[] = [];
      const c = client(env, { loginMethod, sent });
      await c.connect();
      const loginLine = sent.find((l) => / (LOGIN|AUTHENTICATE) /i.test(l)) ?? '';
      expect(loginLine).toMatch(loginMethod === 'LOGIN' ? /^\S+ LOGIN / : /^\S+ AUTHENTICATE PLAIN/);
      expect(c.capabilities.has('IDLE')).toBe(true); // learned from the upstream's post-login CAPABILITY
      await c.mailboxOpen('INBOX');
      const fetched = await c.fetchOne('1', { source: true });
      expect(fetched && fetched.source?.equals(message)).toBe(true);
      await c.logout();
      expect(env.upstream.authAttempts).toEqual([
        { mechanism: 'XOAUTH2', user: EMAIL, ok: true, saslIr: true },
      ]);
      await eventually(() => sessionLines(env!).length === 1);
      const [line] = sessionLines(env);
      expect(line).toMatchObject({ protocol: 'imap', account: EMAIL, username: USER, outcome: 'relayed' });
      expect(Number(line?.bytesToClient)).toBeGreaterThan(message.length);
      expect(env.logText()).not.toContain(PASSWORD);
    },
  );

  it.each([
    ['none', 'starttls'],
    ['starttls', 'implicit'],
    ['starttls', 'starttls'],
    ['implicit', 'implicit'],
    ['implicit', 'starttls'],
  ] as const)('client leg %s, upstream leg %s', async (listenerTls, upstreamTls) => {
    const message = makeMessage('tls', body);
    env = await startImapEnv({ listenerTls, upstreamTls, messages: [message] });
    const c = client(env, { listenerTls, loginMethod: 'AUTH=PLAIN' });
    await c.connect();
    await c.mailboxOpen('INBOX');
    const fetched = await c.fetchOne('1', { source: true });
    expect(fetched && fetched.source?.equals(message)).toBe(true);
    await c.logout();
    const commands = env.upstream.commands[0] ?? [];
    expect(commands.includes('STARTTLS')).toBe(upstreamTls === 'starttls');
  });

  it('moves a 20 MB literal through the relay unchanged', { timeout: 120_000 }, async () => {
    const big = makeMessage(
      'big',
      randomBytes(20 * 1024 * 1024)
        .toString('base64')
        .slice(0, 20 * 1024 * 1024),
    );
    env = await startImapEnv({ listenerTls: 'implicit', upstreamTls: 'implicit', messages: [big] });
    const c = client(env, { listenerTls: 'implicit', loginMethod: 'LOGIN' });
    await c.connect();
    await c.mailboxOpen('INBOX');
    const fetched = await c.fetchOne('1', { source: true });
    const digest = (b: Buffer | undefined): string =>
      createHash('sha256')
        .update(b ?? Buffer.alloc(0))
        .digest('hex');
    expect(fetched && fetched.source?.length).toBe(big.length);
    expect(digest(fetched ? fetched.source : undefined)).toBe(digest(big));
    await c.logout();
    await eventually(() => sessionLines(env!).length === 1);
    expect(Number(sessionLines(env)[0]?.bytesToClient)).toBeGreaterThan(big.length);
  });

  it('passes IDLE through: updates arrive while idling, DONE ends it', async () => {
    env = await startImapEnv({
      listenerTls: 'none',
      upstreamTls: 'implicit',
      messages: [makeMessage('one', body)],
    });
    const c = client(env, { loginMethod: 'LOGIN' });
    await c.connect();
    await c.mailboxOpen('INBOX');
    const exists = new Promise<number>((resolve) =>
      c.on('exists', (data: { count: number }) => resolve(data.count)),
    );
    const idling = c.idle();
    await eventually(() => env!.upstream.idling === 1);
    expect(env.upstream.pushUntagged('* 2 EXISTS')).toBe(1);
    expect(await exists).toBe(2);
    await c.noop(); // breaks IDLE with DONE
    await idling;
    expect(env.upstream.idling).toBe(0);
    expect(env.upstream.commands[0]).toContain('IDLE');
    await c.logout();
  });

  it('passes COMPRESS=DEFLATE through: the client and the upstream compress end to end', async () => {
    const message = makeMessage('compressed', body);
    env = await startImapEnv({
      listenerTls: 'none',
      upstreamTls: 'implicit',
      messages: [message],
      fake: { compress: true },
    });
    const c = client(env, { loginMethod: 'LOGIN', compress: true });
    await c.connect();
    await c.mailboxOpen('INBOX');
    const fetched = await c.fetchOne('1', { source: true });
    expect(fetched && fetched.source?.equals(message)).toBe(true);
    await c.logout();
    expect(env.upstream.compressedSessions).toBe(1);
    expect(env.upstream.commands[0]).toContain('COMPRESS DEFLATE');
  });

  it('rejects a wrong password with an authentication failure', async () => {
    env = await startImapEnv({ listenerTls: 'none', upstreamTls: 'implicit' });
    const c = client(env, { loginMethod: 'LOGIN', pass: 'not the password' });
    await expect(c.connect()).rejects.toMatchObject({ authenticationFailed: true });
    expect(env.upstream.connections).toBe(0);
  });
});
