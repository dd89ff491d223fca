/**
 * Warm upstream connections behind real IMAP sessions: a login served by a warm connection reads
 * exactly like one that connected itself, a warm connection the upstream dropped is never used, the
 * pool drains, keeps nothing for a failing upstream, and a disabled pool opens nothing of its own.
 */
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { UpstreamPoolSettings } from '../../../src/config/types.js';
import { eventually, makeMessage, rawImapHarness, sessionLines, type ImapEnv } from './env.js';
import { literalLogin } from './env.js';

const { setup, open } = rawImapHarness();

const POOL: UpstreamPoolSettings = { enabled: true, maxPerHost: 4, maxIdleMs: 20_000 };
const message = makeMessage('pooled', 'Body\r\n');

/** One whole session as the client sees it: greeting, LOGIN, SELECT, FETCH, LOGOUT. */
async function session(e: ImapEnv): Promise<string> {
  const c = await open(e);
  c.write(`${literalLogin('a1')}a2 SELECT INBOX\r\na3 FETCH 1 (BODY[])\r\na4 LOGOUT\r\n`);
  await c.waitFor(/a4 OK.*\r\n/);
  await c.waitClosed();
  return c.text;
}

describe('IMAP logins with warm upstream connections', () => {
  it('a login through a warm connection gives the client the identical transcript', async () => {
    for (const upstreamTls of ['implicit', 'starttls'] as const) {
      const direct = await setup({ upstreamTls, messages: [message] });
      const expected = await session(direct);
      await direct.close();

      const e = await setup({ upstreamTls, messages: [message], upstreamPool: POOL });
      const pool = e.pool;
      if (!pool) throw new Error('no pool');
      const first = await session(e);
      // The second login sees one login in the window before it: one warm connection follows it.
      const second = await session(e);
      await eventually(() => pool.stats().idle === 1);
      const third = await session(e);
      expect(pool.stats()).toMatchObject({ hits: 1, misses: 2 });
      for (const t of [first, second, third]) expect(t).toBe(expected);
      expect(e.upstream.authAttempts.every((a) => a.ok)).toBe(true);
      await eventually(() => sessionLines(e).length === 3);
      expect(sessionLines(e).map((l) => l.outcome)).toEqual(['relayed', 'relayed', 'relayed']);
    }
  });

  it('never uses a warm connection the upstream dropped while it waited', async () => {
    const e = await setup({ messages: [message], upstreamPool: POOL });
    const pool = e.pool!;
    await session(e);
    await session(e);
    await eventually(() => pool.stats().idle === 1);
    e.upstream.dropAll();
    await eventually(() => pool.stats().idle === 0);
    const before = e.upstream.connections;
    const text = await session(e);
    expect(text).toContain('a1 OK');
    expect(pool.stats().hits).toBe(0);
    // The login connected itself (and the pool refilled behind it).
    expect(e.upstream.connections).toBeGreaterThan(before);
  });

  it('drains to zero once logins stop, and opens nothing more', async () => {
    const e = await setup({ messages: [message], upstreamPool: { ...POOL, maxIdleMs: 1_500 } });
    const pool = e.pool!;
    for (let i = 0; i < 3; i++) await session(e);
    await eventually(() => pool.stats().idle >= 1);
    await eventually(() => pool.stats().idle === 0 && pool.stats().connecting === 0, 5_000);
    const settled = e.upstream.connections;
    await new Promise((r) => setTimeout(r, 1_000));
    expect(e.upstream.connections).toBe(settled);
  });

  it('keeps no warm connection for an upstream whose connects fail', async () => {
    // An "upstream" that accepts and hangs up at once: every connect to it fails at the greeting.
    let accepted = 0;
    const sockets = new Set<Socket>();
    const broken = createServer((s) => {
      accepted += 1;
      sockets.add(s);
      s.destroy();
    });
    await new Promise<void>((r) => broken.listen(0, '127.0.0.1', r));
    try {
      const port = (broken.address() as AddressInfo).port;
      const e = await setup({
        upstreamPool: POOL,
        imapServer: { host: '127.0.0.1', port, tls: 'starttls' },
      });
      const pool = e.pool!;
      for (let i = 0; i < 4; i++) {
        const c = await open(e);
        c.write(literalLogin(`a${i}`));
        expect(await c.waitFor(/a\d .*\r\n/)).toMatch(/NO \[UNAVAILABLE\]/);
        c.close();
      }
      await new Promise((r) => setTimeout(r, 300));
      // One connect per login: the pool tried none of its own (the first failure started a backoff).
      expect(accepted).toBe(4);
      expect(pool.stats()).toMatchObject({ idle: 0, connecting: 0, backingOff: true });
    } finally {
      await new Promise<void>((r) => broken.close(() => r()));
    }
  });

  it('a disabled pool makes no connection beyond the logins themselves', async () => {
    const e = await setup({ messages: [message], upstreamPool: { ...POOL, enabled: false } });
    for (let i = 0; i < 4; i++) await session(e);
    await new Promise((r) => setTimeout(r, 300));
    expect(e.upstream.connections).toBe(4);
    expect(e.pool!.stats()).toMatchObject({ idle: 0, connecting: 0, hits: 0, misses: 0 });
  });
});
