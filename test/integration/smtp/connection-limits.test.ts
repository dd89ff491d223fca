/** The listener's connection caps and the absolute login deadline, as an SMTP client sees them. */
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, sessionLines, startSmtpEnv, type SmtpEnv } from './env.js';
import { RawSmtpClient } from './raw-client.js';

let env: SmtpEnv | undefined;
const clients: RawSmtpClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await env?.close();
  env = undefined;
});

async function open(e: SmtpEnv): Promise<{ client: RawSmtpClient; first: string }> {
  const client = await RawSmtpClient.connect(e.port);
  clients.push(client);
  return { client, first: await client.reply() };
}

const GREETING = '220 proxy.test ESMTP xoauth-proxy ready';
const BUSY = '421 4.7.0 Too many connections, try again later';

describe('SMTP connection limits', () => {
  it('maxConnectionsPerAddress: at the cap served, one over gets 421 and is closed', async () => {
    env = await startSmtpEnv({
      listenerTls: 'none',
      upstreamTls: 'implicit',
      settings: { maxConnectionsPerAddress: 2 },
    });
    expect((await open(env)).first).toBe(GREETING);
    expect((await open(env)).first).toBe(GREETING);
    const refused = await open(env);
    expect(refused.first).toBe(BUSY);
    await refused.client.waitClosed();
  });

  it('maxConnections: one over the cap gets 421', async () => {
    env = await startSmtpEnv({
      listenerTls: 'none',
      upstreamTls: 'implicit',
      settings: { maxConnections: 1 },
    });
    expect((await open(env)).first).toBe(GREETING);
    expect((await open(env)).first).toBe(BUSY);
  });

  it('loginDeadline: a client sending a NOOP every 50 ms is still closed with 421 at the deadline', async () => {
    env = await startSmtpEnv({
      listenerTls: 'none',
      upstreamTls: 'implicit',
      settings: { loginDeadlineMs: 600, maxCommandsBeforeLogin: 1_000 },
    });
    const { client } = await open(env);
    const started = Date.now();
    let last = '';
    for (let i = 0; i < 200; i++) {
      last = await client.command('NOOP');
      if (!last.startsWith('250')) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(last).toMatch(/^421 /);
    await client.waitClosed();
    expect(Date.now() - started).toBeLessThan(8_000);
    await eventually(() => sessionLines(env!).length === 1);
    expect(sessionLines(env)[0]).toMatchObject({ outcome: 'timeout', reason: 'not logged in within 600 ms' });
  });
});
