/** The listener's connection caps and the absolute login deadline, as a POP3 client sees them. */
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, sessionLines, startPop3Env, type EnvOptions, type Pop3Env } from './env.js';
import { RawPop3Client } from './raw-client.js';

let env: Pop3Env | undefined;
const clients: RawPop3Client[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await env?.close();
  env = undefined;
});

async function start(limits: EnvOptions['limits']): Promise<Pop3Env> {
  env = await startPop3Env({ listenerTls: 'none', upstreamTls: 'implicit', messages: [], limits });
  return env;
}

async function open(e: Pop3Env): Promise<{ client: RawPop3Client; first: string }> {
  const client = await RawPop3Client.connect(e.port);
  clients.push(client);
  return { client, first: await client.line() };
}

const GREETING = '+OK xoauth-proxy POP3 ready';
const BUSY = '-ERR [SYS/TEMP] Too many connections, try again later';

describe('POP3 connection limits', () => {
  it('maxConnections: at the cap served, one over gets -ERR [SYS/TEMP] and is closed', async () => {
    const e = await start({ maxConnections: 2 });
    expect((await open(e)).first).toBe(GREETING);
    expect((await open(e)).first).toBe(GREETING);
    const refused = await open(e);
    expect(refused.first).toBe(BUSY);
    await refused.client.waitClosed();
  });

  it('maxConnectionsPerAddress: one over the cap gets -ERR [SYS/TEMP]', async () => {
    const e = await start({ maxConnectionsPerAddress: 1 });
    expect((await open(e)).first).toBe(GREETING);
    expect((await open(e)).first).toBe(BUSY);
  });

  it('loginDeadline: a client sending NOOP-like commands every 50 ms is still closed at the deadline', async () => {
    const e = await start({ loginDeadlineMs: 600, maxCommandsBeforeLogin: 1_000 });
    const { client } = await open(e);
    const started = Date.now();
    let last = '';
    for (let i = 0; i < 200; i++) {
      last = await client.command('CAPA');
      if (!last.startsWith('+OK')) break;
      await client.multiline();
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(last).toMatch(/^-ERR /);
    await client.waitClosed();
    expect(Date.now() - started).toBeLessThan(8_000);
    await eventually(() => sessionLines(e).length === 1);
    expect(sessionLines(e)[0]).toMatchObject({ outcome: 'timeout', reason: 'not logged in within 600 ms' });
  });
});
