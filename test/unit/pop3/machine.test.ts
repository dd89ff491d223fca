import { describe, expect, it } from 'vitest';
import { ProxyError } from '../../../src/errors.js';
import { b64, Harness, plain } from './front-harness.js';

const GREETING = '+OK xoauth-proxy POP3 ready\r\n';
const CAPA_PLAIN =
  '+OK Capability list follows\r\nUSER\r\nSASL PLAIN LOGIN\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n';
const CAPA_BEFORE_STLS = '+OK Capability list follows\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nSTLS\r\n.\r\n';
const NEEDS_LOGIN = '-ERR Not logged in: log in first with USER/PASS or AUTH PLAIN\r\n';
const TLS_REQUIRED = '-ERR [AUTH] Plain text login disallowed: use STLS first\r\n';

describe('POP3 front: greeting, CAPA, simple commands', () => {
  it('greets without an APOP timestamp and advertises only what is true before login', () => {
    const h = new Harness();
    expect(h.wire).toBe(GREETING);
    expect(h.wire).not.toMatch(/<.*@.*>/);
    expect(h.send('CAPA\r\n')).toBe(CAPA_PLAIN);
  });

  it('implicit TLS listener: USER and SASL, no STLS', () => {
    const h = new Harness({ tls: 'implicit' });
    expect(h.send('CAPA\r\n')).toBe(CAPA_PLAIN);
    expect(h.send('STLS\r\n')).toBe('-ERR TLS already active\r\n');
  });

  it('plain listener: STLS not available', () => {
    expect(new Harness().send('STLS\r\n')).toBe('-ERR STLS not available\r\n');
  });

  it('transaction commands before login say to log in first; unknown, empty, APOP, AUTH list', () => {
    const h = new Harness();
    expect(h.send('STAT\r\nLIST\r\nRETR 1\r\nDELE 1\r\nNOOP\r\nUIDL\r\nTOP 1 0\r\nRSET\r\n')).toBe(
      NEEDS_LOGIN.repeat(8),
    );
    expect(h.send('XYZZY\r\n\r\n')).toBe('-ERR Unknown command\r\n'.repeat(2));
    expect(h.send('APOP bob c4c9334bac560ecc979e58001b3e22fb\r\n')).toBe(
      '-ERR APOP not supported: use USER/PASS or AUTH PLAIN\r\n',
    );
    expect(h.send('AUTH\r\n')).toBe('+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n');
    expect(h.send('AUTH CRAM-MD5\r\n')).toBe('-ERR Unsupported authentication mechanism\r\n');
    expect(h.ofType('authenticate')).toEqual([]);
  });

  it('QUIT says goodbye and closes', () => {
    const h = new Harness();
    expect(h.send('QUIT\r\nCAPA\r\n')).toBe('+OK xoauth-proxy signing off\r\n');
    expect(h.ofType('close')).toEqual([{ type: 'close', outcome: 'client-quit' }]);
    expect(h.phase).toBe('closed');
  });

  it('an HTTP request line ends the connection', () => {
    const h = new Harness();
    expect(h.send('GET / HTTP/1.1\r\nHost: x\r\n')).toBe(
      '-ERR HTTP requests are not accepted here, closing connection\r\n',
    );
    expect(h.ofType('close')).toEqual([{ type: 'close', outcome: 'protocol-error', reason: 'HTTP request' }]);
  });
});

