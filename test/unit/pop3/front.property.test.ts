/**
 * Property tests for the POP3 front: chunking never changes the outcome, random input never throws,
 * every reply is well-formed, and a password never comes back on the wire.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Pop3FrontConfig } from '../../../src/proxy/pop3/machine.js';
import { converse, splitAt } from '../../helpers/front-harness.js';
import { Harness, b64, plain } from './front-harness.js';

const RUNS = { numRuns: 300, interruptAfterTimeLimit: 10_000 };

/** A password that cannot occur in any reply by accident (spaces allowed: PASS takes the rest of the line). */
const password = fc.string({ minLength: 6, maxLength: 40 }).map((s) => `Pw!${s.replace(/[\r\n]/g, '')}#Zq`);
const username = fc.constantFrom('alice@example.com', 'bob', 'jürgen@example.de');

/** Realistic client lines, logins in every form, plus noise. */
function clientLines(pw: string, user: string): fc.Arbitrary<string[]> {
  const line = fc.oneof(
    fc.constantFrom(
      'CAPA',
      'STLS',
      'STAT',
      'LIST',
      'RETR 1',
      'NOOP',
      'AUTH',
      'AUTH CRAM-MD5',
      'APOP a b',
      '*',
      '',
    ),
    fc.constant(`USER ${user}`),
    fc.constant(`PASS ${pw}`),
    fc.constant(`AUTH PLAIN ${plain(user, pw)}`),
    fc.constant('AUTH PLAIN'),
    fc.constant(plain(user, pw)),
    fc.constant(pw),
    fc.constant(b64(pw)),
    fc.string({ maxLength: 30 }).map((s) => s.replace(/[\r\n]/g, '')),
  );
  return fc.array(line, { maxLength: 25 });
}

/** The shared conversation driver with this front's successful login. */
function run(config: Partial<Pop3FrontConfig>, chunks: Buffer[], succeedOn: number, maxLine = 200) {
  return converse(new Harness(config, maxLine), chunks, succeedOn, {
    type: 'auth-succeeded',
    text: 'Welcome.',
  });
}

const config = fc.record({
  tls: fc.constantFrom<Pop3FrontConfig['tls']>('none', 'starttls', 'implicit'),
  maxCommandsBeforeLogin: fc.integer({ min: 1, max: 30 }),
  maxFailedLogins: fc.integer({ min: 1, max: 5 }),
});

/** A reply line as POP3 allows it: status line, SASL continuation, or a CAPA/AUTH list line. */
const REPLY_LINE = /^(?:\+OK|-ERR)(?: [\x20-\x7e\u00a0-\uffff]*)?$|^\+ $|^[A-Z0-9-]+(?: [A-Z0-9]+)*$|^\.$/;

describe('POP3 front properties', () => {
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
          // What follows STLS in the same read is dropped on purpose (injection), and a real client
          // sends nothing in clear text after it: so each STLS ends a segment in both runs.
          const segments: Buffer[] = [];
          let current: string[] = [];
          for (const l of lines) {
            current.push(`${l}\r\n`);
            if (l === 'STLS') {
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

  it('byte-at-a-time feeding gives the same result as one chunk; commands after PASS go upstream', () => {
    fc.assert(
      fc.property(password, username, (pw, user) => {
        const data = Buffer.from(`CAPA\r\nUSER ${user}\r\nPASS ${pw}\r\nSTAT\r\nRETR 1\r\n`, 'utf8');
        const whole = run({}, [data], 1);
        const bytes = run(
          {},
          [...data].map((b) => Buffer.from([b])),
          1,
        );
        expect(bytes).toEqual(whole);
        expect(whole.phase).toBe('relay');
        expect(whole.remainder).toBe('STAT\r\nRETR 1\r\n');
        expect(whole.actions).toContainEqual({ type: 'authenticate', username: user, password: pw });
      }),
      RUNS,
    );
  });

  it('random bytes never throw, every reply is a well-formed POP3 line, and the password never comes back', () => {
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
          { maxLength: 10 },
        ),
        (pw, user, cfg, noise) => {
          const pieces = [
            ...noise.map((n) => Buffer.from(n)),
            Buffer.from(
              `USER ${user}\r\nPASS ${pw}\r\n${pw}\r\nAUTH PLAIN ${plain(user, pw)}\r\nAUTH PLAIN\r\n${b64(pw)}\r\nPASS ${pw}\r\n`,
            ),
            Buffer.from(`${pw}\r\n`),
          ];
          const result = run(cfg, pieces, 99, 120);
          for (const l of result.wire.split('\r\n').filter((x) => x.length > 0)) {
            expect(l).toMatch(REPLY_LINE);
          }
          expect(result.wire).not.toContain(pw);
          expect(result.wire).not.toContain(b64(pw));
          expect(result.wire).not.toContain(plain(user, pw));
          expect(result.wire).not.toContain(user);
        },
      ),
      RUNS,
    );
  });
});
