import { describe, expect, it } from 'vitest';
import { ProxyError } from '../../../src/errors.js';
import { Harness, b64, plain } from './front-harness.js';

const EHLO_PLAIN =
  '250-proxy.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-SIZE 36700160\r\n250 AUTH PLAIN LOGIN\r\n';

describe('SMTP front: greeting, EHLO, simple commands', () => {
  it('greets and advertises exactly the shared extensions', () => {
    const h = new Harness();
    expect(h.wire).toBe('220 proxy.test ESMTP xoauth-proxy ready\r\n');
    expect(h.send('EHLO client.example\r\n')).toBe(EHLO_PLAIN);
  });

  it('HELO, NOOP, RSET, unknown, not implemented, QUIT', () => {
    const h = new Harness();
    expect(h.send('HELO c\r\nNOOP\r\nRSET\r\nFOO bar\r\nVRFY root\r\n\r\nQUIT\r\nNOOP\r\n')).toBe(
      '250 proxy.test\r\n250 2.0.0 OK\r\n250 2.0.0 OK\r\n500 5.5.2 Command not recognized\r\n502 5.5.1 Command not implemented\r\n500 5.5.2 Command not recognized\r\n221 2.0.0 Bye\r\n',
    );
    expect(h.ofType('close')).toEqual([{ type: 'close', outcome: 'client-quit' }]);
  });

  it('MAIL/RCPT/DATA/BDAT before authentication get 530 5.7.0', () => {
    const h = new Harness();
    const out = h.send('EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nBDAT 10 LAST\r\n');
    expect(out.split('\r\n').slice(-5, -1)).toEqual(Array(4).fill('530 5.7.0 Authentication required'));
  });

  it('an HTTP request line ends the connection', () => {
    const h = new Harness();
    expect(h.send('GET / HTTP/1.1\r\nHost: x\r\n')).toBe(
      '421 4.7.0 HTTP requests are not accepted here, closing connection\r\n',
    );
    expect(h.front.state.phase.name).toBe('closed');
  });

  it('AUTH needs EHLO/HELO first (the upstream gets the client name)', () => {
    const h = new Harness();
    expect(h.send(`AUTH PLAIN ${plain('u', 'p')}\r\n`)).toBe('503 5.5.1 Send EHLO first\r\n');
    expect(h.ofType('authenticate')).toEqual([]);
  });

  it('unknown mechanism gets 504', () => {
    const h = new Harness();
    expect(
      h
        .send('EHLO c\r\nAUTH XOAUTH2 abc\r\n')
        .endsWith('504 5.5.4 Unrecognized authentication mechanism\r\n'),
    ).toBe(true);
  });
});

describe('SMTP front: STARTTLS listener', () => {
  it('offers STARTTLS and not AUTH in clear text; refuses AUTH with 530 until TLS', () => {
    const h = new Harness({ tls: 'starttls' });
    const ehlo = h.send('EHLO c\r\n');
    expect(ehlo.endsWith('250 STARTTLS\r\n')).toBe(true);
    expect(ehlo).not.toContain('AUTH');
    expect(h.send(`AUTH PLAIN ${plain('u', 'p')}\r\n`)).toBe(
      '530 5.7.0 Must issue a STARTTLS command first\r\n',
    );
    expect(h.send('MAIL FROM:<a@b>\r\n')).toBe('530 5.7.0 Must issue a STARTTLS command first\r\n');
  });

  it('after the handshake: no STARTTLS, AUTH offered, EHLO required again, injected bytes dropped', () => {
    const h = new Harness({ tls: 'starttls' });
    h.send('EHLO c\r\n');
    // A man in the middle appends a command after STARTTLS in the same packet (RFC 3207 §5).
    expect(h.send(`STARTTLS\r\nAUTH PLAIN ${plain('u', 'p')}\r\n`)).toBe('220 2.0.0 Ready to start TLS\r\n');
    expect(h.ofType('start-tls')).toHaveLength(1);
    expect(h.front.reading).toBe(false);
    expect(h.resolve({ type: 'tls-ready' })).toBe('');
    expect(h.ofType('authenticate')).toEqual([]);
    expect(h.send(`AUTH PLAIN ${plain('u', 'p')}\r\n`)).toBe('503 5.5.1 Send EHLO first\r\n');
    const ehlo = h.send('EHLO c2\r\n');
    expect(ehlo).not.toContain('STARTTLS');
    expect(ehlo).toContain('250 AUTH PLAIN LOGIN\r\n');
    expect(h.send('STARTTLS\r\n')).toBe('503 5.5.1 TLS already active\r\n');
  });

  it('implicit TLS listener: secure from the start, no STARTTLS', () => {
    const h = new Harness({ tls: 'implicit' });
    expect(h.send('EHLO c\r\n')).toBe(EHLO_PLAIN);
    expect(h.send('STARTTLS\r\n')).toBe('503 5.5.1 TLS already active\r\n');
  });

  it('plain listener: STARTTLS not available', () => {
    const h = new Harness({ tls: 'none' });
    expect(h.send('EHLO c\r\nSTARTTLS\r\n').endsWith('502 5.5.1 STARTTLS not available\r\n')).toBe(true);
  });
});

