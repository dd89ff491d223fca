/**
 * Security regression: STARTTLS command injection (CVE-2011-0411 class). Nothing a client (or a man
 * in the middle) sends in clear text after `STARTTLS` may be executed as if it had come over TLS.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { literalLogin as login, startImapEnv, type ImapEnv } from './env.js';
import { RawImap } from './raw-client.js';

let env: ImapEnv | undefined;
const clients: RawImap[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await env?.close();
  env = undefined;
});

describe('STARTTLS command injection', () => {
  it('discards commands pipelined in the same packet as STARTTLS', async () => {
    env = await startImapEnv({ listenerTls: 'starttls', upstreamTls: 'implicit' });
    const c = await RawImap.connect(env.port);
    clients.push(c);
    await c.waitFor('\r\n');
    c.write(`a1 STARTTLS\r\n${login('x1')}x2 NOOP\r\n`);
    await c.waitFor('a1 OK Begin TLS negotiation now\r\n');
    await c.startTls();
    c.write('a2 NOOP\r\n');
    const text = await c.waitFor('a2 OK');
    expect(text).not.toMatch(/x1|x2/);
    expect(env.tokens.calls).toEqual([]);
    expect(env.upstream.connections).toBe(0);
  });

  it('never runs clear text sent after STARTTLS in a later packet: the handshake fails instead', async () => {
    env = await startImapEnv({ listenerTls: 'starttls', upstreamTls: 'implicit' });
    const c = await RawImap.connect(env.port);
    clients.push(c);
    await c.waitFor('\r\n');
    c.write('a1 STARTTLS\r\n');
    await c.waitFor('a1 OK Begin TLS negotiation now\r\n');
    c.write(login('x1'));
    await c.waitClosed();
    expect(c.text).not.toContain('x1');
    expect(env.tokens.calls).toEqual([]);
    expect(env.upstream.connections).toBe(0);
  });
});
