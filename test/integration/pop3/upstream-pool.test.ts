/** Warm upstream POP3 connections: the client reads exactly what it reads without them. */
import { afterEach, describe, expect, it } from 'vitest';
import type { UpstreamPoolSettings } from '../../../src/config/types.js';
import { PASSWORD, USER, eventually, makeMessage, startPop3Env, type Pop3Env } from './env.js';
import { RawPop3Client } from './raw-client.js';

const POOL: UpstreamPoolSettings = { enabled: true, maxPerHost: 4, maxIdleMs: 20_000 };
const message = makeMessage('pooled', 'Hi\r\n.dot first\r\nend\r\n');

let env: Pop3Env | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

async function session(e: Pop3Env): Promise<string[]> {
  const c = await RawPop3Client.connect(e.port);
  try {
    const lines = [await c.line()];
    lines.push(await c.command(`USER ${USER}`), await c.command(`PASS ${PASSWORD}`));
    lines.push(await c.command('STAT'), await c.command('RETR 1'));
    lines.push((await c.multiline()).toString('latin1'));
    lines.push(await c.command('QUIT'));
    await c.waitClosed();
    return lines;
  } finally {
    c.close();
  }
}

describe('POP3 logins with warm upstream connections', () => {
  it('the same transcript with and without a warm connection', async () => {
    for (const upstreamTls of ['implicit', 'starttls'] as const) {
      env = await startPop3Env({ listenerTls: 'none', upstreamTls, messages: [message] });
      const expected = await session(env);
      await env.close();

      env = await startPop3Env({ listenerTls: 'none', upstreamTls, messages: [message], upstreamPool: POOL });
      const pool = env.pool!;
      const got = [await session(env), await session(env)];
      await eventually(() => pool.stats().idle === 1);
      got.push(await session(env));
      expect(pool.stats()).toMatchObject({ hits: 1, misses: 2 });
      for (const t of got) expect(t).toEqual(expected);
      await env.close();
      env = undefined;
    }
  });
});
