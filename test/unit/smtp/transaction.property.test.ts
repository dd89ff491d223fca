/**
 * Property tests for the SMTP transaction after a local login: however the client's bytes are
 * chunked, the replies, the delivered messages and their bytes are the same; random input after login
 * never throws and every reply is one well-formed SMTP reply per line.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { OutgoingMessage } from '../../../src/graph/types.js';
import { splitAt } from '../../helpers/front-harness.js';
import { Harness, plain } from './front-harness.js';

const RUNS = { numRuns: 200, interruptAfterTimeLimit: 10_000 };

function loggedIn(): Harness {
  const h = new Harness({ maxMessageSize: 500 });
  h.send(`EHLO c\r\nAUTH PLAIN ${plain('u', 'p')}\r\n`);
  h.resolve({ type: 'auth-succeeded', local: true });
  return h;
}

/** Feeds the chunks; every send is answered at once (sent), as a fast sender would. */
function feed(chunks: Buffer[]): { wire: string; messages: OutgoingMessage[] } {
  const h = loggedIn();
  const start = h.wire.length;
  let answered = 0;
  for (const chunk of chunks) {
    h.send(chunk);
    for (let i = 0; i < 100 && h.phase === 'delivering'; i++) {
      answered += 1;
      h.resolve({
        type: 'delivered',
        outcome: answered % 2 ? { kind: 'sent' } : { kind: 'rejected', reason: 'no' },
      });
    }
  }
  return { wire: h.wire.slice(start), messages: h.ofType('deliver').map((d) => d.message) };
}

const stuffed = (body: string): string =>
  body
    .split('\r\n')
    .map((l) => (l.startsWith('.') ? `.${l}` : l))
    .join('\r\n');

const bodyText = fc
  .array(fc.constantFrom('line', '.dot', '..', '.', '', 'ünï', 'x'.repeat(40)), { maxLength: 12 })
  .map((lines) => (lines.length === 0 ? '' : `${lines.join('\r\n')}\r\n`));

/** A client script mixing DATA and BDAT messages, resets and noise, all pipelined. */
const script = fc
  .array(
    fc.oneof(
      bodyText.map(
        (b) => `MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nRCPT TO:<g@h.i>\r\nDATA\r\n${stuffed(b)}.\r\n`,
      ),
      fc.tuple(bodyText, bodyText).map(([a, b]) => {
        const x = Buffer.from(a, 'latin1').length;
        const y = Buffer.from(b, 'latin1').length;
        return `MAIL FROM:<>\r\nRCPT TO:<d@e.f>\r\nBDAT ${x}\r\n${a}BDAT ${y} LAST\r\n${b}`;
      }),
      fc.constantFrom(
        'RSET\r\n',
        'NOOP\r\n',
        'EHLO x\r\n',
        'RCPT TO:<z@y.x>\r\n',
        'DATA\r\n.\r\n',
        'BDAT 3\r\nabc',
        'FOO\r\n',
      ),
    ),
    { maxLength: 8 },
  )
  .map((parts) => Buffer.from(parts.join(''), 'latin1'));

describe('SMTP transaction properties', () => {
  it('chunking never changes the replies or the delivered messages', () => {
    fc.assert(
      fc.property(script, fc.array(fc.nat(), { maxLength: 10 }), (bytes, cuts) => {
        const whole = feed([bytes]);
        const split = feed(splitAt(bytes, cuts));
        expect(split.wire).toBe(whole.wire);
        expect(split.messages).toEqual(whole.messages);
      }),
      RUNS,
    );
  });

  it('random bytes after login never throw, and every reply line is a well-formed reply', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.array(fc.nat(), { maxLength: 6 }), (bytes, cuts) => {
        const { wire } = feed(splitAt(Buffer.from(bytes), cuts));
        for (const line of wire.split('\r\n').filter((l) => l.length > 0)) {
          expect(line).toMatch(/^[2-5]\d\d[ -][\x20-\x7e]*$/);
        }
      }),
      RUNS,
    );
  });
});