describe('POP3 front: USER/PASS', () => {
  it('USER then PASS with spaces and UTF-8: the whole rest of the line is the password', () => {
    const h = new Harness();
    expect(h.send('USER alice@example.com\r\n')).toBe('+OK Send PASS\r\n');
    expect(h.send('PASS Pässwörd with  spaces \r\n')).toBe('');
    expect(h.ofType('authenticate')).toEqual([
      { type: 'authenticate', username: 'alice@example.com', password: 'Pässwörd with  spaces ' },
    ]);
    expect(h.phase).toBe('authenticating');
    expect(h.front.reading).toBe(false);
  });

  it('PASS without USER is refused; the last USER wins; CAPA between keeps it', () => {
    const h = new Harness();
    expect(h.send('PASS x\r\n')).toBe('-ERR Send USER first\r\n');
    h.send('USER first\r\nUSER second\r\nCAPA\r\n');
    h.send('PASS pw\r\n');
    expect(h.ofType('authenticate')).toEqual([{ type: 'authenticate', username: 'second', password: 'pw' }]);
  });

  it('success: the upstream +OK text, then the relay; pipelined commands stay for the upstream', () => {
    const h = new Harness();
    h.send('USER u\r\nPASS p\r\nSTAT\r\nRETR 1\r\n');
    expect(h.front.buffered).toBe('STAT\r\nRETR 1\r\n'.length);
    expect(h.resolve({ type: 'auth-succeeded', text: 'Welcome.' })).toBe('+OK Welcome.\r\n');
    expect(h.ofType('start-relay')).toHaveLength(1);
    expect(h.phase).toBe('relay');
    expect(h.front.takeRemainder().toString()).toBe('STAT\r\nRETR 1\r\n');
    expect(h.send('NOOP\r\n')).toBe('');
  });

  it('success without upstream text still gives a well-formed +OK; control characters are stripped', () => {
    const a = new Harness();
    a.send('USER u\r\nPASS p\r\n');
    expect(a.resolve({ type: 'auth-succeeded' })).toBe('+OK Logged in\r\n');
    const b = new Harness();
    b.send('USER u\r\nPASS p\r\n');
    expect(b.resolve({ type: 'auth-succeeded', text: 'hi\r\n-ERR forged' })).toBe('+OK hi -ERR forged\r\n');
  });

  it('failure: RFC 1939 §7 back to USER; the pending USER is forgotten', () => {
    const h = new Harness();
    h.send('USER u\r\nPASS wrong\r\n');
    expect(h.resolve({ type: 'auth-failed', error: new ProxyError('bad-credentials', 'no') })).toBe(
      '-ERR [AUTH] Authentication failed\r\n',
    );
    expect(h.send('PASS again\r\n')).toBe('-ERR Send USER first\r\n');
  });

  it('lines pipelined after a failing PASS are read after the failure reply, in order', () => {
    const h = new Harness();
    h.send('USER u\r\nPASS wrong\r\nUSER u\r\nPASS right\r\n');
    expect(h.ofType('authenticate')).toHaveLength(1);
    expect(h.resolve({ type: 'auth-failed', error: new ProxyError('bad-credentials', 'no') })).toBe(
      '-ERR [AUTH] Authentication failed\r\n+OK Send PASS\r\n',
    );
    expect(h.ofType('authenticate').map((a) => a.password)).toEqual(['wrong', 'right']);
  });
});

describe('POP3 front: AUTH PLAIN (RFC 5034)', () => {
  it('with an initial response', () => {
    const h = new Harness();
    expect(h.send(`AUTH PLAIN ${plain('alice', 'pw with space')}\r\n`)).toBe('');
    expect(h.ofType('authenticate')).toEqual([
      { type: 'authenticate', username: 'alice', password: 'pw with space' },
    ]);
  });

  it('after the empty challenge `+ `', () => {
    const h = new Harness();
    expect(h.send('AUTH PLAIN\r\n')).toBe('+ \r\n');
    expect(h.send(`${plain('alice', 'pässwörd', 'alice')}\r\n`)).toBe('');
    expect(h.ofType('authenticate')).toEqual([
      { type: 'authenticate', username: 'alice', password: 'pässwörd' },
    ]);
  });

  it('`*` cancels; the exchange can start again', () => {
    const h = new Harness();
    h.send('AUTH PLAIN\r\n');
    expect(h.send('*\r\n')).toBe('-ERR Authentication cancelled\r\n');
    expect(h.phase).toBe('command');
    expect(h.send('AUTH PLAIN\r\n')).toBe('+ \r\n');
  });

  it('malformed responses: bad base64, wrong shape, other authzid, `=` (empty)', () => {
    const h = new Harness();
    h.send('AUTH PLAIN\r\n');
    expect(h.send('!!!\r\n')).toBe('-ERR Malformed AUTH PLAIN response\r\n');
    expect(h.send(`AUTH PLAIN ${Buffer.from('just-one-part').toString('base64')}\r\n`)).toBe(
      '-ERR Malformed AUTH PLAIN response\r\n',
    );
    expect(h.send(`AUTH PLAIN ${plain('alice', 'pw', 'mallory')}\r\n`)).toBe(
      '-ERR Malformed AUTH PLAIN response\r\n',
    );
    expect(h.send('AUTH PLAIN =\r\n')).toBe('-ERR Malformed AUTH PLAIN response\r\n');
    expect(h.ofType('authenticate')).toEqual([]);
  });
});

