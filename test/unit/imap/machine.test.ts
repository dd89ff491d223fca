/**
 * Replays of real client transcripts through framer + machine (no sockets), and the reply for every
 * login outcome.
 */
import { describe, expect, it } from 'vitest';
import { ProxyError } from '../../../src/errors.js';
import { initialState, step } from '../../../src/proxy/imap/machine.js';
import { frontLimits } from '../../../src/proxy/shared/limits.js';
import { encodePlain } from '../../../src/proxy/shared/sasl.js';
import { replay } from './harness.js';

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const GREETING_PLAIN =
  '* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID AUTH=PLAIN AUTH=LOGIN] xoauth-proxy ready\r\n';

describe('IMAP machine: transcripts', () => {
  it('Thunderbird-style: CAPABILITY, ID, then LOGIN with synchronizing literals', () => {
    const r = replay([
      '1 capability\r\n',
      '2 ID ("name" "Thunderbird" "version" "115.0")\r\n',
      '3 login {15}\r\n',
      `joe@example.com {${Buffer.byteLength('p"ä\\ss✓')}}\r\n`,
      'p"ä\\ss✓\r\n',
      '4 select INBOX\r\n',
    ]);
    expect(r.output).toBe(
      GREETING_PLAIN +
        '* CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID AUTH=PLAIN AUTH=LOGIN\r\n1 OK CAPABILITY completed\r\n' +
        '* ID ("name" "xoauth-proxy")\r\n2 OK ID completed\r\n' +
        '+ Ready for literal data\r\n+ Ready for literal data\r\n' +
        '3 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n',
    );
    expect(r.logins).toEqual([{ username: 'joe@example.com', password: 'p"ä\\ss✓' }]);
    expect(r.relayed?.toString()).toBe('4 select INBOX\r\n');
  });

  it('LITERAL+ login with everything in one packet, and pipelined commands after it', () => {
    const r = replay(['a1 LOGIN {3+}\r\njoe {6+}\r\nsecret\r\na2 SELECT INBOX\r\na3 FETCH 1 BODY[]\r\n']);
    expect(r.output).toBe(`${GREETING_PLAIN}a1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n`);
    expect(r.logins).toEqual([{ username: 'joe', password: 'secret' }]);
    expect(r.relayed?.toString()).toBe('a2 SELECT INBOX\r\na3 FETCH 1 BODY[]\r\n');
  });

  it('LOGIN with quoted strings', () => {
    const r = replay(['a LOGIN "joe" "a \\"quoted\\" pass\\\\word"\r\n']);
    expect(r.logins).toEqual([{ username: 'joe', password: 'a "quoted" pass\\word' }]);
  });

  it('two-step AUTHENTICATE PLAIN (continuation, then the response)', () => {
    const r = replay(['a AUTHENTICATE PLAIN\r\n', `${encodePlain('joe', 'pw ✓')}\r\n`]);
    expect(r.output).toBe(`${GREETING_PLAIN}+ \r\na OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n`);
    expect(r.logins).toEqual([{ username: 'joe', password: 'pw ✓' }]);
  });

  it('AUTHENTICATE PLAIN with SASL-IR', () => {
    const r = replay([`a AUTHENTICATE PLAIN ${encodePlain('joe', 'pw')}\r\n`]);
    expect(r.logins).toEqual([{ username: 'joe', password: 'pw' }]);
  });

  it('AUTHENTICATE PLAIN cancelled with *', () => {
    const r = replay(['a AUTHENTICATE PLAIN\r\n', '*\r\n', 'b NOOP\r\n']);
    expect(r.output).toBe(`${GREETING_PLAIN}+ \r\na BAD Authentication cancelled\r\nb OK NOOP completed\r\n`);
    expect(r.logins).toEqual([]);
  });

  it('AUTHENTICATE LOGIN, two prompts, and with an initial response', () => {
    const r = replay(['a AUTHENTICATE LOGIN\r\n', `${b64('joe')}\r\n`, `${b64('pw')}\r\n`]);
    expect(r.output).toBe(
      `${GREETING_PLAIN}+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\na OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n`,
    );
    expect(r.logins).toEqual([{ username: 'joe', password: 'pw' }]);
    const ir = replay([`a AUTHENTICATE LOGIN ${b64('joe')}\r\n`, `${b64('pw')}\r\n`]);
    expect(ir.logins).toEqual([{ username: 'joe', password: 'pw' }]);
  });

  it('refuses bad SASL input with BAD and no login', () => {
    const r = replay([
      'a AUTHENTICATE PLAIN !!!\r\n',
      `b AUTHENTICATE PLAIN ${b64('x\0y')}\r\n`,
      'c AUTHENTICATE CRAM-MD5\r\n',
    ]);
    expect(r.output).toContain('a BAD Invalid base64\r\n');
    expect(r.output).toContain('b BAD Malformed PLAIN message\r\n');
    expect(r.output).toContain('c NO [CANNOT] Unsupported authentication mechanism; use PLAIN or LOGIN\r\n');
    expect(r.logins).toEqual([]);
  });

  it('STARTTLS then LOGIN on a STARTTLS listener', () => {
    const r = replay(
      [
        'a LOGIN joe pw\r\n',
        'b STARTTLS\r\nc LOGIN injected pw\r\n',
        'd CAPABILITY\r\n',
        'e LOGIN joe pw\r\n',
      ],
      {
        tls: 'starttls',
      },
    );
    expect(r.output).toBe(
      '* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID STARTTLS LOGINDISABLED] xoauth-proxy ready\r\n' +
        'a NO [PRIVACYREQUIRED] Run STARTTLS first\r\n' +
        'b OK Begin TLS negotiation now\r\n' +
        '* CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID AUTH=PLAIN AUTH=LOGIN\r\nd OK CAPABILITY completed\r\n' +
        'e OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n',
    );
    expect(r.tlsStarted).toBe(1);
    expect(r.logins).toEqual([{ username: 'joe', password: 'pw' }]); // never the injected one
  });

  it('refuses STARTTLS where it makes no sense', () => {
    expect(replay(['a STARTTLS\r\n']).output).toContain('a BAD STARTTLS is not available here');
    expect(replay(['a STARTTLS\r\n'], { tls: 'implicit' }).output).toContain('a BAD TLS is already active');
  });

  it('tells the client to log in first for anything else', () => {
    const r = replay(['a SELECT INBOX\r\nb FETCH 1 BODY[]\r\n']);
    expect(r.output).toContain(
      'a BAD Log in first (LOGIN or AUTHENTICATE): command not available before login\r\n',
    );
    expect(r.output).toContain('b BAD Log in first');
  });

  it('answers NOOP and LOGOUT', () => {
    const r = replay(['a NOOP\r\nb LOGOUT\r\nc NOOP\r\n']);
    expect(r.output).toBe(
      `${GREETING_PLAIN}a OK NOOP completed\r\n* BYE Logging out\r\nb OK LOGOUT completed\r\n`,
    );
    expect(r.closed).toBe(true);
  });

  it('replies BAD to syntax errors, untagged when the tag is unusable', () => {
    const r = replay(['"x" NOOP\r\n', 'a LOGIN\r\n', 'b LOGIN x\r\n', 'c NOOP extra\r\n']);
    expect(r.output).toContain('* BAD Invalid tag\r\n');
    expect(r.output).toContain('a BAD LOGIN needs a user name and a password\r\n');
    expect(r.output).toContain('b BAD LOGIN needs a user name and a password\r\n');
    expect(r.output).toContain('c BAD NOOP takes no arguments\r\n');
  });
});

