/**
 * Warm upstream SMTP connections: the client's transcript is the one it gets without them, and a warm
 * connection (whose upstream already saw an EHLO) serves only a client that says the same EHLO name.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { UpstreamPoolSettings } from '../../../src/config/types.js';
import { EMAIL, PASSWORD, USER, eventually, startSmtpEnv, type SmtpEnv } from './env.js';
import { RawSmtpClient, plainIr } from './raw-client.js';

const POOL: UpstreamPoolSettings = { enabled: true, maxPerHost: 4, maxIdleMs: 20_000 };

let env: SmtpEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

/** One message sent, every reply the client read, in order. */
async function send(e: SmtpEnv, heloName = 'scanner.local'): Promise<string[]> {
  const c = await RawSmtpClient.connect(e.port);
  const replies = [await c.reply()];
  c.write(
    `EHLO ${heloName}\r\nAUTH PLAIN ${plainIr(USER, PASSWORD)}\r\nMAIL FROM:<${EMAIL}>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n`,
  );
  for (let i = 0; i < 5; i++) replies.push(await c.reply());
  c.write('Subject: pooled\r\n\r\nbody\r\n.\r\n');
  replies.push(await c.reply());
  replies.push(await c.command('QUIT'));
  await c.waitClosed();
  return replies;
}

describe('SMTP logins with warm upstream connections', () => {
  it('the same replies with and without a warm connection; the upstream sees the client EHLO name', async () => {
    for (const upstreamTls of ['implicit', 'starttls'] as const) {
      env = await startSmtpEnv({ listenerTls: 'none', upstreamTls });
      const expected = [await send(env), await send(env), await send(env)];
      await env.close();

      env = await startSmtpEnv({ listenerTls: 'none', upstreamTls, upstreamPool: POOL });
      const e = env;
      const pool = e.pool!;
      const got = [await send(e), await send(e)];
      await eventually(() => pool.stats().idle === 1);
      got.push(await send(e));
      expect(pool.stats()).toMatchObject({ hits: 1, misses: 2 });
      expect(got).toEqual(expected);
      expect(e.upstream.messages.map((m) => m.heloName)).toEqual([
        'scanner.local',
        'scanner.local',
        'scanner.local',
      ]);

      // Another EHLO name: the warm connections (greeted as scanner.local) are not for this client.
      await eventually(() => pool.stats().connecting === 0);
      const replies = await send(e, 'other.local');
      expect(replies[2]).toBe('235 2.7.0 Authentication successful');
      expect(pool.stats().hits).toBe(1);
      expect(e.upstream.messages.at(-1)?.heloName).toBe('other.local');
      await env.close();
      env = undefined;
    }
  });
});
