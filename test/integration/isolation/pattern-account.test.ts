/**
 * One user's credentials never open another user's mailbox. A `*@example.com` account serves alice and
 * bob, each with a grant and an app password of their own, through real IMAP, SMTP and POP3 fronts and
 * the fake upstreams (which accept a token only for the mailbox it was issued for). The config also
 * carries a password on the pattern, as configs written before it became an error did: it must open
 * no mailbox at all. And a username that smuggles `^Aauth=Bearer` is an unknown user.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveAccount } from '../../../src/config/accounts.js';
import { DEFAULTS } from '../../../src/config/defaults.js';
import type { Config, ListenerConfig } from '../../../src/config/types.js';
import { LocalAuthenticator } from '../../../src/credentials/authenticator.js';
import { createAppPassword } from '../../../src/credentials/app-passwords.js';
import { openStore } from '../../../src/store/index.js';
import { TokenManager } from '../../../src/oauth/token-manager.js';
import type { Store } from '../../../src/oauth/types.js';
import { createImapServer } from '../../../src/proxy/imap/server.js';
import { createPop3Server } from '../../../src/proxy/pop3/server.js';
import type { ProxyDeps, ProxyServer } from '../../../src/proxy/shared/types.js';
import { createSmtpServer } from '../../../src/proxy/smtp/server.js';
import { getTestCerts } from '../../helpers/certs.js';
import { fakeConnection, startFakeAuthServer, type FakeAuthServer } from '../../helpers/fake-auth-server.js';
import { startFakeImapServer, type FakeImapServer } from '../../helpers/fake-imap-server.js';
import { startFakePop3Server, type FakePop3Server } from '../../helpers/fake-pop3-server.js';
import { startFakeSmtpUpstream, type FakeSmtpUpstream } from '../../helpers/fake-smtp-upstream.js';
import { captureLogger, seedConsentGrant, testPasswordHash } from '../../helpers/proxy-env.js';
import { RawImap } from '../imap/raw-client.js';
import { RawPop3Client } from '../pop3/raw-client.js';
import { RawSmtpClient, plainIr } from '../smtp/raw-client.js';

const ALICE = 'alice@example.com';
const BOB = 'bob@example.com';
const SHARED = 'the-old-shared-domain-password';
const INJECTED = `${ALICE}\x01auth=Bearer stolen\x01\x01user=${BOB}`;

let dir: string;
let auth: FakeAuthServer;
let imapUp: FakeImapServer;
let smtpUp: FakeSmtpUpstream;
let pop3Up: FakePop3Server;
let store: Store;
let logLines: Record<string, unknown>[];
const servers: ProxyServer[] = [];
const ports = { imap: 0, smtp: 0, pop3: 0 };
const pw: Record<string, string> = {};

beforeAll(async () => {
  const certs = getTestCerts();
  auth = await startFakeAuthServer();
  const check = (t: string) => auth.checkAccessToken(t);
  imapUp = await startFakeImapServer({ tls: 'implicit', checkAccessToken: check });
  smtpUp = await startFakeSmtpUpstream({ tls: 'implicit', checkAccessToken: check });
  pop3Up = await startFakePop3Server({ tls: 'implicit', checkAccessToken: check });
  const connection = fakeConnection(auth, {
    imap: imapUp.server,
    smtp: smtpUp.server,
    pop3: pop3Up.server,
    ca: certs.caPem,
  });
  dir = mkdtempSync(join(tmpdir(), 'xoauth-isolation-'));
  const config: Config = {
    file: join(dir, 'config.yaml'),
    listen: { imap: [], smtp: [], pop3: [], http: [] },
    store: { path: join(dir, 'tokens.db'), keyFile: join(dir, 'store.key') },
    connections: new Map([[connection.name, connection]]),
    accounts: [
      { username: '*@example.com', connection: connection.name, password: await testPasswordHash(SHARED) },
    ],
    settings: {
      ...DEFAULTS.settings,
      limits: { ...DEFAULTS.settings.limits, upstreamConnectTimeoutMs: 10_000 },
      // Every failure here comes from 127.0.0.1; the limiter is not what this file tests.
      loginLimiter: { ...DEFAULTS.settings.loginLimiter, lockAfter: 1000 },
    },
    http: { consentHint: 'command' },
    notify: DEFAULTS.notify,
  };
  store = await openStore(config.store, { env: {} });
  for (const email of [ALICE, BOB]) {
    const account = resolveAccount(config, email);
    if (!account) throw new Error(`${email} does not resolve`);
    await seedConsentGrant({ store, account, auth, connection });
    pw[email] = (await createAppPassword(store, account.id, 'phone')).password;
  }
  const captured = captureLogger();
  logLines = captured.logLines;
  const deps: ProxyDeps = {
    config,
    logger: captured.logger,
    tokens: new TokenManager({ config, store, logger: captured.logger }),
    authenticator: new LocalAuthenticator({
      config,
      store,
      logger: captured.logger,
      sleep: () => Promise.resolve(),
    }),
    consentHint: () => 'ask the admin',
  };
  const listener: ListenerConfig = { host: '127.0.0.1', port: 0, tls: 'none' };
  const imap = createImapServer(listener, deps);
  const smtp = createSmtpServer(listener, deps, { serverName: 'proxy.test' });
  const pop3 = createPop3Server(listener, deps);
  servers.push(imap, smtp, pop3);
  ports.imap = (await imap.listen()).port;
  ports.smtp = (await smtp.listen()).port;
  ports.pop3 = (await pop3.listen()).port;
});

afterAll(async () => {
  for (const s of servers) await s.close();
  await Promise.all([imapUp?.close(), smtpUp?.close(), pop3Up?.close(), auth?.close()]);
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

const quote = (s: string) => `"${s.replace(/["\\]/g, '\\$&')}"`;

/** One IMAP LOGIN (username as a literal, so any byte can be sent); true when it succeeded. */
async function imapLogin(username: string, password: string): Promise<boolean> {
  const c = await RawImap.connect(ports.imap);
  try {
    await c.waitFor('\r\n');
    c.write(`a1 LOGIN {${Buffer.byteLength(username)}+}\r\n${username} ${quote(password)}\r\n`);
    const text = await c.waitFor(/\r\na1 (OK|NO|BAD)[^\r]*\r\n/);
    return /\r\na1 OK/.test(text);
  } finally {
    c.close();
  }
}

