/**
 * The SMTP machine after a local login (Graph mode): whole conversations through the front, without
 * sockets. Every command and error of the transaction, the content phases, the delivery round trip,
 * and one reply per send outcome.
 */
import { describe, expect, it } from 'vitest';
import type { SendOutcome } from '../../../src/graph/types.js';
import { safeReason, sendOutcomeReply } from '../../../src/proxy/smtp/replies.js';
import { Harness, plain } from './front-harness.js';

const MAX = 1000;
const LOCAL_EHLO =
  '250-proxy.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-SIZE 1000\r\n250 CHUNKING\r\n';

/** A front logged in locally: EHLO, AUTH PLAIN, and the session's `auth-succeeded` with `local`. */
function loggedIn(config: ConstructorParameters<typeof Harness>[0] = {}): Harness {
  const h = new Harness({ maxMessageSize: MAX, ...config });
  h.send(`EHLO c\r\nAUTH PLAIN ${plain('u', 'p')}\r\n`);
  expect(h.phase).toBe('authenticating');
  expect(h.resolve({ type: 'auth-succeeded', local: true })).toBe('235 2.7.0 Authentication successful\r\n');
  expect(h.phase).toBe('mail');
  expect(h.ofType('start-relay')).toEqual([]);
  return h;
}

const lines = (wire: string): string[] => wire.split('\r\n').filter((l) => l.length > 0);

