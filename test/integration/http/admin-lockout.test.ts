/**
 * Nobody can lock the admin out of /admin: failures are keyed per client address (behind
 * `http.trustedProxies`, the address the proxy forwards; from anyone else X-Forwarded-For is ignored),
 * and a signed session cookie from a successful login gets through the per-address lock and the global
 * cap. Clients play several hosts by binding 127.0.0.2, 127.0.0.3, ... as their source address.
 */
import { request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from './harness.js';

const TOKEN = 'tok-0123456789abcdef';

interface Reply {
  status: number;
  cookies: string[];
}

function get(
  h: Harness,
  from: string,
  options: { secret?: string; cookie?: string; forwardedFor?: string } = {},
): Promise<Reply> {
  const url = new URL(`${h.base}/admin`);
  const headers: Record<string, string> = {};
  if (options.secret !== undefined)
    headers.authorization = `Basic ${Buffer.from(`admin:${options.secret}`).toString('base64')}`;
  if (options.cookie !== undefined) headers.cookie = options.cookie;
  if (options.forwardedFor !== undefined) headers['x-forwarded-for'] = options.forwardedFor;
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: url.port, path: '/admin', localAddress: from, headers, timeout: 10_000 },
      (res) => {
        res.resume();
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, cookies: res.headers['set-cookie'] ?? [] }),
        );
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

const sessionOf = (r: Reply): string => {
  const c = r.cookies.find((v) => v.startsWith('xoauth_proxy_admin='));
  if (!c) throw new Error(`no admin session cookie in ${JSON.stringify(r.cookies)}`);
  return c.split(';')[0] as string;
};

describe('admin page lockouts', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it('a successful login sets a signed session cookie: HttpOnly, SameSite=Strict, Path=/admin, 1 h, not Secure on http', async () => {
    h = await startHarness({ http: `  adminPassword: '${TOKEN}'` });
    const ok = await get(h, '127.0.0.3', { secret: TOKEN });
    expect(ok.status).toBe(200);
    const cookie = ok.cookies.find((c) => c.startsWith('xoauth_proxy_admin='));
    expect(cookie).toBeDefined();
    const attrs = (cookie as string).split(';').map((a) => a.trim());
    expect(attrs).toContain('HttpOnly');
    expect(attrs).toContain('SameSite=Strict');
    expect(attrs).toContain('Path=/admin');
    expect(attrs).toContain('Max-Age=3600');
    expect(attrs).not.toContain('Secure');
    // the cookie alone opens the page; a forged or expired one does not
    expect((await get(h, '127.0.0.3', { cookie: sessionOf(ok) })).status).toBe(200);
    const [name, value] = sessionOf(ok).split('=') as [string, string];
    const [expires] = value.split('.');
    const forged = `${name}=${Number(expires) + 1}.${value.split('.')[1] as string}`;
    expect((await get(h, '127.0.0.3', { cookie: forged })).status).toBe(401);
    expect((await get(h, '127.0.0.3', { cookie: `${name}=${expires}.${'A'.repeat(43)}` })).status).toBe(401);
    h.clock.now += 60 * 60_000 + 1;
    expect((await get(h, '127.0.0.3', { cookie: sessionOf(ok) })).status).toBe(401);
  });

  it('an attacker at .2 and a flood from many addresses lock out neither the session nor the known address at .3', async () => {
    h = await startHarness({ http: `  adminPassword: '${TOKEN}'` });
    const session = sessionOf(await get(h, '127.0.0.3', { secret: TOKEN }));
    // later, when the server no longer remembers having verified that password a moment ago
    h.clock.now += 11 * 60_000;
    for (let i = 0; i < 10; i++)
      expect((await get(h, '127.0.0.2', { secret: `wrong-${i}` })).status).toBe(401);
    expect((await get(h, '127.0.0.2', { secret: TOKEN })).status).toBe(429);
    // 30 more wrong passwords from other addresses fill the global cap of checks per minute
    for (let i = 10; i < 40; i++) await get(h, `127.0.0.${i}`, { secret: 'wrong' });
    expect((await get(h, '127.0.0.50', { secret: TOKEN })).status).toBe(429);
    // the admin's browser with its session cookie, and a right password from where the admin signed in
    expect((await get(h, '127.0.0.3', { cookie: session })).status).toBe(200);
    expect((await get(h, '127.0.0.2', { cookie: session })).status).toBe(200);
    expect((await get(h, '127.0.0.3', { secret: TOKEN })).status).toBe(200);
  });

  it('X-Forwarded-For is honoured from a trusted proxy and ignored from anyone else', async () => {
    h = await startHarness({ http: `  adminPassword: '${TOKEN}'\n  trustedProxies: [127.0.0.1/32, '::1']` });
    // behind the trusted proxy at 127.0.0.1: the attacker's forwarded address is locked, not the proxy
    for (let i = 0; i < 10; i++)
      await get(h, '127.0.0.1', { secret: `wrong-${i}`, forwardedFor: '203.0.113.66, 198.51.100.7' });
    expect((await get(h, '127.0.0.1', { secret: TOKEN, forwardedFor: '198.51.100.7' })).status).toBe(429);
    // a forged left part does not escape the lock: the right-most untrusted hop counts
    expect(
      (await get(h, '127.0.0.1', { secret: TOKEN, forwardedFor: '192.0.2.1, 198.51.100.7' })).status,
    ).toBe(429);
    expect((await get(h, '127.0.0.1', { secret: TOKEN, forwardedFor: '192.0.2.44' })).status).toBe(200);
    // from an untrusted peer, a new X-Forwarded-For on every try changes nothing: its own address is locked
    for (let i = 0; i < 10; i++)
      await get(h, '127.0.0.2', { secret: `wrong-${i}`, forwardedFor: `192.0.2.${100 + i}` });
    expect((await get(h, '127.0.0.2', { secret: TOKEN, forwardedFor: '192.0.2.200' })).status).toBe(429);
    expect((await get(h, '127.0.0.3', { secret: TOKEN })).status).toBe(200);
  });
});
