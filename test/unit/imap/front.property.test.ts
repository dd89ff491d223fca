/**
 * Properties of framer + machine under fast-check (bounded runs):
 *  - any split of the input into chunks gives the same replies, logins and relayed bytes;
 *  - random input never throws, and never makes the proxy echo a password.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodePlain } from '../../../src/proxy/shared/sasl.js';
import { replay, splitAt, type LoginScript } from './harness.js';

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

// STARTTLS is left out on purpose: where the chunk boundary falls decides whether bytes came before
// the handshake (discarded) or over TLS, so a split legitimately changes the result there.
const TRANSCRIPTS: string[] = [
  `1 CAPABILITY\r\n2 ID ("name" "x")\r\n3 LOGIN {3}\r\njoe {6}\r\nsecret\r\n4 SELECT INBOX\r\n`,
  `a1 LOGIN {3+}\r\njoe {8+}\r\np"ä\\ss\r\na2 NOOP\r\n`,
  `a AUTHENTICATE PLAIN\r\n${encodePlain('joe', 'pw ✓')}\r\nb SELECT INBOX\r\n`,
  `a AUTHENTICATE LOGIN\r\n${b64('joe')}\r\n${b64('pw')}\r\n`,
  `a LOGIN joe wrong\r\nb LOGIN "joe" "right \\"one\\""\r\nc FETCH 1 BODY[]\r\n`,
  `a NOOP\r\nb AUTHENTICATE PLAIN\r\n*\r\nc LOGOUT\r\nd NOOP\r\n`,
  `a ${'x'.repeat(200)}\r\nb NOOP\r\n`,
];

/** Fails "wrong" passwords, accepts the rest: exercises both branches in one transcript. */
const script: LoginScript = (_u, p) =>
  p === 'wrong' ? { ok: false, code: 'bad-credentials' } : { ok: true, capabilities: 'IMAP4rev1' };

const small = { maxLineLength: 100, maxLiteralSize: 50, maxCommandsBeforeLogin: 6, maxFailedLogins: 2 };

describe('IMAP front properties', () => {
  it('gives the same result for any split of the input into chunks', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...TRANSCRIPTS),
        fc.constantFrom('none', 'starttls', 'implicit'),
        fc.array(fc.nat({ max: 400 }), { maxLength: 12 }),
        (text, tls, cuts) => {
          const input = Buffer.from(text, 'utf8');
          const options = { tls, login: script, limits: small } as const;
          const whole = replay([input], options);
          const split = replay(splitAt(input, cuts), options);
          expect(split.output).toBe(whole.output);
          expect(split.logins).toEqual(whole.logins);
          expect(split.relayed?.toString('hex')).toBe(whole.relayed?.toString('hex'));
          expect(split.closed).toBe(whole.closed);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('gives the same result byte by byte as in one chunk', () => {
    for (const text of TRANSCRIPTS) {
      const input = Buffer.from(text, 'utf8');
      const bytes = [...input].map((b) => Buffer.from([b]));
      const whole = replay([input], { login: script, limits: small });
      const split = replay(bytes, { login: script, limits: small });
      expect(split.output).toBe(whole.output);
      expect(split.logins).toEqual(whole.logins);
    }
  });

  it('never throws on random bytes', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }),
        fc.constantFrom('none', 'starttls'),
        (chunks, tls) => {
          const r = replay(
            chunks.map((c) => Buffer.from(c)),
            { tls, limits: small, login: () => ({ ok: false, code: 'bad-credentials' }) },
          );
          expect(typeof r.output).toBe('string');
        },
      ),
      { numRuns: 500 },
    );
  });

  // A password: printable, no spaces (see parser: a lone word is never echoed as a tag), at least 8 chars.
  const password = fc
    .string({
      minLength: 8,
      maxLength: 24,
      unit: fc.constantFrom(...'abcdefXYZ0123456789!#$%&()*+-./:;<=>?@[]^_{|}~"\\äé✓'),
    })
    .map((s) => `Pw${s}`);

  function loginLine(form: number, user: string, pass: string): string {
    const n = Buffer.byteLength(pass, 'utf8');
    switch (form) {
      case 0:
        return `t1 LOGIN ${user} "${pass.replace(/[\\"]/g, (c) => `\\${c}`)}"\r\n`;
      case 1:
        return `t2 LOGIN ${user} {${n}}\r\n${pass}\r\n`;
      case 2:
        return `t3 LOGIN ${user} {${n}+}\r\n${pass}\r\n`;
      case 3:
        return `t4 AUTHENTICATE PLAIN ${encodePlain(user, pass)}\r\n`;
      case 4:
        return `t5 AUTHENTICATE PLAIN\r\n${encodePlain(user, pass)}\r\n`;
      default:
        return `t6 AUTHENTICATE LOGIN\r\n${b64(user)}\r\n${b64(pass)}\r\n`;
    }
  }

  it('never echoes a password, whatever surrounds the login', () => {
    const noise = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.constantFrom(
        '\r\n',
        'x NOOP\r\n',
        'y {5}\r\n',
        'z {3+}\r\n',
        '"',
        '(',
        '*\r\n',
        'a LOGIN\r\n',
        '{0}\r\n',
        '\n',
      ),
      fc.uint8Array({ maxLength: 20 }).map((b) => Buffer.from(b).toString('latin1')),
    );
    fc.assert(
      fc.property(
        password,
        fc.array(fc.tuple(noise, fc.nat({ max: 5 })), { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat({ max: 600 }), { maxLength: 6 }),
        (pass, pieces, cuts) => {
          const text = pieces.map(([n, form]) => n + loginLine(form, 'joe', pass)).join('');
          const r = replay(splitAt(Buffer.from(text, 'utf8'), cuts), {
            limits: { ...small, maxCommandsBeforeLogin: 50, maxFailedLogins: 50 },
            login: () => ({ ok: false, code: 'bad-credentials' }),
          });
          expect(r.output).not.toContain(pass);
          expect(r.output).not.toContain(b64(pass));
          expect(r.output).not.toContain(encodePlain('joe', pass));
        },
      ),
      { numRuns: 500 },
    );
  });
});
