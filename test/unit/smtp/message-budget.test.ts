import { describe, expect, it } from 'vitest';
import { MessageBudget } from '../../../src/proxy/shared/message-budget.js';
import { SmtpFramer } from '../../../src/proxy/smtp/framer.js';
import { TRANSACTION_REPLY } from '../../../src/proxy/smtp/replies.js';
import { Harness, plain } from './front-harness.js';
import { errorOf, load, yaml } from '../config/helpers.js';

describe('MessageBudget', () => {
  it('shares hold what they reserve, and resetTo sets a share to what its session really holds', () => {
    const budget = new MessageBudget(100);
    const a = budget.share();
    const b = budget.share();
    expect(a.reserve(60)).toBe(true);
    expect(b.reserve(50)).toBe(false);
    expect(b.reserve(40)).toBe(true);
    expect(budget.held).toBe(100);
    a.resetTo(10);
    expect(budget.held).toBe(50);
    expect(b.reserve(50)).toBe(true);
    a.resetTo(0);
    b.resetTo(0);
    expect(budget.held).toBe(0);
  });

  it('the framer refuses content past the budget but still reads it to its end', () => {
    const budget = new MessageBudget(10);
    const framer = new SmtpFramer(1000, budget.share());
    framer.push(Buffer.from('0123456789ABCDEF\r\n.\r\nNOOP\r\n'));
    expect(framer.next({ type: 'data', maxBytes: 1000 })).toEqual({
      type: 'data',
      body: Buffer.alloc(0),
      tooLarge: false,
      overBudget: true,
    });
    expect(framer.next()).toEqual({ type: 'line', line: Buffer.from('NOOP') });
    const bdat = new SmtpFramer(1000, new MessageBudget(5).share());
    bdat.push(Buffer.from('0123456789RSET\r\n'));
    expect(bdat.next({ type: 'bdat', size: 10, keep: true })).toMatchObject({ size: 10, overBudget: true });
    expect(bdat.next()).toEqual({ type: 'line', line: Buffer.from('RSET') });
  });
});

describe('the SMTP front with a message budget', () => {
  function loggedIn(budget: MessageBudget): Harness {
    const h = new Harness({ maxMessageSize: 1000 }, 1000, budget.share());
    h.send(`EHLO c\r\nAUTH PLAIN ${plain('u', 'p')}\r\n`);
    h.resolve({ type: 'auth-succeeded', local: true });
    return h;
  }

  it('452 4.3.1 for a message the budget cannot hold; the transaction is over, the next one works', () => {
    const budget = new MessageBudget(1000);
    const other = budget.share();
    expect(other.reserve(900)).toBe(true);
    const h = loggedIn(budget);
    h.send('MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n');
    expect(h.send(`${'x'.repeat(200)}\r\n.\r\n`)).toBe(`${TRANSACTION_REPLY.insufficientStorage}\r\n`);
    expect(budget.held).toBe(900);
    other.resetTo(0);
    h.send('MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n');
    h.send(`${'x'.repeat(200)}\r\n.\r\n`);
    expect(h.actions.at(-1)).toMatchObject({ type: 'deliver' });
    // The message with the sender is still held, until its outcome is back.
    expect(budget.held).toBe(202);
    h.resolve({ type: 'delivered', outcome: { kind: 'sent' } });
    expect(budget.held).toBe(0);
  });

  it('BDAT chunks count until the message is sent or dropped; the end of the session lets go', () => {
    const budget = new MessageBudget(1000);
    const h = loggedIn(budget);
    h.send('MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 300\r\n');
    h.send('y'.repeat(300));
    expect(budget.held).toBe(300);
    h.send('RSET\r\n');
    expect(budget.held).toBe(0);
    h.send('MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 400\r\n');
    h.send('z'.repeat(400));
    expect(budget.held).toBe(400);
    h.front.dispose();
    expect(budget.held).toBe(0);
  });
});

describe('limits.messageMemory', () => {
  it('defaults to eight largest messages, and must hold at least one', () => {
    expect(load(yaml('settings:', '  limits: {}')).settings.limits.messageMemory).toBe(280_000_000);
    expect(
      errorOf(yaml('settings:', '  limits:', '    smtpMaxMessageSize: 1000', '    messageMemory: 999')),
    ).toContain(
      'settings.limits.messageMemory: messageMemory must hold at least one message of smtpMaxMessageSize (1000 bytes)',
    );
  });
});
