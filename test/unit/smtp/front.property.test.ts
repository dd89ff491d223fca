/**
 * Property tests for the SMTP front: chunking never changes the outcome, random input never throws,
 * and a password never comes back on the wire.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ProxyError } from '../../../src/errors.js';
import type { SmtpFrontConfig } from '../../../src/proxy/smtp/machine.js';
import { converse, splitAt } from '../../helpers/front-harness.js';
import { Harness, b64, plain } from './front-harness.js';

const RUNS = { numRuns: 300, interruptAfterTimeLimit: 10_000 };

/** A password that cannot occur in any reply by accident. */
const password = fc.string({ minLength: 6, maxLength: 40 }).map((s) => `Pw!${s}#Zq`);
const username = fc.constantFrom('alice@example.com', 'bob', 'jürgen@example.de');

/** Realistic client lines, AUTH in every form, plus noise. */
function clientLines(pw: string, user: string): fc.Arbitrary<string[]> {
  const line = fc.oneof(
    fc.constantFrom(
      'EHLO client.example',
      'HELO c',
      'NOOP',
      'RSET',
      'STARTTLS',
      'MAIL FROM:<a@b>',
      'RCPT TO:<c@d>',
      'DATA',
      'VRFY x',
      '*',
      '',
    ),
    fc.constant(`AUTH PLAIN ${plain(user, pw)}`),
    fc.constant('AUTH PLAIN'),
    fc.constant(plain(user, pw)),
    fc.constant('AUTH LOGIN'),
    fc.constant(`AUTH LOGIN ${b64(user)}`),
    fc.constant(b64(user)),
    fc.constant(b64(pw)),
    fc.constant(pw),
    fc.constant(`AUTH PLAIN ${pw}`),
    fc.string({ maxLength: 30 }).map((s) => s.replace(/[\r\n]/g, '')),
  );
  return fc.array(line, { maxLength: 25 });
}

/** The shared conversation driver with this front's successful login. */
function run(config: Partial<SmtpFrontConfig>, chunks: Buffer[], succeedOn: number, maxLine = 200) {
  return converse(new Harness(config, maxLine), chunks, succeedOn, { type: 'auth-succeeded' });
}

const config = fc.record({
  tls: fc.constantFrom<SmtpFrontConfig['tls']>('none', 'starttls', 'implicit'),
  maxCommandsBeforeLogin: fc.integer({ min: 1, max: 30 }),
  maxFailedLogins: fc.integer({ min: 1, max: 5 }),
});

describe('SMTP front properties', () => {
  it('any split of the input into chunks gives the same replies, actions and remainder', () => {
    const conversation = fc
      .tuple(password, username)
      .chain(([pw, user]) => fc.tuple(fc.constant(pw), clientLines(pw, user)));
    fc.assert(
      fc.property(
        conversation,
        config,
        fc.integer({ min: 1, max: 4 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        ([_pw, lines], cfg, succeedOn, cuts) => {
          // What follows STARTTLS in the same read is dropped on purpose (injection), and a real client
          // sends nothing in clear text after it: so each STARTTLS ends a segment in both runs.
          const segments: Buffer[] = [];
          let current: string[] = [];
          for (const l of lines) {
            current.push(`${l}\r\n`);
            if (l === 'STARTTLS') {
              segments.push(Buffer.from(current.join(''), 'utf8'));
              current = [];
            }
          }
          segments.push(Buffer.from(current.join(''), 'utf8'));
          const whole = run(cfg, segments, succeedOn);
          const split = run(
            cfg,
            segments.flatMap((seg) => splitAt(seg, cuts)),
            succeedOn,
          );
          expect(split).toEqual(whole);
        },
      ),
      RUNS,
    );
  });

  it('byte-at-a-time feeding gives the same result as one chunk', () => {
    fc.assert(
      fc.property(password, username, (pw, user) => {
        const data = Buffer.from(
          `EHLO c\r\nAUTH LOGIN\r\n${b64(user)}\r\n${b64(pw)}\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\n`,
          'utf8',
        );
        const whole = run({}, [data], 1);
        const bytes = run(
          {},
          [...data].map((b) => Buffer.from([b])),
          1,
        );
        expect(bytes).toEqual(whole);
        expect(whole.remainder).toBe('MAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\n');
      }),
      RUNS,
    );
  });

  it('random bytes never throw, every reply is a well-formed SMTP line, and the password never comes back', () => {
    fc.assert(
      fc.property(
        password,
        username,
        config,
        fc.array(
          fc.oneof(
            fc.uint8Array({ maxLength: 60 }),
            fc.string({ maxLength: 60 }).map((s) => Buffer.from(s)),
          ),
          {
            maxLength: 10,
          },
        ),
        (pw, user, cfg, noise) => {
          const pieces = [
            ...noise.map((n) => Buffer.from(n)),
            Buffer.from(
              `EHLO c\r\nAUTH PLAIN ${plain(user, pw)}\r\n${pw}\r\nAUTH LOGIN\r\n${b64(pw)}\r\n${b64(pw)}\r\n`,
            ),
            Buffer.from(`${pw}\r\n`),
          ];
          const result = run(cfg, pieces, 99, 120);
          for (const l of result.wire.split('\r\n').filter((x) => x.length > 0)) {
            expect(l).toMatch(/^[2-5]\d\d[ -][\x20-\x7e]*$|^334 [A-Za-z0-9+/=]*$/);
          }
          expect(result.wire).not.toContain(pw);
          expect(result.wire).not.toContain(b64(pw));
          expect(result.wire).not.toContain(plain(user, pw));
        },
      ),
      RUNS,
    );
  });

  it('random interleavings of input and async results never throw, and nothing happens after a close', () => {
    const event = fc.oneof(
      fc.constantFrom(
        'EHLO c\r\n',
        'STARTTLS\r\n',
        'AUTH LOGIN\r\n',
        `${b64('u')}\r\n`,
        `AUTH PLAIN ${plain('u', 'Pw!secret#Zq')}\r\n`,
        'MAIL FROM:<a@b>\r\n',
        'QUIT\r\n',
        '*\r\n',
      ),
      fc.string({ maxLength: 20 }),
      fc.constantFrom(
        { type: 'tls-ready' } as const,
        { type: 'auth-succeeded' } as const,
        { type: 'auth-failed', error: new ProxyError('bad-credentials', 'x') } as const,
        { type: 'auth-failed', error: new ProxyError('token-unavailable', 'x') } as const,
        { type: 'auth-failed', error: new ProxyError('store', 'x') } as const,
        { type: 'idle-timeout' } as const,
        { type: 'shutdown' } as const,
      ),
    );
    fc.assert(
      fc.property(config, fc.array(event, { maxLength: 40 }), (cfg, events) => {
        const h = new Harness(cfg, 100);
        let closedAt: number | undefined;
        for (const e of events) {
          if (typeof e === 'string') h.send(e);
          else h.resolve(e);
          if (closedAt === undefined && h.ofType('close').length > 0) closedAt = h.actions.length;
        }
        if (closedAt !== undefined) expect(h.actions.length).toBe(closedAt);
        expect(h.ofType('close').length).toBeLessThanOrEqual(1);
        expect(h.wire).not.toContain('Pw!secret#Zq');
        // A relay starts at most once, and only after a 235.
        expect(h.ofType('start-relay').length).toBeLessThanOrEqual(1);
        if (h.ofType('start-relay').length === 1) expect(h.wire).toContain('235 2.7.0');
      }),
      RUNS,
    );
  });
});