describe('SMTP transaction: commands', () => {
  it('EHLO after login advertises the Graph-mode list (no AUTH, no STARTTLS); HELO too', () => {
    const h = loggedIn();
    expect(h.send('EHLO again\r\n')).toBe(LOCAL_EHLO);
    expect(h.send('HELO again\r\n')).toBe('250 proxy.test\r\n');
  });

  it('MAIL, RCPT, DATA, body, deliver with the exact envelope and bytes; 250 after the send', () => {
    const h = loggedIn();
    const out = h.send(
      'MAIL FROM:<alice@example.com> SIZE=50 BODY=8BITMIME\r\nRCPT TO:<bob@example.net>\r\nRCPT TO:<Carol@Example.org>\r\nDATA\r\n',
    );
    expect(lines(out)).toEqual([
      '250 2.1.0 Sender OK',
      '250 2.1.5 Recipient OK',
      '250 2.1.5 Recipient OK',
      '354 End data with <CR><LF>.<CR><LF>',
    ]);
    expect(h.send('Subject: hi\r\n\r\n..dot line\r\n\xe9\r\n.\r\nNOOP\r\n')).toBe('');
    expect(h.phase).toBe('delivering');
    const [deliver] = h.ofType('deliver');
    expect(deliver?.message).toEqual({
      from: 'alice@example.com',
      recipients: ['bob@example.net', 'Carol@Example.org'],
      data: Buffer.from('Subject: hi\r\n\r\n.dot line\r\n\xe9\r\n', 'latin1'),
    });
    // The pipelined NOOP waits for the send's reply, then is answered in order.
    expect(h.resolve({ type: 'delivered', outcome: { kind: 'sent' } })).toBe(
      '250 2.0.0 OK, message accepted for delivery\r\n250 2.0.0 OK\r\n',
    );
    expect(h.phase).toBe('mail');
  });

  it('after a delivery the transaction is reset: RCPT needs MAIL again; a second message works', () => {
    const h = loggedIn();
    h.send('MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nx\r\n.\r\n');
    h.resolve({ type: 'delivered', outcome: { kind: 'sent' } });
    expect(h.send('RCPT TO:<d@e.f>\r\n')).toBe('503 5.5.1 Send MAIL first\r\n');
    h.send('MAIL FROM:<>\r\nRCPT TO:<g@h.i>\r\nDATA\r\ny\r\n.\r\n');
    expect(h.ofType('deliver').map((d) => d.message.from)).toEqual(['a@b.c', '']);
  });

  it('MAIL errors: nested 503, unknown parameter 555, SIZE over the limit 552, syntax 501', () => {
    const h = loggedIn();
    expect(h.send('MAIL TO:<a@b.c>\r\n')).toBe('501 5.5.4 Syntax: MAIL FROM:<address> [parameters]\r\n');
    expect(h.send('MAIL FROM:a@b.c\r\n')).toBe('501 5.5.4 Syntax: MAIL FROM:<address> [parameters]\r\n');
    expect(h.send('MAIL FROM:<not an address>\r\n')).toBe('501 5.1.7 Bad sender address syntax\r\n');
    expect(h.send('MAIL FROM:<a@b.c> SIZE=abc\r\n')).toBe(
      '501 5.5.4 Syntax: MAIL FROM:<address> [parameters]\r\n',
    );
    expect(h.send('MAIL FROM:<a@b.c> RET=HDRS\r\n')).toBe('555 5.5.4 DSN is not supported\r\n');
    expect(h.send('MAIL FROM:<a@b.c> BODY=BINARYMIME\r\n')).toBe('555 5.5.4 Unsupported parameter\r\n');
    expect(h.send('MAIL FROM:<a@b.c> XFOO=1\r\n')).toBe('555 5.5.4 Unsupported parameter\r\n');
    expect(h.send(`MAIL FROM:<a@b.c> SIZE=${MAX + 1}\r\n`)).toBe(
      '552 5.3.4 Message size exceeds fixed maximum message size\r\n',
    );
    expect(h.send(`MAIL FROM:<a@b.c> SIZE=${MAX}\r\n`)).toBe('250 2.1.0 Sender OK\r\n');
    expect(h.send('MAIL FROM:<a@b.c>\r\n')).toBe('503 5.5.1 Sender already specified\r\n');
  });

  it('MAIL accepts <>, SMTPUTF8 and AUTH=, a space after the colon, and UTF-8 addresses', () => {
    const h = loggedIn();
    const utf8 = Buffer.from('MAIL FROM: <jürgen@bücher.example> SMTPUTF8 AUTH=<>\r\n', 'utf8');
    expect(h.send(utf8)).toBe('250 2.1.0 Sender OK\r\n');
    expect(h.send(Buffer.from('RCPT TO:<用户@例子.广告>\r\n', 'utf8'))).toBe('250 2.1.5 Recipient OK\r\n');
    h.send('DATA\r\nx\r\n.\r\n');
    expect(h.ofType('deliver')[0]?.message).toMatchObject({
      from: 'jürgen@bücher.example',
      recipients: ['用户@例子.广告'],
    });
  });

  it('an address that is not valid UTF-8 is refused', () => {
    const h = loggedIn();
    expect(h.send(Buffer.from([...Buffer.from('MAIL FROM:<a'), 0xff, ...Buffer.from('@b.c>\r\n')]))).toBe(
      '501 5.1.7 Bad sender address syntax\r\n',
    );
  });

  it('RCPT errors: before MAIL 503, NOTIFY/ORCPT 555, syntax 501; a duplicate is kept once', () => {
    const h = loggedIn();
    expect(h.send('RCPT TO:<a@b.c>\r\n')).toBe('503 5.5.1 Send MAIL first\r\n');
    h.send('MAIL FROM:<a@b.c>\r\n');
    expect(h.send('RCPT TO:<d@e.f> NOTIFY=NEVER\r\n')).toBe('555 5.5.4 DSN is not supported\r\n');
    expect(h.send('RCPT TO:<d@e.f> ORCPT=rfc822;d@e.f\r\n')).toBe('555 5.5.4 DSN is not supported\r\n');
    expect(h.send('RCPT TO:<d@e.f> XFOO\r\n')).toBe('555 5.5.4 Unsupported parameter\r\n');
    expect(h.send('RCPT FROM:<d@e.f>\r\n')).toBe('501 5.5.4 Syntax: RCPT TO:<address>\r\n');
    expect(h.send('RCPT TO:<d>\r\n')).toBe('501 5.1.3 Bad recipient address syntax\r\n');
    expect(h.send('RCPT TO:<d@e.f>\r\nRCPT TO:<D@E.F>\r\nRCPT TO:<@relay.example:x@y.z>\r\n')).toBe(
      '250 2.1.5 Recipient OK\r\n'.repeat(3),
    );
    h.send('DATA\r\nx\r\n.\r\n');
    expect(h.ofType('deliver')[0]?.message.recipients).toEqual(['d@e.f', 'x@y.z']);
  });

  it('at most maxRecipients recipients: the next one gets 452 4.5.3', () => {
    const h = loggedIn({ maxRecipients: 3 });
    h.send('MAIL FROM:<a@b.c>\r\n');
    const out = h.send('RCPT TO:<1@x.y>\r\nRCPT TO:<2@x.y>\r\nRCPT TO:<3@x.y>\r\nRCPT TO:<4@x.y>\r\n');
    expect(lines(out)).toEqual([
      '250 2.1.5 Recipient OK',
      '250 2.1.5 Recipient OK',
      '250 2.1.5 Recipient OK',
      '452 4.5.3 Too many recipients',
    ]);
  });

  it('the default recipient cap is Graph’s 500', () => {
    const h = loggedIn();
    h.send('MAIL FROM:<a@b.c>\r\n');
    const rcpts = Array.from({ length: 501 }, (_, i) => `RCPT TO:<r${i}@x.y>\r\n`).join('');
    const out = lines(h.send(rcpts));
    expect(out.filter((l) => l.startsWith('250'))).toHaveLength(500);
    expect(out[500]).toBe('452 4.5.3 Too many recipients');
  });

  it('DATA errors: no MAIL 503, no RCPT 503, arguments 501', () => {
    const h = loggedIn();
    expect(h.send('DATA\r\n')).toBe('503 5.5.1 Send MAIL first\r\n');
    h.send('MAIL FROM:<a@b.c>\r\n');
    expect(h.send('DATA\r\n')).toBe('503 5.5.1 Send RCPT first\r\n');
    expect(h.send('DATA now\r\n')).toBe('501 5.5.4 Syntax: DATA\r\n');
    expect(h.ofType('deliver')).toEqual([]);
  });

  it('a DATA body over the size limit is read to its end, dropped, and refused with 552', () => {
    const h = loggedIn();
    h.send('MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n');
    expect(h.send(`${'x'.repeat(MAX)}\r\n.\r\nNOOP\r\n`)).toBe(
      '552 5.3.4 Message size exceeds fixed maximum message size\r\n250 2.0.0 OK\r\n',
    );
    expect(h.ofType('deliver')).toEqual([]);
    expect(h.send('RCPT TO:<d@e.f>\r\n')).toBe('503 5.5.1 Send MAIL first\r\n');
  });

  it('RSET resets, NOOP, VRFY 252, AUTH again 503, STARTTLS 503, unknown 500, EXPN 502, QUIT 221', () => {
    const h = loggedIn();
    h.send('MAIL FROM:<a@b.c>\r\n');
    expect(h.send('RSET\r\n')).toBe('250 2.0.0 OK\r\n');
    expect(h.send('RCPT TO:<d@e.f>\r\n')).toBe('503 5.5.1 Send MAIL first\r\n');
    const out = h.send(
      `NOOP\r\nVRFY bob\r\nAUTH PLAIN ${plain('u', 'p')}\r\nSTARTTLS\r\nFROB\r\nEXPN list\r\nQUIT\r\nNOOP\r\n`,
    );
    expect(lines(out)).toEqual([
      '250 2.0.0 OK',
      '252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery',
      '503 5.5.1 Already authenticated',
      '503 5.5.1 STARTTLS not available after authentication',
      '500 5.5.2 Command not recognized',
      '502 5.5.1 Command not implemented',
      '221 2.0.0 Bye',
    ]);
    expect(h.ofType('authenticate')).toHaveLength(1);
    expect(h.ofType('close')).toEqual([{ type: 'close', outcome: 'delivered' }]);
  });

  it('a new EHLO in the middle of a transaction resets it', () => {
    const h = loggedIn();
    h.send('MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n');
    expect(h.send('EHLO c\r\n')).toBe(LOCAL_EHLO);
    expect(h.send('DATA\r\n')).toBe('503 5.5.1 Send MAIL first\r\n');
  });

  it('an HTTP request line and an overlong line end the session', () => {
    const http = loggedIn();
    expect(http.send('GET / HTTP/1.1\r\n')).toBe(
      '421 4.7.0 HTTP requests are not accepted here, closing connection\r\n',
    );
    const long = loggedIn();
    long.send(`MAIL FROM:<${'a'.repeat(2000)}@b.c>\r\n`);
    expect(long.phase).toBe('closed');
    expect(long.wire.endsWith('500 5.5.6 Line too long\r\n')).toBe(true);
  });
});

