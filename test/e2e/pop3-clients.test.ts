/**
 * POP3 through the running proxy binary to a real Dovecot POP3 server that validates every XOAUTH2 /
 * OAUTHBEARER token with the fake authorization server: curl over every local listener kind and both
 * upstream kinds, a raw client for USER/PASS, AUTH PLAIN, a large RETR and DELE, and the token life cycle.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { getTestCerts } from '../helpers/certs.js';
import { requireDovecot, type DovecotLogin } from '../helpers/dovecot.js';
import type { LocalTls } from '../helpers/proxy-process.js';
import { RawPop3Client } from '../integration/pop3/raw-client.js';
import {
  bigMessage,
  LineClient,
  pop3Login,
  printLogsOnFailure,
  run,
  sha256,
  startWorld,
  testMessage,
  waitUntil,
  worldLogs,
  worldSecrets,
  xoauth2,
  type World,
} from './support.js';

const PW = 'pop3 pw ü 1';
/** curl user on `e2e`: the proxy reaches Dovecot's POP3S port. */
const ALICE = { email: 'alice@example.com', password: 'alice-pop3' };
/** curl user on `e2e-alt`: the proxy reaches Dovecot's POP3 port and upgrades with STLS. */
const BOB = { email: 'bob@example.com', password: 'bob-pop3', connection: 'e2e-alt' as const };
const RAW = 'carol@example.com';
const PIPE = 'pipe@example.com';
const EXPIRY = 'expiry@example.com';
const REVOKED = 'revoked@example.com';
const REFUSED = 'refused@example.com';
const REFUSED_STLS = 'refused-stls@example.com';
const REFUSED_BEARER = 'refused-bearer@example.com';
const WRONG = 'wrong-pw@example.com';

/** RFC 1939 §3: a multi-line body (status line already read) back to the message's bytes. */
function unstuff(body: Buffer): Buffer {
  const text = body.toString('latin1');
  if (!text.endsWith('.\r\n')) throw new Error('multi-line body without its terminator');
  const lines = text.slice(0, -3);
  return Buffer.from(lines.replace(/(^|\r\n)\.\./g, '$1.'), 'latin1');
}

