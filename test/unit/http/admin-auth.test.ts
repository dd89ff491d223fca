import type { IncomingMessage, ServerResponse } from 'node:http';
import { describe, expect, it, vi } from 'vitest';
import { hashPassword } from '../../../src/credentials/password.js';
import { AdminAuth } from '../../../src/http/admin-auth.js';
import { AdminRoutes } from '../../../src/http/admin-routes.js';
import { TrustedProxies, parseCidr } from '../../../src/http/client-address.js';
import { CsrfTokens } from '../../../src/http/security.js';
import { silentLogger } from '../../../src/log.js';
import type { Config } from '../../../src/config/types.js';
import type { Store } from '../../../src/oauth/types.js';

const scrypts = vi.hoisted(() => ({ count: 0 }));
vi.mock('../../../src/credentials/password.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../../src/credentials/password.js')>();
  return {
    ...real,
    verifyPassword: (password: string, hash: string) => {
      scrypts.count += 1;
      return real.verifyPassword(password, hash);
    },
  };
});

const TOKEN = 'tok-0123456789abcdef';

function request(remoteAddress: string, secret?: string): IncomingMessage {
  const headers =
    secret === undefined
      ? {}
      : { authorization: `Basic ${Buffer.from(`admin:${secret}`).toString('base64')}` };
  return { socket: { remoteAddress }, headers, method: 'GET' } as unknown as IncomingMessage;
}

/** 2001:db8:<n>::1, one address in each of many /64 networks. */
const rotating = (n: number) => `2001:db8:${(n >> 16).toString(16)}:${(n & 0xffff).toString(16)}::1`;

describe('AdminAuth', () => {
  it('locks a whole IPv6 /64, not one address of it', async () => {
    const clock = { now: 1_000_000 };
    const auth = new AdminAuth(TOKEN, () => clock.now);
    for (let i = 1; i <= 10; i++) {
      expect(await auth.check(request(`2001:db8:1:2::${i.toString(16)}`, 'wrong'))).toBe('wrong');
    }
    expect(await auth.check(request('2001:db8:1:2:ffff:ffff:ffff:ffff', TOKEN))).toBe('locked');
    expect(await auth.check(request('2001:db8:1:3::1', TOKEN))).toBe('ok');
  });

  it('concurrent wrong passwords from one address all count', async () => {
    const clock = { now: 1_000_000 };
    const auth = new AdminAuth(TOKEN, () => clock.now);
    const results = await Promise.all(
      Array.from({ length: 10 }, () => auth.check(request('192.0.2.9', 'wrong'))),
    );
    expect(results.every((r) => r === 'wrong')).toBe(true);
    expect(await auth.check(request('192.0.2.9', TOKEN))).toBe('locked');
  });

  it('failures from thousands of other networks do not unlock a locked address', async () => {
    const clock = { now: 1_000_000 };
    // the global cap is lifted here to show the per-address table alone keeps the lock
    const auth = new AdminAuth(TOKEN, () => clock.now, { attemptsPerMinute: Number.POSITIVE_INFINITY });
    for (let i = 0; i < 10; i++) await auth.check(request('192.0.2.7', 'wrong'));
    expect(await auth.check(request('192.0.2.7', TOKEN))).toBe('locked');
    for (let i = 0; i < 10_001; i++) await auth.check(request(rotating(i), 'wrong'));
    expect(await auth.check(request('192.0.2.7', TOKEN))).toBe('locked');
  });

  it('the table of addresses is bounded', async () => {
    const clock = { now: 1_000_000 };
    const auth = new AdminAuth(TOKEN, () => clock.now, {
      maxClients: 100,
      attemptsPerMinute: Number.POSITIVE_INFINITY,
    });
    for (let i = 0; i < 500; i++) await auth.check(request(rotating(i), 'wrong'));
    expect(auth.trackedClients).toBe(100);
  });

  it('beyond the global cap per minute, attempts are refused without running scrypt', async () => {
    const hash = await hashPassword('correct horse', { ln: 10, r: 8, p: 1 });
    const clock = { now: 1_000_000 };
    const auth = new AdminAuth(hash, () => clock.now, { attemptsPerMinute: 5 });
    // the admin signed in before the attack: a verified secret is not held up by the cap
    expect(await auth.check(request('192.0.2.1', 'correct horse'))).toBe('ok');
    for (let i = 0; i < 4; i++) expect(await auth.check(request(rotating(i), 'wrong'))).toBe('wrong');
    scrypts.count = 0;
    expect(await auth.check(request(rotating(100), 'wrong'))).toBe('busy');
    expect(await auth.check(request(rotating(101), 'correct horse-ish'))).toBe('busy');
    expect(scrypts.count).toBe(0);
    expect(await auth.check(request('192.0.2.1', 'correct horse'))).toBe('ok');
    // a refused attempt is no failure of that address, and the cap frees up after a minute
    clock.now += 60_000;
    expect(await auth.check(request(rotating(100), 'wrong'))).toBe('wrong');
    expect(scrypts.count).toBe(1);
  });

  it('the default cap is 30 attempts a minute', async () => {
    const clock = { now: 1_000_000 };
    const auth = new AdminAuth(TOKEN, () => clock.now);
    for (let i = 0; i < 30; i++) expect(await auth.check(request(rotating(i), 'wrong'))).toBe('wrong');
    expect(await auth.check(request(rotating(30), 'wrong'))).toBe('busy');
  });
});