describe("SMTP front: the upstreams' extensions before login", () => {
  const learned = (extensions: string[]) => ({ upstream: { kind: 'learned' as const, extensions } });

  it('advertises the given extensions instead of the fixed list, then our own STARTTLS and AUTH', () => {
    const h = new Harness({
      tls: 'starttls',
      ...learned(['PIPELINING', 'CHUNKING', 'SMTPUTF8', 'SIZE 41943040']),
    });
    expect(h.send('EHLO c\r\n')).toBe(
      '250-proxy.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-SMTPUTF8\r\n250-SIZE 41943040\r\n250 STARTTLS\r\n',
    );
    h.send('STARTTLS\r\n');
    h.resolve({ type: 'tls-ready' });
    expect(h.send('EHLO c\r\n')).toBe(
      '250-proxy.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-SMTPUTF8\r\n250-SIZE 41943040\r\n250 AUTH PLAIN LOGIN\r\n',
    );
  });

  it('an upstream with no extensions leaves only ours; the fallback keeps the configured SIZE', () => {
    expect(new Harness(learned([])).send('EHLO c\r\n')).toBe('250-proxy.test\r\n250 AUTH PLAIN LOGIN\r\n');
    expect(new Harness({ upstream: { kind: 'fallback' } }).send('EHLO c\r\n')).toBe(EHLO_PLAIN);
  });

  it("BDAT before AUTH is still refused: the extensions are the upstream's, after login", () => {
    const h = new Harness(learned(['CHUNKING']));
    h.send('EHLO c\r\n');
    expect(h.send('BDAT 10 LAST\r\n')).toBe('530 5.7.0 Authentication required\r\n');
  });
});

