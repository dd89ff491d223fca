/**
 * Session-level behaviour over real sockets: limits and timeouts before login, upstream variants
 * (no SASL-IR, capabilities not volunteered, untrusted certificate), shutdown, and the log line.
 */
import { connect as netConnect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { EMAIL, PASSWORD, eventually, sessionLines, literalLogin as login, rawImapHarness } from './env.js';

const { setup, open } = rawImapHarness();

describe('IMAP session', () => {
  it('drops a client idle before login, with a BYE, and logs the timeout', async () => {
    const e = await setup({ limits: { preAuthIdleTimeoutMs: 300 } });
    const c = await open(e);
    await c.waitClosed();
    expect(c.text).toContain('* BYE Idle for too long before login\r\n');
    await eventually(() => sessionLines(e).length === 1);
    expect(sessionLines(e)[0]).toMatchObject({ outcome: 'timeout' });
  });

  it('throws away what a half-open client streams after LOGOUT, and still closes after its grace', async () => {
    const e = await setup();
    // allowHalfOpen: the client keeps writing after the proxy's FIN, never closing its side.
    const socket = netConnect({ port: e.port, host: '127.0.0.1', allowHalfOpen: true });
    socket.on('error', () => undefined);
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    try {
      await eventually(() => text.includes('\r\n'));
      socket.write('a LOGOUT\r\n');
      await eventually(() => text.includes('a OK'));
      const chunk = Buffer.alloc(64 * 1024, 'x');
      let sent = 0;
      const started = Date.now();
      // Bounded: 8 MB, or until the proxy has destroyed the socket.
      while (sent < 8 * 1024 * 1024 && !socket.destroyed) {
        if (!socket.write(chunk)) await new Promise((r) => setTimeout(r, 5));
        sent += chunk.length;
      }
      expect(text).toContain('* BYE');
      // The session ends when its 2 s close grace destroys the socket; generous margin for a loaded machine.
      await eventually(() => sessionLines(e).length === 1);
      expect(Date.now() - started).toBeLessThan(15_000);
      // Only the LOGOUT line was fed to the front; the megabytes after it were read and discarded.
      expect(sessionLines(e)[0]!.bytesFromClient).toBe('a LOGOUT\r\n'.length);
    } finally {
      socket.destroy();
    }
  });

  it('has no idle timeout of its own after login', async () => {
    const e = await setup({ limits: { preAuthIdleTimeoutMs: 300 } });
    const c = await open(e);
    c.write(login('a1'));
    await c.waitFor('a1 OK');
    await new Promise((r) => setTimeout(r, 900));
    c.write('a2 NOOP\r\n');
    await c.waitFor('a2 OK');
  });

  it('ends the connection on a line over the limit, also when it arrives in pieces', async () => {
    const e = await setup({ limits: { maxLineLength: 100 } });
    const c = await open(e);
    c.write(`a NOOP ${'x'.repeat(50)}`);
    c.write('x'.repeat(50));
    await c.waitClosed();
    expect(c.text).toContain('* BYE Command line too long\r\n');
    await eventually(() => sessionLines(e).length === 1);
    expect(sessionLines(e)[0]).toMatchObject({ outcome: 'limit' });
  });

  it('ends the connection after too many commands before login', async () => {
    const e = await setup({ limits: { maxCommandsBeforeLogin: 3 } });
    const c = await open(e);
    c.write('a NOOP\r\nb NOOP\r\nc NOOP\r\n');
    await c.waitFor('c OK');
    c.write('d NOOP\r\n');
    await c.waitClosed();
    expect(c.text).toContain('* BYE Too many commands before login\r\n');
    expect(c.text).not.toContain('d OK');
  });

  it('logs in upstream without SASL-IR and fetches capabilities the server did not volunteer', async () => {
    const e = await setup({
      upstreamTls: 'starttls',
      fake: { saslIr: false, capabilityInGreeting: false, capabilityInLoginOk: false },
    });
    const c = await open(e);
    c.write(login('a1'));
    const text = await c.waitFor(/a1 OK.*\r\n/);
    expect(text).toContain(`a1 OK [CAPABILITY ${e.upstream.postLoginCapabilities}]`);
    expect(e.upstream.authAttempts).toEqual([{ mechanism: 'XOAUTH2', user: EMAIL, ok: true, saslIr: false }]);
    expect(e.upstream.commands[0]).toEqual(['STARTTLS', 'CAPABILITY', 'AUTHENTICATE XOAUTH2', 'CAPABILITY']);
  });

  it('refuses an upstream whose certificate it cannot verify', async () => {
    const e = await setup();
    // Without the test CA the fake's certificate chains to nothing the system trusts. The config
    // holds the same connection object the account resolves to.
    delete (e.account.connection as { ca?: string }).ca;
    const c = await open(e);
    c.write(login('a1'));
    expect(await c.waitFor(/a1 .*\r\n/)).toMatch(
      /a1 NO \[UNAVAILABLE\] Mail server unreachable, try again later \(TLS|certificate/i,
    );
    expect(e.upstream.authAttempts).toEqual([]);
  });

  it('says BYE to clients before login and ends relayed sessions on shutdown', async () => {
    const e = await setup();
    const waiting = await open(e);
    const relayed = await open(e);
    relayed.write(login('a1'));
    await relayed.waitFor('a1 OK');
    await e.proxy.close();
    await waiting.waitClosed();
    await relayed.waitClosed();
    expect(waiting.text).toContain('* BYE Server shutting down\r\n');
    await eventually(() => sessionLines(e).length === 2);
    expect(
      sessionLines(e)
        .map((l) => l.outcome)
        .sort(),
    ).toEqual(['shutdown', 'shutdown']);
  });

  it('shutdown during a STARTTLS handshake: no clear-text BYE into the handshake, logged as shutdown', async () => {
    const e = await setup({ listenerTls: 'starttls' });
    const c = await open(e);
    c.write('t1 STARTTLS\r\n');
    await c.waitFor('t1 OK');
    const before = c.text;
    // The client never starts the handshake: the session waits in starting-tls when the proxy stops.
    await e.proxy.close();
    await c.waitClosed();
    expect(c.text).toBe(before);
    await eventually(() => sessionLines(e).length === 1);
    expect(sessionLines(e)[0]).toMatchObject({ outcome: 'shutdown' });
  });

  it('counts every client byte once, also those pipelined behind the login, and every byte it sent', async () => {
    const e = await setup();
    const c = await open(e);
    // a2 arrives with the login and reaches the upstream through the relay's pending bytes.
    const sent = `${login('a1')}a2 NOOP\r\n`;
    c.write(sent);
    await c.waitFor('a2 OK');
    c.write('a3 LOGOUT\r\n');
    await c.waitClosed();
    await eventually(() => sessionLines(e).length === 1);
    expect(sessionLines(e)[0]).toMatchObject({
      outcome: 'relayed',
      bytesFromClient: Buffer.byteLength(sent) + 'a3 LOGOUT\r\n'.length,
      bytesToClient: Buffer.byteLength(c.text),
    });
  });

  it('writes one log line per session without any secret', async () => {
    const e = await setup({ staleAccessToken: true });
    const c = await open(e);
    c.write(login('a1'));
    await c.waitFor('a1 OK');
    c.write('a2 LOGOUT\r\n');
    await c.waitClosed();
    await eventually(() => sessionLines(e).length === 1);
    const raw =
      e
        .logText()
        .split('\n')
        .find((l) => l.includes('"session end"')) ?? '';
    // No key twice in the raw JSON (child logger bindings must not repeat record fields).
    const keys = [...raw.matchAll(/"([a-zA-Z]+)":/g)].map((m) => m[1]);
    expect(new Set(keys).size).toBe(keys.length);
    const [line] = sessionLines(e);
    expect(Object.keys(line ?? {}).sort()).toEqual(
      [
        'level',
        'time',
        'session',
        'protocol',
        'listener',
        'client',
        'username',
        'account',
        'upstream',
        'bytesFromClient',
        'bytesToClient',
        'durationMs',
        'outcome',
        'reason',
        'msg',
      ].sort(),
    );
    expect(line).toMatchObject({
      client: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
      account: EMAIL,
      outcome: 'relayed',
    });
    const token = (await e.store.getToken(EMAIL))?.accessToken ?? '';
    expect(token.length).toBeGreaterThan(5);
    expect(e.logText()).not.toContain(token);
    expect(e.logText()).not.toContain(PASSWORD);
  });
});