describe('SMTP transaction: BDAT', () => {
  it('chunks are acknowledged with their size; LAST delivers the joined bytes exactly', () => {
    const h = loggedIn();
    h.send('MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n');
    const first = Buffer.from('Subject: x\r\n\r\n.\r\n');
    const second = Buffer.from([0x00, 0xff, 0x0d, 0x0a]);
    expect(h.send(Buffer.concat([Buffer.from(`BDAT ${first.length}\r\n`), first]))).toBe(
      `250 2.0.0 ${first.length} octets received\r\n`,
    );
    expect(h.send(Buffer.concat([Buffer.from(`BDAT ${second.length} LAST\r\n`), second]))).toBe('');
    expect(h.ofType('deliver')[0]?.message.data).toEqual(Buffer.concat([first, second]));
    expect(h.resolve({ type: 'delivered', outcome: { kind: 'sent' } })).toBe(
      '250 2.0.0 OK, message accepted for delivery\r\n',
    );
  });

  it('BDAT 0 LAST ends the message; pipelined chunks and commands are answered in order', () => {
    const h = loggedIn();
    const out = h.send('MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 3\r\nabcBDAT 0 LAST\r\nNOOP\r\n');
    expect(lines(out)).toEqual([
      '250 2.1.0 Sender OK',
      '250 2.1.5 Recipient OK',
      '250 2.0.0 3 octets received',
    ]);
    expect(h.ofType('deliver')[0]?.message.data).toEqual(Buffer.from('abc'));
    expect(h.resolve({ type: 'delivered', outcome: { kind: 'sent' } })).toBe(
      '250 2.0.0 OK, message accepted for delivery\r\n250 2.0.0 OK\r\n',
    );
  });

  it('without MAIL or RCPT the chunk is consumed, then 503; its bytes are never read as commands', () => {
    const h = loggedIn();
    expect(h.send('BDAT 6 LAST\r\nQUIT\r\n')).toBe('503 5.5.1 Send MAIL first\r\n');
    expect(h.phase).toBe('mail');
    h.send('MAIL FROM:<a@b.c>\r\n');
    expect(h.send('BDAT 6\r\nQUIT\r\n')).toBe('503 5.5.1 Send RCPT first\r\n');
    expect(h.ofType('close')).toEqual([]);
  });

  it('DATA after BDAT in one transaction is refused', () => {
    const h = loggedIn();
    h.send('MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 2\r\nab');
    expect(h.send('DATA\r\n')).toBe('503 5.5.1 DATA not allowed after BDAT in the same transaction\r\n');
  });

  it('chunks over the size limit: read, dropped, 552, and the transaction is over', () => {
    const h = loggedIn();
    h.send('MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n');
    expect(h.send(`BDAT 600\r\n${'x'.repeat(600)}`)).toBe('250 2.0.0 600 octets received\r\n');
    expect(h.send(`BDAT 401 LAST\r\n${'y'.repeat(401)}NOOP\r\n`)).toBe(
      '552 5.3.4 Message size exceeds fixed maximum message size\r\n250 2.0.0 OK\r\n',
    );
    expect(h.ofType('deliver')).toEqual([]);
    expect(h.send('BDAT 1 LAST\r\nz')).toBe('503 5.5.1 Send MAIL first\r\n');
  });

  it('an unreadable BDAT line closes the session (its content would otherwise run as commands)', () => {
    const h = loggedIn();
    h.send('MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n');
    expect(h.send('BDAT many\r\nRSET\r\n')).toBe('501 5.5.4 Syntax: BDAT size [LAST]\r\n');
    expect(h.ofType('close')).toEqual([
      { type: 'close', outcome: 'protocol-error', reason: 'unreadable BDAT' },
    ]);
  });
});