describe('IMAP machine: login failures', () => {
  const cases = [
    ['bad-credentials', undefined, undefined, 'a NO [AUTHENTICATIONFAILED] Authentication failed'],
    [
      'needs-consent',
      undefined,
      'Open https://proxy.example/consent to grant access.',
      'a NO [AUTHENTICATIONFAILED] Access to this mailbox has not been granted or was revoked. Open https://proxy.example/consent to grant access.',
    ],
    [
      'token-unavailable',
      'HTTP 503',
      undefined,
      'a NO [UNAVAILABLE] Cannot get an access token right now, try again later (HTTP 503)',
    ],
    [
      'upstream-unavailable',
      'timed out',
      undefined,
      'a NO [UNAVAILABLE] Mail server unreachable, try again later (timed out)',
    ],
    [
      'upstream-rejected',
      '[AUTHENTICATIONFAILED] Invalid credentials (Failure)',
      undefined,
      'a NO [AUTHENTICATIONFAILED] Mail server refused the login: Invalid credentials (Failure)',
    ],
  ] as const;
  it.each(cases)('%s', (code, detail, hint, expected) => {
    const r = replay(['a LOGIN joe pw\r\n'], {
      login: () => ({ ok: false, code, ...(detail ? { detail } : {}), ...(hint ? { hint } : {}) }),
    });
    expect(r.output).toBe(`${GREETING_PLAIN}${expected}\r\n`);
    expect(r.closed).toBe(false);
  });

  it('keeps reading pipelined commands after a failed login', () => {
    const r = replay(['a LOGIN joe wrong\r\nb NOOP\r\n'], {
      login: () => ({ ok: false, code: 'bad-credentials' }),
    });
    expect(r.output).toContain('b OK NOOP completed');
  });

  it('strips line breaks from upstream text', () => {
    const r = replay(['a LOGIN joe pw\r\n'], {
      login: () => ({ ok: false, code: 'upstream-rejected', detail: 'bad\r\n* OK injected' }),
    });
    expect(r.output.split('\r\n').filter(Boolean)).toHaveLength(2);
  });
});

