/**
 * The pool's rules on real sockets to a local server: growth with the login rate and its cap, one use
 * per warm connection, the idle age, the backoff after a failed connect, off and shutdown.
 */
import { createServer, Socket, type AddressInfo, type Server } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { UpstreamPool, type PoolKey, type Warmable } from '../../../src/proxy/shared/upstream-pool.js';
import { UpstreamConnection } from '../../../src/proxy/shared/upstream.js';

let server: Server;
let accepted: Socket[];
let port: number;
let now: number;
let pool: UpstreamPool | undefined;

beforeEach(async () => {
  accepted = [];
  now = 1_000_000;
  server = createServer((s) => {
    accepted.push(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});

afterEach(async () => {
  pool?.close();
  pool = undefined;
  for (const s of accepted) s.destroy();
  await new Promise<void>((r) => server.close(() => r()));
});

const key = (): PoolKey => ({ protocol: 'imap', server: { host: '127.0.0.1', port, tls: 'implicit' } });

interface Prepared extends Warmable {
  n: number;
}

let made = 0;
/** A "dialogue" that only connects; `fail` makes it refuse instead. */
function prepare(fail = false) {
  return async (_signal: AbortSignal): Promise<Prepared> => {
    if (fail) throw new Error('refused');
    const socket = new Socket();
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.connect(port, '127.0.0.1', () => resolve());
    });
    made += 1;
    return { conn: new UpstreamConnection(socket, `127.0.0.1:${port}`), n: made };
  };
}

function newPool(settings: Partial<{ enabled: boolean; maxPerHost: number; maxIdleMs: number }> = {}) {
  pool = new UpstreamPool({
    settings: { enabled: true, maxPerHost: 3, maxIdleMs: 20_000, ...settings },
    now: () => now,
  });
  return pool;
}

const signal = new AbortController().signal;

async function settle(p: UpstreamPool): Promise<void> {
  for (let i = 0; i < 100 && p.stats().connecting > 0; i++) await new Promise((r) => setTimeout(r, 10));
}

describe('UpstreamPool', () => {
  it('grows with the logins in the idle age before each one, up to maxPerHost', async () => {
    const p = newPool();
    await p.acquire(key(), prepare(), signal);
    await settle(p);
    expect(p.stats().idle).toBe(0); // the first login in a while: nothing kept
    for (let i = 0; i < 6; i++) {
      now += 1_000;
      await p.acquire(key(), prepare(), signal);
      await settle(p);
    }
    expect(p.stats().idle).toBe(3);
    // Logins spaced wider than the idle age keep nothing (a warm one would expire unused).
    const q = newPool({ maxIdleMs: 5_000 });
    await q.acquire(key(), prepare(), signal);
    now += 6_000;
    await q.acquire(key(), prepare(), signal);
    await settle(q);
    expect(q.stats().idle).toBe(0);
  });

  it('hands each warm connection out once, and a dropped or talking one never', async () => {
    const p = newPool();
    await p.acquire(key(), prepare(), signal);
    now += 1_000;
    await p.acquire(key(), prepare(), signal);
    await settle(p);
    expect(p.stats().idle).toBe(1);
    now += 1_000;
    const warm = await p.acquire(key(), prepare(), signal);
    expect(p.stats().hits).toBe(1);
    await settle(p);
    // The refill after that login: two logins in the window before it.
    expect(p.stats().idle).toBe(2);
    for (const s of accepted) {
      if (s.remotePort !== warm.conn.socket.localPort) s.write('* BYE going away\r\n');
    }
    for (let i = 0; i < 100 && p.stats().idle > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(p.stats().idle).toBe(0);
    expect(warm.conn.untouched).toBe(true);
  });

  it('closes a warm connection before its idle age and does not hand out an expired one', async () => {
    const p = newPool({ maxIdleMs: 1_300 });
    await p.acquire(key(), prepare(), signal);
    await p.acquire(key(), prepare(), signal);
    await settle(p);
    expect(p.stats().idle).toBe(1);
    // Expired by the clock (the timer has not fired yet): a new connect instead.
    now += 1_300;
    const fresh = await p.acquire(key(), prepare(), signal);
    expect(p.stats().hits).toBe(0);
    expect(fresh.conn.untouched).toBe(true);
    await settle(p);
    // And by the timer, with no logins: drained.
    await new Promise((r) => setTimeout(r, 600));
    expect(p.stats().idle).toBe(0);
  });

  it('after a failed connect: warm ones closed, no refill until a connect succeeds again', async () => {
    const p = newPool();
    await p.acquire(key(), prepare(), signal);
    await p.acquire(key(), prepare(), signal);
    await settle(p);
    expect(p.stats().idle).toBe(1);
    // The warm one is taken; the refill fails, as a login's own connect would.
    await p.acquire(key(), prepare(true), signal).catch(() => undefined);
    await settle(p);
    expect(p.stats()).toMatchObject({ idle: 0, backingOff: true });
    const before = made;
    await expect(p.acquire(key(), prepare(true), signal)).rejects.toThrow('refused');
    await p.acquire(key(), prepare(), signal);
    await settle(p);
    // The login's own connect succeeded; the pool itself opened nothing while backing off.
    expect(made).toBe(before + 1);
    now += 1_000;
    await p.acquire(key(), prepare(), signal);
    await settle(p);
    expect(p.stats().idle).toBeGreaterThan(0);
  });

  it('disabled: every acquire connects, nothing is kept; close() stops refills and closes warm ones', async () => {
    const off = newPool({ enabled: false });
    for (let i = 0; i < 3; i++) await off.acquire(key(), prepare(), signal);
    await settle(off);
    expect(accepted.length).toBe(3);
    expect(off.stats().idle).toBe(0);

    const p = newPool();
    await p.acquire(key(), prepare(), signal);
    await p.acquire(key(), prepare(), signal);
    await settle(p);
    expect(p.stats().idle).toBe(1);
    p.configure({ enabled: false, maxPerHost: 3, maxIdleMs: 20_000 });
    expect(p.stats().idle).toBe(0);
    p.configure({ enabled: true, maxPerHost: 3, maxIdleMs: 20_000 });
    p.close();
    await p.acquire(key(), prepare(), signal);
    await settle(p);
    expect(p.stats().idle).toBe(0);
  });
});