describe('SMTP transaction: session events', () => {
  it('idle timeout: 421 4.4.2 and close; not while a send runs', () => {
    const h = loggedIn();
    h.send('MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nx\r\n.\r\n');
    expect(h.resolve({ type: 'idle-timeout' })).toBe('');
    h.resolve({ type: 'delivered', outcome: { kind: 'sent' } });
    expect(h.resolve({ type: 'idle-timeout' })).toBe('421 4.4.2 Idle timeout, closing connection\r\n');
    expect(h.ofType('close')).toEqual([{ type: 'close', outcome: 'timeout' }]);
  });

  it('shutdown while idle or reading content: 421 4.3.2 and close', () => {
    const idle = loggedIn();
    expect(idle.resolve({ type: 'shutdown' })).toBe('421 4.3.2 Service shutting down\r\n');
    const reading = loggedIn();
    reading.send('MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\npart of a bo');
    expect(reading.resolve({ type: 'shutdown' })).toBe('421 4.3.2 Service shutting down\r\n');
    expect(reading.ofType('deliver')).toEqual([]);
    expect(reading.ofType('close')).toEqual([{ type: 'close', outcome: 'shutdown' }]);
  });

  it('shutdown during a send: the send’s own reply first, then 421 4.3.2', () => {
    const h = loggedIn();
    h.send('MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nx\r\n.\r\n');
    expect(h.resolve({ type: 'shutdown' })).toBe('');
    expect(h.resolve({ type: 'delivered', outcome: { kind: 'sent' } })).toBe(
      '250 2.0.0 OK, message accepted for delivery\r\n421 4.3.2 Service shutting down\r\n',
    );
    expect(h.ofType('close')).toEqual([{ type: 'close', outcome: 'shutdown' }]);
  });

  it('after maxMessagesPerSession messages the next MAIL gets 421 and the session ends', () => {
    const h = loggedIn({ maxMessagesPerSession: 2 });
    for (let i = 0; i < 2; i++) {
      h.send('MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nx\r\n.\r\n');
      h.resolve({ type: 'delivered', outcome: { kind: 'rejected', reason: 'no' } });
    }
    expect(h.send('MAIL FROM:<a@b.c>\r\n')).toBe(
      '421 4.7.0 Too many messages in one connection, closing connection\r\n',
    );
    expect(h.ofType('close')).toEqual([{ type: 'close', outcome: 'limit', reason: 'messages per session' }]);
  });

  it('a relayed login still starts the relay (auth-succeeded without local)', () => {
    const h = new Harness();
    h.send(`EHLO c\r\nAUTH PLAIN ${plain('u', 'p')}\r\n`);
    h.resolve({ type: 'auth-succeeded' });
    expect(h.phase).toBe('relay');
    expect(h.ofType('start-relay')).toHaveLength(1);
  });
});

