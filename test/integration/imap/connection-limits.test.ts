/**
 * Limits before login over real sockets: the listener's connection caps and the absolute login
 * deadline (the idle timer restarts on every byte; a trickling client must still be dropped).
 */
import { describe, expect, it } from 'vitest';
import { eventually, sessionLines, literalLogin as login, rawImapHarness } from './env.js';

const { setup, open } = rawImapHarness();
const BUSY = '* BYE [UNAVAILABLE] Too many connections, try again later\r\n';

describe('IMAP connection limits', () => {
  it('maxConnections: at the cap served, one over refused with BYE [UNAVAILABLE]; relayed sessions count', async () => {
    const e = await setup({ limits: { maxConnections: 2 } });
    const a = await open(e);
    a.write(login('a1'));
    await a.waitFor('a1 OK');
    const b = await open(e);
    expect(b.text).toMatch(/^\* OK /);
    const c = await open(e);
    expect(c.text).toBe(BUSY);
    await c.waitClosed();
  });

  it('maxConnectionsPerAddress counts only connections not logged in', async () => {
    const e = await setup({ limits: { maxConnectionsPerAddress: 1 } });
    const a = await open(e);
    expect(a.text).toMatch(/^\* OK /);
    const refused = await open(e);
    expect(refused.text).toBe(BUSY);
    await refused.waitClosed();
    a.write(login('a1'));
    await a.waitFor('a1 OK');
    // a is relayed now: the address has a free pre-login slot again.
    const b = await open(e);
    expect(b.text).toMatch(/^\* OK /);
  });

  it('loginDeadline: a client trickling a byte at a time is dropped at the deadline', async () => {
    const e = await setup({ limits: { loginDeadlineMs: 600, preAuthIdleTimeoutMs: 60_000 } });
    const c = await open(e);
    const started = Date.now();
    // Far more than the deadline of trickling (each byte resets the idle timer), bounded in count.
    for (let i = 0; i < 200 && !c.closed; i++) {
      c.write('a');
      await new Promise((r) => setTimeout(r, 50));
    }
    await c.waitClosed();
    expect(Date.now() - started).toBeLessThan(8_000);
    expect(c.text).toContain('* BYE ');
    await eventually(() => sessionLines(e).length === 1);
    expect(sessionLines(e)[0]).toMatchObject({ outcome: 'timeout', reason: 'not logged in within 600 ms' });
  });

  it('loginDeadline does not touch a session that logged in', async () => {
    const e = await setup({ limits: { loginDeadlineMs: 400 } });
    const c = await open(e);
    c.write(login('a1'));
    await c.waitFor('a1 OK');
    await new Promise((r) => setTimeout(r, 800));
    c.write('a2 NOOP\r\n');
    await c.waitFor('a2 OK');
  });
});