describe('POP3 front: AUTH LOGIN (RFC 5034, the customary prompts)', () => {
  it('prompts for the user name and the password in base64', () => {
    const h = new Harness();
    expect(h.send('AUTH LOGIN\r\n')).toBe('+ VXNlcm5hbWU6\r\n');
    expect(h.send(`${b64('alice')}\r\n`)).toBe('+ UGFzc3dvcmQ6\r\n');
    expect(h.phase).toBe('login-password');
    expect(h.send(`${b64('pässwörd with space')}\r\n`)).toBe('');
    expect(h.ofType('authenticate')).toEqual([
      { type: 'authenticate', username: 'alice', password: 'pässwörd with space' },
    ]);
  });

  it('with the user name as initial response, and lower-case mechanism', () => {
    const h = new Harness();
    expect(h.send(`auth login ${b64('bob')}\r\n`)).toBe('+ UGFzc3dvcmQ6\r\n');
    expect(h.send(`${b64('pw')}\r\n`)).toBe('');
    expect(h.ofType('authenticate')).toEqual([{ type: 'authenticate', username: 'bob', password: 'pw' }]);
  });

  it('`*` cancels at either prompt; junk and empty answers are refused; the dialogue starts over', () => {
    const h = new Harness();
    h.send('AUTH LOGIN\r\n');
    expect(h.send('*\r\n')).toBe('-ERR Authentication cancelled\r\n');
    h.send(`AUTH LOGIN ${b64('alice')}\r\n`);
    expect(h.send('*\r\n')).toBe('-ERR Authentication cancelled\r\n');
    h.send('AUTH LOGIN\r\n');
    expect(h.send('!!!\r\n')).toBe('-ERR Malformed AUTH LOGIN response\r\n');
    expect(h.send('AUTH LOGIN =\r\n')).toBe('-ERR Malformed AUTH LOGIN response\r\n');
    h.send(`AUTH LOGIN ${b64('alice')}\r\n`);
    expect(h.send('\r\n')).toBe('-ERR Malformed AUTH LOGIN response\r\n');
    expect(h.phase).toBe('command');
    expect(h.ofType('authenticate')).toEqual([]);
  });

  it('refused before STLS on a STLS listener; prompt answers count as commands', () => {
    expect(new Harness({ tls: 'starttls' }).send('AUTH LOGIN\r\n')).toBe(TLS_REQUIRED);
    const h = new Harness({ maxCommandsBeforeLogin: 3 });
    expect(h.send('AUTH LOGIN\r\n*\r\nAUTH LOGIN\r\n')).toBe(
      '+ VXNlcm5hbWU6\r\n-ERR Authentication cancelled\r\n+ VXNlcm5hbWU6\r\n',
    );
    expect(h.send(`${b64('alice')}\r\n`)).toBe('-ERR Too many commands before login, closing connection\r\n');
  });
});

describe("POP3 front: the upstreams' capabilities before login", () => {
  const learned = (extensions: string[]) => ({ upstream: { kind: 'learned' as const, extensions } });

  it('CAPA adds what the upstreams share after our own items, STLS last', () => {
    const h = new Harness({ tls: 'starttls', ...learned(['TOP', 'UIDL', 'PIPELINING']) });
    expect(h.send('CAPA\r\n')).toBe(
      '+OK Capability list follows\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nTOP\r\nUIDL\r\nPIPELINING\r\nSTLS\r\n.\r\n',
    );
    h.send('STLS\r\n');
    h.resolve({ type: 'tls-ready' });
    expect(h.send('CAPA\r\n')).toBe(
      '+OK Capability list follows\r\nUSER\r\nSASL PLAIN LOGIN\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nTOP\r\nUIDL\r\nPIPELINING\r\n.\r\n',
    );
  });

  it('the fallback and an empty list leave only ours; UIDL before login still needs a login', () => {
    expect(new Harness(learned([])).send('CAPA\r\n')).toBe(CAPA_PLAIN);
    const h = new Harness(learned(['UIDL']));
    expect(h.send('UIDL\r\n')).toBe(NEEDS_LOGIN);
  });
});