async function smtpLogin(username: string, password: string): Promise<boolean> {
  const c = await RawSmtpClient.connect(ports.smtp);
  try {
    await c.reply();
    await c.command('EHLO client.test');
    const reply = await c.command(`AUTH PLAIN ${plainIr(username, password)}`);
    return reply.startsWith('235');
  } finally {
    c.close();
  }
}

async function pop3Login(username: string, password: string): Promise<boolean> {
  const c = await RawPop3Client.connect(ports.pop3);
  try {
    await c.line();
    c.write(`USER ${username}\r\n`);
    if (!(await c.line()).startsWith('+OK')) return false;
    c.write(`PASS ${password}\r\n`);
    return (await c.line()).startsWith('+OK');
  } finally {
    c.close();
  }
}

/** Mailboxes the upstreams let in, across the three fakes. */
const openedMailboxes = (): string[] => [
  ...imapUp.authAttempts.filter((a) => a.ok).map((a) => a.user.toLowerCase()),
  ...smtpUp.authAttempts.filter((a) => a.ok).map((a) => a.username.toLowerCase()),
  ...pop3Up.authAttempts.filter((a) => a.ok).map((a) => a.user.toLowerCase()),
];
/** Every user name any upstream was asked to log in, right or wrong. */
const askedUpstream = (): string[] => [
  ...imapUp.authAttempts.map((a) => a.user),
  ...smtpUp.authAttempts.map((a) => a.username),
  ...pop3Up.authAttempts.map((a) => a.user),
];

describe.each([
  ['IMAP', imapLogin],
  ['SMTP', smtpLogin],
  ['POP3', pop3Login],
] as const)('a pattern account on %s', (_name, login) => {
  it("a user's own app password opens their own mailbox and nobody else's", async () => {
    const before = openedMailboxes().length;
    expect(await login(ALICE, pw[ALICE] as string)).toBe(true);
    expect(await login(BOB, pw[BOB] as string)).toBe(true);
    expect(openedMailboxes().slice(before)).toEqual([ALICE, BOB]);

    const asked = askedUpstream().length;
    expect(await login(BOB, pw[ALICE] as string)).toBe(false);
    expect(await login(ALICE, pw[BOB] as string)).toBe(false);
    expect(await login(`Bob@Example.COM`, pw[ALICE] as string)).toBe(false);
    // the shared password a pattern once could carry opens no mailbox at all
    expect(await login(ALICE, SHARED)).toBe(false);
    expect(await login(BOB, SHARED)).toBe(false);
    expect(askedUpstream().slice(asked)).toEqual([]);
  });

  it('a username carrying ^Aauth=Bearer is an unknown user and never reaches the upstream', async () => {
    const asked = askedUpstream().length;
    const logged = logLines.length;
    for (const password of [pw[ALICE] as string, pw[BOB] as string, SHARED]) {
      expect(await login(INJECTED, password)).toBe(false);
    }
    expect(askedUpstream().slice(asked)).toEqual([]);
    const reasons = logLines
      .slice(logged)
      .filter((l) => l.msg === 'local login failed')
      .map((l) => l.reason);
    expect(reasons.length).toBeGreaterThan(0);
    expect(reasons.every((r) => r === 'unknown user')).toBe(true);
  });
});