describe('SMTP replies per send outcome', () => {
  const cases: [SendOutcome, string][] = [
    [{ kind: 'sent' }, '250 2.0.0 OK, message accepted for delivery'],
    [{ kind: 'temporary', reason: 'Graph answered 503' }, '451 4.4.0 Graph answered 503'],
    [
      { kind: 'temporary', reason: 'throttled', retryAfterSeconds: 29.2 },
      '451 4.4.5 throttled; try again in 30 seconds',
    ],
    [{ kind: 'send-as-denied', reason: 'not the mailbox' }, '550 5.7.60 not the mailbox'],
    [{ kind: 'too-large', reason: 'over 35 MB' }, '552 5.3.4 over 35 MB'],
    [{ kind: 'rejected', reason: 'bad MIME' }, '554 5.6.0 bad MIME'],
    [
      { kind: 'needs-consent', reason: 'consent again for Mail.Send.' },
      '554 5.7.0 consent again for Mail.Send.',
    ],
    [{ kind: 'rejected', reason: '' }, '554 5.6.0 Message refused'],
  ];
  it.each(cases)('%j → %s', (outcome, reply) => {
    expect(sendOutcomeReply(outcome)).toBe(reply);
  });

  it('needs-consent carries the consent hint, like a failed login', () => {
    expect(
      sendOutcomeReply(
        { kind: 'needs-consent', reason: 'No Graph grant.' },
        'Ask the owner to run: x consent a',
      ),
    ).toBe('554 5.7.0 No Graph grant. Ask the owner to run: x consent a');
  });

  it('a long reason and a long hint still fit one 512-octet reply line; the hint is kept whole', () => {
    const hint = `Grant access again at https://proxy.example/consent/${'h'.repeat(200)}`;
    const reply = sendOutcomeReply({ kind: 'needs-consent', reason: 'r'.repeat(400) }, hint);
    expect(reply.length + 2).toBeLessThanOrEqual(512);
    expect(reply.endsWith(` ${hint}`)).toBe(true);
    expect(reply.startsWith('554 5.7.0 rrr')).toBe(true);
  });

  it('the session passes the consent hint through the delivered event', () => {
    const h = loggedIn();
    h.send('MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nx\r\n.\r\n');
    expect(
      h.resolve({
        type: 'delivered',
        outcome: { kind: 'needs-consent', reason: 'No Graph grant.' },
        consentHint: 'Visit https://proxy/consent',
      }),
    ).toBe('554 5.7.0 No Graph grant. Visit https://proxy/consent\r\n');
  });

  it('reasons are one safe line: no CR/LF or control characters, capped', () => {
    const reply = sendOutcomeReply({
      kind: 'rejected',
      reason: `bad\r\n250 2.0.0 forged\x00\x1b[31m ${'z'.repeat(1000)}`,
    });
    expect([...reply].every((c) => c >= ' ' && c <= '~')).toBe(true);
    expect(reply.startsWith('554 5.6.0 bad 250 2.0.0 forged [31m z')).toBe(true);
    expect(reply.length).toBeLessThanOrEqual(10 + 300);
    expect(safeReason('Grüße aus Köln')).toBe('Gr e aus K ln');
  });
});