describe('POP3 front: STLS listener', () => {
  it('before STLS: CAPA offers STLS only; USER, PASS, AUTH and transaction commands are refused', () => {
    const h = new Harness({ tls: 'starttls' });
    expect(h.send('CAPA\r\n')).toBe(CAPA_BEFORE_STLS);
    expect(h.send('USER u\r\n')).toBe(TLS_REQUIRED);
    expect(h.send('PASS p\r\n')).toBe(TLS_REQUIRED);
    expect(h.send(`AUTH PLAIN ${plain('u', 'p')}\r\n`)).toBe(TLS_REQUIRED);
    expect(h.send('AUTH\r\n')).toBe(TLS_REQUIRED);
    expect(h.send('STAT\r\n')).toBe(TLS_REQUIRED);
    expect(h.ofType('authenticate')).toEqual([]);
  });

  it('STLS then USER/PASS; bytes injected after STLS are dropped (RFC 2595, CVE-2011-0411)', () => {
    const h = new Harness({ tls: 'starttls' });
    expect(h.send('STLS\r\nUSER evil\r\nPASS injected\r\n')).toBe('+OK Begin TLS negotiation\r\n');
    expect(h.ofType('start-tls')).toHaveLength(1);
    expect(h.front.reading).toBe(false);
    expect(h.front.buffered).toBe(0);
    expect(h.resolve({ type: 'tls-ready' })).toBe('');
    expect(h.ofType('authenticate')).toEqual([]);
    expect(h.send('CAPA\r\n')).toBe(CAPA_PLAIN);
    expect(h.send('STLS\r\n')).toBe('-ERR TLS already active\r\n');
    h.send('USER u\r\nPASS p w\r\n');
    expect(h.ofType('authenticate')).toEqual([{ type: 'authenticate', username: 'u', password: 'p w' }]);
  });

  it('a USER given before STLS does not survive the handshake', () => {
    const h = new Harness({ tls: 'starttls' });
    h.send('USER u\r\nSTLS\r\n');
    h.resolve({ type: 'tls-ready' });
    expect(h.send('PASS p\r\n')).toBe('-ERR Send USER first\r\n');
  });
});

describe('POP3 front: login failures (RFC 2449 / RFC 3206 response codes)', () => {
  const failWith = (error: ProxyError, consentHint?: string): string => {
    const h = new Harness();
    h.send('USER u\r\nPASS p\r\n');
    return h.resolve(
      consentHint === undefined
        ? { type: 'auth-failed', error }
        : { type: 'auth-failed', error, consentHint },
    );
  };

  it.each([
    [new ProxyError('bad-credentials', 'x'), undefined, '-ERR [AUTH] Authentication failed'],
    [
      new ProxyError('needs-consent', 'x'),
      'Open https://proxy.example/consent/abc',
      '-ERR [AUTH] Access to this mailbox has not been granted or was revoked. Open https://proxy.example/consent/abc',
    ],
    [
      new ProxyError('token-unavailable', 'x', { detail: 'HTTP 503' }),
      undefined,
      '-ERR [SYS/TEMP] Cannot get an access token right now, try again later (HTTP 503)',
    ],
    [
      new ProxyError('upstream-unavailable', 'x', { detail: 'connect ECONNREFUSED' }),
      undefined,
      '-ERR [SYS/TEMP] Mail server unavailable, try again later (connect ECONNREFUSED)',
    ],
    [
      new ProxyError('upstream-rejected', 'x', { detail: '-ERR [AUTH] Invalid credentials.' }),
      undefined,
      '-ERR [AUTH] Mail server refused the login: Invalid credentials.',
    ],
    [new ProxyError('store', 'unexpected'), undefined, '-ERR [SYS/TEMP] Internal error, try again later'],
  ])('%s', (error, hint, expected) => {
    expect(failWith(error, hint)).toBe(`${expected}\r\n`);
  });

  it('a consent hint cannot inject a line', () => {
    expect(failWith(new ProxyError('needs-consent', 'x'), 'evil\r\n+OK forged')).toBe(
      '-ERR [AUTH] Access to this mailbox has not been granted or was revoked. evil +OK forged\r\n',
    );
  });
});