describe('SMTP front: AUTH PLAIN and LOGIN in every form', () => {
  const expectAuth = (h: Harness, username: string, password: string, heloName = 'c') =>
    expect(h.ofType('authenticate')).toEqual([{ type: 'authenticate', username, password, heloName }]);

  it('PLAIN with initial response', () => {
    const h = new Harness();
    expect(h.send(`EHLO c\r\nAUTH PLAIN ${plain('alice', 's3cret')}\r\n`)).toBe(EHLO_PLAIN);
    expectAuth(h, 'alice', 's3cret');
    expect(h.resolve({ type: 'auth-succeeded' })).toBe('235 2.7.0 Authentication successful\r\n');
    expect(h.ofType('start-relay')).toHaveLength(1);
  });

  it('PLAIN after an empty 334 challenge', () => {
    const h = new Harness();
    expect(h.send('HELO c\r\nAUTH PLAIN\r\n')).toBe('250 proxy.test\r\n334 \r\n');
    expect(h.send(`${plain('alice', 'pw')}\r\n`)).toBe('');
    expectAuth(h, 'alice', 'pw');
  });

  it('PLAIN with an empty initial response "=" is malformed', () => {
    const h = new Harness();
    expect(h.send('EHLO c\r\nAUTH PLAIN =\r\n').endsWith('501 5.5.2 Malformed AUTH PLAIN response\r\n')).toBe(
      true,
    );
  });

  it('LOGIN in three steps', () => {
    const h = new Harness();
    h.send('EHLO c\r\n');
    expect(h.send('AUTH LOGIN\r\n')).toBe('334 VXNlcm5hbWU6\r\n');
    expect(h.send(`${b64('alice')}\r\n`)).toBe('334 UGFzc3dvcmQ6\r\n');
    expect(h.send(`${b64('pä ss')}\r\n`)).toBe('');
    expectAuth(h, 'alice', 'pä ss');
  });

  it('LOGIN with the user name as initial response', () => {
    const h = new Harness();
    h.send('EHLO c\r\n');
    expect(h.send(`AUTH LOGIN ${b64('alice')}\r\n`)).toBe('334 UGFzc3dvcmQ6\r\n');
    h.send(`${b64('pw')}\r\n`);
    expectAuth(h, 'alice', 'pw');
  });

  it.each([
    ['PLAIN at the 334', ['AUTH PLAIN', '*']],
    ['LOGIN at the user name', ['AUTH LOGIN', '*']],
    ['LOGIN at the password', ['AUTH LOGIN', b64('alice'), '*']],
    ['LOGIN at the password after an initial response', [`AUTH LOGIN ${b64('alice')}`, '*']],
  ])('"*" cancels %s with 501 and the dialogue goes on', (_name, lines) => {
    const h = new Harness();
    h.send('EHLO c\r\n');
    const out = h.send(lines.map((l) => `${l}\r\n`).join(''));
    expect(out.endsWith('501 5.7.0 Authentication cancelled\r\n')).toBe(true);
    expect(h.send('NOOP\r\n')).toBe('250 2.0.0 OK\r\n');
    expect(h.ofType('authenticate')).toEqual([]);
  });

  it.each([
    ['PLAIN initial response', ['AUTH PLAIN @@@@']],
    ['PLAIN after 334', ['AUTH PLAIN', '@@@@']],
    ['LOGIN initial response', ['AUTH LOGIN ####']],
    ['LOGIN user name', ['AUTH LOGIN', 'not base64!']],
    ['LOGIN password', ['AUTH LOGIN', b64('alice'), 'not base64!']],
  ])('bad base64 in %s gets 501 5.5.2 and no password is echoed', (_name, lines) => {
    const h = new Harness();
    h.send('EHLO c\r\n');
    const out = h.send(lines.map((l) => `${l}\r\n`).join(''));
    expect(out.endsWith('501 5.5.2 Cannot decode response\r\n')).toBe(true);
    expect(h.wire).not.toMatch(/@@@@|####|not base64/);
    expect(h.front.state.phase.name).toBe('command');
  });
});

describe('SMTP front: pipelining after AUTH', () => {
  it('keeps everything after the AUTH line buffered, byte-exact, for the upstream', () => {
    const h = new Harness();
    const after = 'MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n';
    h.send(`EHLO c\r\nAUTH PLAIN ${plain('alice', 'pw')}\r\n${after}`);
    expect(h.ofType('authenticate')).toHaveLength(1);
    expect(h.wire).not.toContain('530');
    // More pipelined bytes arrive while the login runs.
    h.send('Subject: x\r\n');
    h.resolve({ type: 'auth-succeeded' });
    expect(h.front.takeRemainder().toString('latin1')).toBe(`${after}Subject: x\r\n`);
    expect(h.send('RSET\r\n')).toBe('');
  });

  it('after a failed login the buffered commands are answered by the proxy', () => {
    const h = new Harness();
    h.send(`EHLO c\r\nAUTH PLAIN ${plain('alice', 'pw')}\r\nMAIL FROM:<a@b>\r\n`);
    const out = h.resolve({ type: 'auth-failed', error: new ProxyError('bad-credentials', 'no') });
    expect(out).toBe('535 5.7.8 Authentication credentials invalid\r\n530 5.7.0 Authentication required\r\n');
  });
});

describe('SMTP front: login failures and limits', () => {
  const login = (h: Harness) => h.send(`AUTH PLAIN ${plain('alice', 'pw')}\r\n`);

  it.each([
    [new ProxyError('bad-credentials', 'x'), undefined, '535 5.7.8 Authentication credentials invalid'],
    [
      new ProxyError('needs-consent', 'x'),
      'Grant access at https://proxy.example/consent',
      '535 5.7.8 Account needs consent from the mailbox owner. Grant access at https://proxy.example/consent',
    ],
    [
      new ProxyError('token-unavailable', 'x'),
      undefined,
      '454 4.7.0 Temporary authentication failure, try again later',
    ],
    [
      new ProxyError('upstream-unavailable', 'x'),
      undefined,
      '454 4.7.0 Temporary authentication failure, try again later',
    ],
    [
      new ProxyError('upstream-rejected', 'x', {
        detail:
          '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.',
      }),
      undefined,
      '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.',
    ],
    [
      new ProxyError('upstream-rejected', 'x', {
        detail: '535-5.7.8 Username and Password not accepted.\n535 5.7.8 More info',
      }),
      undefined,
      '535-5.7.8 Username and Password not accepted.\r\n535 5.7.8 More info',
    ],
    [
      new ProxyError('upstream-rejected', 'x', { detail: '535 Error: Username and Password not accepted' }),
      undefined,
      '535 5.7.8 Error: Username and Password not accepted',
    ],
    [
      new ProxyError('upstream-rejected', 'x', { detail: '550-first\n551 second' }),
      undefined,
      '535 5.7.8 Upstream server refused the login: 550-first 551 second',
    ],
    [
      new ProxyError('upstream-rejected', 'x', { detail: 'invalid token' }),
      undefined,
      '535 5.7.8 Upstream server refused the login: invalid token',
    ],
    [
      new ProxyError('store', 'boom'),
      undefined,
      '454 4.7.0 Temporary authentication failure, try again later',
    ],
  ])('%s -> reply', (error, consentHint, expected) => {
    const h = new Harness();
    h.send('EHLO c\r\n');
    login(h);
    const out = h.resolve(
      consentHint === undefined
        ? { type: 'auth-failed', error }
        : { type: 'auth-failed', error, consentHint },
    );
    expect(out).toBe(`${expected}\r\n`);
  });

  it('consent hints cannot inject reply lines', () => {
    const h = new Harness();
    h.send('EHLO c\r\n');
    login(h);
    const out = h.resolve({
      type: 'auth-failed',
      error: new ProxyError('needs-consent', 'x'),
      consentHint: 'a\r\n250 b',
    });
    expect(out.split('\r\n')).toHaveLength(2);
  });

  it('failed logins per connection: the last allowed failure closes with 421; temporary ones do not count', () => {
    const h = new Harness({ maxFailedLogins: 2 });
    h.send('EHLO c\r\n');
    login(h);
    h.resolve({ type: 'auth-failed', error: new ProxyError('token-unavailable', 'x') });
    login(h);
    expect(h.resolve({ type: 'auth-failed', error: new ProxyError('bad-credentials', 'x') })).toBe(
      '535 5.7.8 Authentication credentials invalid\r\n',
    );
    login(h);
    expect(h.resolve({ type: 'auth-failed', error: new ProxyError('bad-credentials', 'x') })).toBe(
      '535 5.7.8 Authentication credentials invalid\r\n421 4.7.0 Too many failed authentication attempts, closing connection\r\n',
    );
    expect(h.ofType('close')).toEqual([
      { type: 'close', outcome: 'bad-credentials', reason: 'too many failed logins' },
    ]);
  });

  it('commands before login: at the cap passes, one over closes', () => {
    const h = new Harness({ maxCommandsBeforeLogin: 3 });
    expect(h.send('NOOP\r\nNOOP\r\nNOOP\r\n')).toBe('250 2.0.0 OK\r\n'.repeat(3));
    expect(h.send('NOOP\r\nNOOP\r\n')).toBe(
      '421 4.7.0 Too many commands before authentication, closing connection\r\n',
    );
    expect(h.ofType('close')).toEqual([{ type: 'close', outcome: 'limit', reason: 'commands before login' }]);
  });

  it('line too long closes with 500 5.5.6', () => {
    const h = new Harness({}, 20);
    expect(h.send(`EHLO ${'x'.repeat(15)}\r\n`)).toContain('250 AUTH PLAIN LOGIN');
    expect(h.send(`EHLO ${'x'.repeat(16)}`)).toBe('500 5.5.6 Line too long\r\n');
    expect(h.ofType('close')).toEqual([{ type: 'close', outcome: 'limit', reason: 'line-too-long' }]);
  });

  it('idle timeout closes with 421 4.4.2', () => {
    const h = new Harness();
    expect(h.resolve({ type: 'idle-timeout' })).toBe('421 4.4.2 Idle timeout, closing connection\r\n');
    expect(h.send('NOOP\r\n')).toBe('');
  });

  it('ignores everything after the relay started', () => {
    const h = new Harness();
    h.send(`EHLO c\r\nAUTH PLAIN ${plain('a', 'b')}\r\n`);
    h.resolve({ type: 'auth-succeeded' });
    expect(h.resolve({ type: 'idle-timeout' })).toBe('');
    expect(h.front.state.phase.name).toBe('relay');
  });
});