describe('IMAP machine: limits', () => {
  it('commands before login: at the cap passes, one over ends the connection', () => {
    const at = replay(['a NOOP\r\n'.repeat(3)], { limits: { maxCommandsBeforeLogin: 3 } });
    expect(at.closed).toBe(false);
    const over = replay(['a NOOP\r\n'.repeat(4)], { limits: { maxCommandsBeforeLogin: 3 } });
    expect(over.output.endsWith('a OK NOOP completed\r\n* BYE Too many commands before login\r\n')).toBe(
      true,
    );
    expect(over.closed).toBe(true);
  });

  it('failed logins per connection: closes after the cap-th failure', () => {
    const fail = () => ({ ok: false as const, code: 'bad-credentials' as const });
    const below = replay(['a LOGIN x y\r\n'.repeat(2)], { limits: { maxFailedLogins: 3 }, login: fail });
    expect(below.closed).toBe(false);
    const at = replay(['a LOGIN x y\r\n'.repeat(3), 'b NOOP\r\n'], {
      limits: { maxFailedLogins: 3 },
      login: fail,
    });
    expect(
      at.output.endsWith(
        'a NO [AUTHENTICATIONFAILED] Authentication failed\r\n* BYE Too many failed login attempts\r\n',
      ),
    ).toBe(true);
    expect(at.output).not.toContain('b OK');
    expect(at.closed).toBe(true);
  });

  it('temporary failures (token endpoint or mail server down) do not count against the client', () => {
    const down = () => ({ ok: false as const, code: 'upstream-unavailable' as const });
    const r = replay(['a LOGIN x y\r\n'.repeat(3), 'b NOOP\r\n'], {
      limits: { maxFailedLogins: 3 },
      login: down,
    });
    expect(r.output).toContain('a NO [UNAVAILABLE]');
    expect(r.output).not.toContain('* BYE');
    expect(r.output.endsWith('b OK NOOP completed\r\n')).toBe(true);
    expect(r.closed).toBe(false);
  });

  it('the literals of one command are capped in total with the production limits', () => {
    // Each literal is within the per-literal cap; together they pass the per-command one.
    const size = frontLimits().maxLiteralSize;
    const count = Math.floor(frontLimits().maxLiteralBytesPerCommand / size) + 1;
    const fields = Array.from({ length: count }, () => `{${size}+}\r\n${'v'.repeat(size)}`).join(' ');
    const r = replay([`a ID (${fields})\r\n`]);
    expect(r.output.endsWith('* BYE Literals too large in one command\r\n')).toBe(true);
    expect(r.closed).toBe(true);
    expect(r.actions.at(-1)).toEqual({ type: 'close', outcome: 'limit', reason: 'command-too-large' });
  });

  it('line too long ends the connection with a clear reply', () => {
    const r = replay([`a LOGIN ${'x'.repeat(100)}\r\n`], { limits: { maxLineLength: 50 } });
    expect(r.output.endsWith('* BYE Command line too long\r\n')).toBe(true);
    expect(r.closed).toBe(true);
  });

  it('literal too large ends the connection without asking for it', () => {
    const r = replay(['a LOGIN joe {101}\r\n'], { limits: { maxLiteralSize: 100 } });
    expect(r.output).not.toContain('+ Ready');
    expect(r.output.endsWith('* BYE Literal too large\r\n')).toBe(true);
  });

  it('idle timeout before login says goodbye', () => {
    const config = { tls: 'none' as const, maxCommandsBeforeLogin: 10, maxFailedLogins: 3 };
    const { state } = initialState(config, false);
    const r = step(config, state, { type: 'idle-timeout' });
    expect(r.actions).toEqual([
      { type: 'send', reply: '* BYE Idle for too long before login' },
      { type: 'close', outcome: 'timeout' },
    ]);
  });

  it('ignores a late login result once closed, and a shutdown says BYE', () => {
    const config = { tls: 'none' as const, maxCommandsBeforeLogin: 10, maxFailedLogins: 3 };
    const { state } = initialState(config, false);
    const down = step(config, state, { type: 'shutdown' });
    expect(down.actions[0]).toEqual({ type: 'send', reply: '* BYE Server shutting down' });
    const late = step(config, down.state, {
      type: 'auth-failed',
      error: new ProxyError('bad-credentials', 'x'),
    });
    expect(late.actions).toEqual([]);
  });

  it('a shutdown in the middle of a TLS handshake closes without a clear-text BYE', () => {
    const config = { tls: 'starttls' as const, maxCommandsBeforeLogin: 10, maxFailedLogins: 3 };
    const { state } = initialState(config, false);
    const down = step(config, { ...state, phase: { name: 'starting-tls' } }, { type: 'shutdown' });
    expect(down.actions).toEqual([{ type: 'close', outcome: 'shutdown' }]);
    expect(down.state.phase).toEqual({ name: 'closed' });
  });
});