describe('POP3 front: limits', () => {
  it('failed logins: the connection closes after the last allowed failure; temporary ones do not count', () => {
    const h = new Harness({ maxFailedLogins: 2 });
    const bad = { type: 'auth-failed', error: new ProxyError('bad-credentials', 'x') } as const;
    h.send('USER u\r\nPASS p\r\n');
    h.resolve({ type: 'auth-failed', error: new ProxyError('upstream-unavailable', 'x') });
    h.send('USER u\r\nPASS p\r\n');
    expect(h.resolve(bad)).toBe('-ERR [AUTH] Authentication failed\r\n');
    expect(h.phase).toBe('command');
    h.send(`AUTH PLAIN ${plain('u', 'p')}\r\n`);
    expect(h.resolve(bad)).toBe('-ERR [AUTH] Authentication failed\r\n');
    expect(h.ofType('close')).toEqual([
      { type: 'close', outcome: 'bad-credentials', reason: 'too many failed logins' },
    ]);
    expect(h.phase).toBe('closed');
  });

  it('commands before login: at the cap passes, one over closes (SASL responses count too)', () => {
    const h = new Harness({ maxCommandsBeforeLogin: 4 });
    expect(h.send('CAPA\r\nAUTH PLAIN\r\n*\r\nNOOP\r\n')).not.toContain('Too many');
    expect(h.phase).toBe('command');
    expect(h.send('CAPA\r\n')).toBe('-ERR Too many commands before login, closing connection\r\n');
    expect(h.ofType('close')).toEqual([{ type: 'close', outcome: 'limit', reason: 'commands before login' }]);
  });

  it('the command count holds across a chunk boundary inside the last line', () => {
    const h = new Harness({ maxCommandsBeforeLogin: 2 });
    h.send('CAPA\r\nCA');
    expect(h.phase).toBe('command');
    expect(h.send('PA\r\nCA')).toBe(CAPA_PLAIN);
    expect(h.send('PA\r\n')).toBe('-ERR Too many commands before login, closing connection\r\n');
  });

  it('line length: at the cap passes, one over closes, also split across chunks', () => {
    const ok = new Harness({}, 20);
    const atCap = `PASS ${'x'.repeat(15)}`;
    expect(ok.send(`${atCap.slice(0, 7)}`)).toBe('');
    expect(ok.send(`${atCap.slice(7)}\r\n`)).toBe('-ERR Send USER first\r\n');
    const bad = new Harness({}, 20);
    expect(bad.send(`PASS ${'x'.repeat(10)}`)).toBe('');
    expect(bad.send(`${'x'.repeat(6)}\r\n`)).toBe('-ERR Line too long, closing connection\r\n');
    expect(bad.ofType('close')).toEqual([{ type: 'close', outcome: 'limit', reason: 'line-too-long' }]);
  });

  it('idle timeout closes while reading, and is ignored during a login', () => {
    const h = new Harness();
    h.send('USER u\r\nPASS p\r\n');
    expect(h.resolve({ type: 'idle-timeout' })).toBe('');
    h.resolve({ type: 'auth-failed', error: new ProxyError('bad-credentials', 'x') });
    expect(h.resolve({ type: 'idle-timeout' })).toBe('-ERR Disconnected for inactivity\r\n');
    expect(h.ofType('close')).toEqual([{ type: 'close', outcome: 'timeout' }]);
  });

  it('shutdown says so, except in the middle of a TLS handshake', () => {
    const a = new Harness();
    expect(a.resolve({ type: 'shutdown' })).toBe('-ERR [SYS/TEMP] Server shutting down\r\n');
    const b = new Harness({ tls: 'starttls' });
    b.send('STLS\r\n');
    expect(b.resolve({ type: 'shutdown' })).toBe('');
    expect(b.ofType('close')).toEqual([{ type: 'close', outcome: 'shutdown' }]);
  });

  it('nothing happens after close or during the relay', () => {
    const h = new Harness();
    h.send('QUIT\r\n');
    expect(h.resolve({ type: 'auth-succeeded' })).toBe('');
    expect(h.resolve({ type: 'tls-ready' })).toBe('');
    expect(h.send('CAPA\r\n')).toBe('');
  });
});