describe('AdminRoutes and the global cap', () => {
  it('answers 429 with Retry-After and no login prompt', async () => {
    const routes = new AdminRoutes(
      {
        config: {} as Config,
        store: { deriveKey: () => Buffer.alloc(32, 7) } as unknown as Store,
        logger: silentLogger(),
        resolveAccount: () => undefined,
        now: () => 1_000_000,
        csrf: new CsrfTokens(),
        baseUrl: () => 'http://localhost:8080',
      },
      TOKEN,
    );
    const sent: { status: number; headers: Record<string, string>; body: string }[] = [];
    const res = {
      writeHead(status: number, headers: Record<string, string>) {
        sent.push({ status, headers, body: '' });
        return this;
      },
      end(body?: string) {
        const last = sent.at(-1);
        if (last && body) last.body = body;
      },
    } as unknown as ServerResponse;
    for (let i = 0; i < 31; i++) await routes.handle(request(rotating(i), 'wrong'), res, '/admin');
    expect(sent.slice(0, 30).every((s) => s.status === 401)).toBe(true);
    const busy = sent[30];
    expect(busy?.status).toBe(429);
    expect(busy?.headers['Retry-After']).toBe('60');
    expect(busy?.headers['WWW-Authenticate']).toBeUndefined();
    expect(busy?.body).toContain('Too many sign-in attempts');
  });
});

describe('TrustedProxies', () => {
  const req = (remoteAddress: string, xff?: string | string[]): IncomingMessage =>
    ({
      socket: { remoteAddress },
      headers: xff === undefined ? {} : { 'x-forwarded-for': xff },
    }) as unknown as IncomingMessage;

  it('ignores X-Forwarded-For unless the peer is a trusted proxy', () => {
    const none = new TrustedProxies([]);
    expect(none.clientOf(req('192.0.2.1', '203.0.113.5'))).toBe('192.0.2.1');
    const t = new TrustedProxies(['10.0.0.0/8', 'fd00::/8', '192.0.2.7']);
    expect(t.clientOf(req('198.51.100.1', '203.0.113.5'))).toBe('198.51.100.1');
    expect(t.clientOf(req('192.0.2.8', '203.0.113.5'))).toBe('192.0.2.8');
  });

  it('takes the right-most untrusted hop, over several headers, IPv6 and mapped addresses', () => {
    const t = new TrustedProxies(['10.0.0.0/8', 'fd00::/8']);
    expect(t.clientOf(req('10.1.2.3', 'forged, 203.0.113.5'))).toBe('203.0.113.5');
    expect(t.clientOf(req('::ffff:10.1.2.3', '198.51.100.9, 203.0.113.5, 10.9.9.9'))).toBe('203.0.113.5');
    expect(t.clientOf(req('fd00::1', ['2001:db8::1', 'fd12::2']))).toBe('2001:db8::1');
    // only trusted hops, or none at all: the last trusted one is all that is known
    expect(t.clientOf(req('10.1.2.3', '10.4.4.4'))).toBe('10.4.4.4');
    expect(t.clientOf(req('10.1.2.3'))).toBe('10.1.2.3');
    // garbage written by a trusted hop: stop at the address that hop was reached from
    expect(t.clientOf(req('10.1.2.3', '203.0.113.5, junk'))).toBe('10.1.2.3');
  });

  it('parses addresses and CIDR ranges, refuses anything else', () => {
    expect(parseCidr('10.0.0.0/8')).toEqual({ address: '10.0.0.0', prefix: 8, family: 'ipv4' });
    expect(parseCidr('::1')).toEqual({ address: '::1', prefix: 128, family: 'ipv6' });
    for (const bad of ['10.0.0.0/33', 'fd00::/129', 'proxy.example.com', '10.0.0/8', '', '10.0.0.1/']) {
      expect(parseCidr(bad)).toBeUndefined();
    }
  });
});