describe.runIf(requireDovecot(['curl'], { pop3: true }))('POP3 clients through the proxy to Dovecot', () => {
  let world: World;
  /** The one message in each curl user's maildrop. */
  const message: Record<string, string> = {};

  beforeAll(async () => {
    world = await startWorld({
      pop3: true,
      accounts: [
        ALICE,
        BOB,
        ...[RAW, PIPE, REVOKED, WRONG].map((email) => ({ email, password: PW })),
        // Seeded with 1 s to live: expired by the time the test logs in.
        { email: EXPIRY, password: PW, accessTokenTtlSeconds: 1 },
        { email: REFUSED, password: PW, refusedAccessToken: true },
        { email: REFUSED_STLS, password: PW, refusedAccessToken: true, connection: 'e2e-alt' as const },
        { email: REFUSED_BEARER, password: PW, refusedAccessToken: true, connection: 'e2e-bearer' as const },
      ],
      listen: { imap: [], smtp: [], pop3: ['none', 'starttls', 'implicit'] },
      // Everything the proxy can log, so the last test can look for secrets in all of it.
      env: { LOG_LEVEL: 'trace' },
    });
    for (const user of [ALICE.email, BOB.email]) {
      // A line that starts with a dot: Dovecot dot-stuffs it, the client must get it back unstuffed.
      message[user] = testMessage({
        to: user,
        subject: `pop3 curl for ${user}`,
        body: `First line.\r\n.a line that starts with a dot\r\n..and one with two\r\nLast: grüße.`,
      });
      world.dovecot.deliver(user, message[user]!);
    }
  });
  afterAll(async () => world?.stop());
  afterEach(() => {
    world.auth.options.accessTokenTtlSeconds = undefined;
  });
  printLogsOnFailure(worldLogs(() => world));

  const pop3Port = (tls: LocalTls = 'none'): number => world.proxy.ports.pop3[tls]!;
  const pop3Logins = (l: DovecotLogin): boolean => l.protocol === 'pop3';

  function curlArgs(tls: LocalTls, user: { email: string; password: string }, path: string): string[] {
    const scheme = tls === 'implicit' ? 'pop3s' : 'pop3';
    const args = ['--silent', '--show-error', '--max-time', '30', '--user', `${user.email}:${user.password}`];
    if (tls !== 'none') args.push('--cacert', getTestCerts().caFile);
    if (tls === 'starttls') args.push('--ssl-reqd');
    return [...args, `${scheme}://127.0.0.1:${pop3Port(tls)}/${path}`];
  }

  it('the stand-in: Dovecot POP3 on 127.0.0.2 refuses a valid token before STLS and takes it after', async () => {
    const { accessToken } = world.auth.issueGrant(RAW);
    const before = world.dovecot.logins().length;
    const c = await LineClient.open({ host: world.dovecot.host, port: world.dovecot.ports.pop3! });
    try {
      await c.readUntil(/^\+OK/);
      c.send(`AUTH XOAUTH2 ${xoauth2(RAW, accessToken)}`);
      expect((await c.readUntil(/^[+-]/)).at(-1)).toMatch(/^-ERR \[AUTH\] Plaintext authentication disabled/);
      c.send('STLS');
      await c.readUntil(/^\+OK/);
      await c.startTls(world.dovecot.caPem);
      c.send(`AUTH XOAUTH2 ${xoauth2(RAW, accessToken)}`);
      expect((await c.readUntil(/^[+-]/)).at(-1)).toMatch(/^\+OK/);
      c.send('QUIT');
      await c.readUntil(/^\+OK/);
    } finally {
      c.close();
    }
    const [login] = await world.dovecot.waitForLogins({ count: 1, since: before, filter: pop3Logins });
    expect(login).toMatchObject({
      protocol: 'pop3',
      user: RAW,
      method: 'XOAUTH2',
      localPort: world.dovecot.ports.pop3,
      tls: true,
    });
  });

  describe.each([
    ['e2e: POP3S upstream', ALICE, 'pop3s'],
    ['e2e-alt: STLS upstream', BOB, 'pop3'],
  ] as const)('curl, %s', (_name, user, upstreamPort) => {
    it.each(['none', 'starttls', 'implicit'] as const)(
      'LIST and RETR 1 byte-exact over the local %s listener; Dovecot logged a TLS XOAUTH2 login',
      async (tls) => {
        const before = world.dovecot.logins().length;
        const raw = Buffer.from(message[user.email]!, 'utf8');

        const list = await run('curl', curlArgs(tls, user, ''));
        expect(list.stderr).toBe('');
        expect(list.code).toBe(0);
        expect(list.stdout.toString('latin1')).toBe(`1 ${raw.length}\r\n`);

        const retr = await run('curl', curlArgs(tls, user, '1'));
        expect(retr.stderr).toBe('');
        expect(retr.code).toBe(0);
        expect(retr.stdout.toString('latin1')).toBe(raw.toString('latin1'));

        // Two curl runs, two upstream logins, both over TLS on the port of this connection's kind.
        const logins = await world.dovecot.waitForLogins({
          count: 2,
          since: before,
          filter: (l) => pop3Logins(l) && l.user === user.email,
        });
        expect(logins).toHaveLength(2);
        for (const login of logins) {
          expect(login).toMatchObject({
            user: user.email,
            method: 'XOAUTH2',
            localPort: world.dovecot.ports[upstreamPort],
            tls: true,
          });
        }
      },
    );
  });

  it('USER/PASS from a raw client, then LIST, a 5 MB RETR byte-exact, DELE and QUIT: the message is gone', async () => {
    const small = Buffer.from(testMessage({ to: RAW, subject: 'raw small' }), 'utf8');
    const big = bigMessage(RAW, 'five megabytes', 5 * 1024 * 1024);
    world.dovecot.deliver(RAW, small);
    world.dovecot.deliver(RAW, big);
    const before = world.dovecot.logins().length;

    const c = await RawPop3Client.connect(pop3Port());
    try {
      expect(await c.line()).toMatch(/^\+OK /);
      expect(await c.command(`USER ${RAW}`)).toMatch(/^\+OK/);
      // PASS takes the rest of the line, spaces and UTF-8 included; the +OK text is Dovecot's own.
      expect(await c.command(`PASS ${PW}`)).toBe('+OK Logged in.');
      expect(await c.command('STAT')).toBe(`+OK 2 ${small.length + big.length}`);
      expect(await c.command('LIST')).toMatch(/^\+OK/);
      expect((await c.multiline()).toString('latin1')).toBe(`1 ${small.length}\r\n2 ${big.length}\r\n.\r\n`);

      expect(await c.command('RETR 2')).toMatch(/^\+OK/);
      const got = unstuff(await c.multiline());
      expect(got.length).toBe(big.length);
      expect(sha256(got)).toBe(sha256(big));

      expect(await c.command('DELE 2')).toMatch(/^\+OK/);
      expect(await c.command('QUIT')).toMatch(/^\+OK/);
      await c.waitClosed();
    } finally {
      c.close();
    }

    // A second session (AUTH PLAIN this time) sees only the small message, byte-exact.
    const d = await RawPop3Client.connect(pop3Port());
    try {
      expect(await d.line()).toMatch(/^\+OK /);
      const plain = Buffer.from(`\0${RAW}\0${PW}`, 'utf8').toString('base64');
      expect(await d.command(`AUTH PLAIN ${plain}`)).toMatch(/^\+OK/);
      expect(await d.command('STAT')).toBe(`+OK 1 ${small.length}`);
      expect(await d.command('RETR 1')).toMatch(/^\+OK/);
      expect(unstuff(await d.multiline()).equals(small)).toBe(true);
      expect(await d.command('QUIT')).toMatch(/^\+OK/);
    } finally {
      d.close();
    }
    const logins = await world.dovecot.waitForLogins({
      count: 2,
      since: before,
      filter: (l) => pop3Logins(l) && l.user === RAW,
    });
    expect(logins.map((l) => [l.method, l.localPort, l.tls])).toEqual([
      ['XOAUTH2', world.dovecot.ports.pop3s, true],
      ['XOAUTH2', world.dovecot.ports.pop3s, true],
    ]);
  }, 120_000);

  it('commands pipelined with USER/PASS reach Dovecot in order after the login', async () => {
    const raw = Buffer.from(testMessage({ to: PIPE, subject: 'pipelined' }), 'utf8');
    world.dovecot.deliver(PIPE, raw);
    const c = await RawPop3Client.connect(pop3Port());
    try {
      expect(await c.line()).toMatch(/^\+OK /);
      c.write(`USER ${PIPE}\r\nPASS ${PW}\r\nSTAT\r\nCAPA\r\nTOP 1 0\r\nUIDL\r\nQUIT\r\n`);
      expect(await c.line()).toBe('+OK Send PASS');
      expect(await c.line()).toBe('+OK Logged in.');
      expect(await c.line()).toBe(`+OK 1 ${raw.length}`);
      // Dovecot's own CAPA (the proxy's lists USER and SASL PLAIN, Dovecot's after login does not).
      expect(await c.line()).toMatch(/^\+OK/);
      const capa = (await c.multiline()).toString('latin1').split('\r\n');
      expect(capa).toEqual(expect.arrayContaining(['TOP', 'UIDL', 'PIPELINING']));
      expect(capa).not.toContain('USER');
      expect(await c.line()).toMatch(/^\+OK/);
      const head = raw.subarray(0, raw.indexOf('\r\n\r\n') + 4);
      expect(unstuff(await c.multiline()).equals(head)).toBe(true);
      expect(await c.line()).toMatch(/^\+OK/);
      expect((await c.multiline()).toString('latin1')).toMatch(/^1 \S+\r\n\.\r\n$/);
      expect(await c.line()).toMatch(/^\+OK Logging out/);
      await c.waitClosed();
    } finally {
      c.close();
    }
  });

  it('a token that expires between two logins is refreshed exactly once, and the second login works', async () => {
    await waitUntil(world.grants.get(EXPIRY)!.expiresAt + 50);
    world.auth.options.accessTokenTtlSeconds = 5;
    const refreshes = world.auth.counts.refresh;

    // The seeded token has expired: this login refreshes it.
    expect(await pop3Login(pop3Port(), EXPIRY, PW)).toMatch(/^\+OK/);
    expect(world.auth.counts.refresh - refreshes).toBe(1);
    const refreshedAt = Date.now();

    // The fresh token expires (5 s, less the 1 s margin) before the next login: one more refresh.
    await waitUntil(refreshedAt + 5_000);
    expect(await pop3Login(pop3Port(), EXPIRY, PW)).toMatch(/^\+OK/);
    expect(world.auth.counts.refresh - refreshes).toBe(2);
    expect(world.auth.lastTokenRequest?.get('grant_type')).toBe('refresh_token');
    await world.dovecot.waitForLogins({ count: 2, filter: (l) => pop3Logins(l) && l.user === EXPIRY });
  });

  it('a revoked grant: -ERR [AUTH] with the consent text', async () => {
    expect(await pop3Login(pop3Port(), REVOKED, PW)).toMatch(/^\+OK/);
    world.auth.revoke(REVOKED);
    const reply = await pop3Login(pop3Port(), REVOKED, PW);
    expect(reply).toMatch(/^-ERR \[AUTH\] Access to this mailbox has not been granted or was revoked\./);
    expect(reply).toMatch(/consent/i);
  });

  it.each([
    ['XOAUTH2 over a POP3S upstream', REFUSED, 'XOAUTH2', 'pop3s'],
    ['XOAUTH2 over an STLS upstream', REFUSED_STLS, 'XOAUTH2', 'pop3'],
    ['OAUTHBEARER over a POP3S upstream', REFUSED_BEARER, 'OAUTHBEARER', 'pop3s'],
  ] as const)(
    '%s: a token Dovecot refuses although it looks valid is refreshed once and retried on the same connection',
    async (_kind, user, method, upstreamPort) => {
      const refreshes = world.auth.counts.refresh;
      expect(await pop3Login(pop3Port(), user, PW)).toMatch(/^\+OK/);
      expect(world.auth.counts.refresh - refreshes).toBe(1);

      // Dovecot really refused the first token (tokeninfo said 400) ...
      const log = await world.dovecot.waitForLog(
        new RegExp(`oauth2\\(${user.replace(/\./g, '\\.')},.*Token validation failed`),
      );
      const [login] = await world.dovecot.waitForLogins({
        count: 1,
        filter: (l) => pop3Logins(l) && l.user === user,
      });
      expect(login).toMatchObject({ method, localPort: world.dovecot.ports[upstreamPort], tls: true });
      // ... and the login that followed was in the same Dovecot session: the proxy answered the error
      // continuation itself (Dovecot only sends its -ERR after that) and retried on that connection.
      const session = /session=<([^>]+)>/.exec(login!.line)?.[1];
      expect(session).toBeDefined();
      const failure = log
        .split('\n')
        .find((line) => line.includes(`(${user},`) && line.includes('Token validation failed'));
      expect(failure).toContain(`<${session}>`);
    },
  );

  it('a wrong local password: -ERR [AUTH] and Dovecot sees no login (not even an attempt)', async () => {
    const before = world.dovecot.logins().length;
    const tokeninfo = world.auth.counts.tokeninfo;
    expect(await pop3Login(pop3Port(), WRONG, 'not the password')).toBe('-ERR [AUTH] Authentication failed');
    expect(world.auth.counts.tokeninfo).toBe(tokeninfo);

    // The right password next: its login is the only one Dovecot logs for this user since `before`, so
    // the failed attempt left no login behind (waiting for this one bounds the wait for a late line).
    expect(await pop3Login(pop3Port(), WRONG, PW)).toMatch(/^\+OK/);
    const logins = await world.dovecot.waitForLogins({
      count: 1,
      since: before,
      filter: (l) => l.user === WRONG,
    });
    expect(logins).toHaveLength(1);
    expect(world.auth.counts.tokeninfo).toBe(tokeninfo + 1);
  });

  it('after all of the above, the proxy log holds no password, access token or refresh token', async () => {
    const secrets = await worldSecrets(world, [PW, ALICE.password, BOB.password]);
    const log = world.proxy.output();
    expect(log).toContain('"protocol":"pop3"');
    expect(log).toContain(RAW);
    for (const secret of secrets) expect(log.includes(secret), 'a secret is in the proxy log').toBe(false);
    // AUTH PLAIN carries the password base64-encoded.
    expect(log).not.toContain(Buffer.from(`\0${RAW}\0${PW}`, 'utf8').toString('base64'));
  });
});
