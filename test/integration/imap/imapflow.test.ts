import { ImapFlow } from 'imapflow';
import { afterEach, describe, expect, it } from 'vitest';
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
afterEach(async () => {
  await env?.close();
  env = undefined;
});

function client(
  e: ImapEnv,
  opts: { loginMethod?: 'LOGIN' | 'AUTH=PLAIN'; secure?: boolean; starttls?: boolean; pass?: string } = {},
) {
  return new ImapFlow({
    host: '127.0.0.1',
    port: e.port,
    secure: opts.secure ?? false,
    ...(opts.starttls === undefined ? { doSTARTTLS: false } : { doSTARTTLS: opts.starttls }),
    tls: { ca: getTestCerts().caPem, servername: 'localhost' },
    auth: {
      user: USER,
      pass: opts.pass ?? PASSWORD,
      ...(opts.loginMethod ? { loginMethod: opts.loginMethod } : {}),
    },
    logger: false,
    disableAutoIdle: true,
    connectionTimeout: 20_000,
    greetingTimeout: 20_000,
  });
}

const plainBody = Buffer.from(
  'Hello Alice,\r\nline with trailing spaces   \r\n\tand a tab, ümlauts, and a lone \n LF\r\n.\r\n',
  'utf8',
);

describe('IMAP proxy driven by imapflow', () => {
  it.each(['LOGIN', 'AUTH=PLAIN'] as const)(
    'logs in with %s and fetches a message byte-exact',
    async (loginMethod) => {
      const message = makeMessage('first', plainBody);
      env = await startImapEnv({ listenerTls: 'none', upstreamTls: 'implicit', messages: [message] });
      const c = client(env, { loginMethod });
      await c.connect();
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
});
