import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { get } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveAccount } from '../../../src/config/accounts.js';
import { parseConfig } from '../../../src/config/load.js';
import type { Config, ResolvedAccount } from '../../../src/config/types.js';
import { createHttpServer, type HttpServer } from '../../../src/http/server.js';
import { silentLogger } from '../../../src/log.js';
import { openStore } from '../../../src/store/index.js';
import type { Store } from '../../../src/oauth/types.js';
import { getTestCerts } from '../../helpers/certs.js';

describe('https listener', () => {
  let dir: string;
  let store: Store;
  let server: HttpServer;
  let port: number;
  let config: Config;

  beforeAll(async () => {
    const certs = getTestCerts();
    dir = mkdtempSync(join(tmpdir(), 'xoauth-https-'));
    config = parseConfig(
      `
listen:
  http:
    - { port: 8443, tls: implicit, cert: ${certs.certFile}, key: ${certs.keyFile} }
store: { path: ${join(dir, 't.db')}, keyFile: ${join(dir, 'k')} }
connections:
  - { name: g, provider: google, clientId: id, clientSecret: s }
accounts:
  - { username: alice@example.com, connection: g }
http: { adminPassword: tok-0123456789abcdef }
`,
      { file: join(dir, 'config.yaml'), env: {} },
    );
    store = await openStore(config.store, { env: { XOAUTH_PROXY_KEY: randomBytes(32).toString('base64') } });
    const listener = config.listen.http[0];
    if (!listener) throw new Error('no listener');
    server = createHttpServer(
      { ...listener, port: 0 },
      {
        config,
        store,
        tokens: { getAccessToken: () => Promise.reject(new Error('unused')), invalidate: () => undefined },
        logger: silentLogger(),
      },
    );
    port = (await server.listen()).port;
  });
  afterAll(async () => {
    await server.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the pages over TLS, defaults the public URL to https and sets a Secure cookie', async () => {
    const certs = getTestCerts();
    expect(server.baseUrl).toBe(`https://localhost:${port}`);
    const link = await server.createConsentLink(
      resolveAccount(config, 'alice@example.com') as ResolvedAccount,
    );
    expect(link.url.startsWith(`https://localhost:${port}/consent/`)).toBe(true);
    const res = await new Promise<{ status: number; cookie: string[]; hsts: unknown }>((resolve, reject) => {
      get(link.url, { ca: certs.caPem }, (r) => {
        r.resume();
        resolve({
          status: r.statusCode ?? 0,
          cookie: r.headers['set-cookie'] ?? [],
          hsts: r.headers['strict-transport-security'],
        });
      }).on('error', reject);
    });
    expect(res.status).toBe(200);
    expect(res.cookie[0]).toMatch(/; HttpOnly; SameSite=Lax; Max-Age=86400; Secure$/);
    // Browsers keep to https for this host from now on (a year).
    expect(res.hsts).toBe('max-age=31536000');
  });

  it('the admin session cookie is Secure on an https listener', async () => {
    const certs = getTestCerts();
    const cookies = await new Promise<string[]>((resolve, reject) => {
      get(
        `https://localhost:${port}/admin`,
        {
          ca: certs.caPem,
          headers: { authorization: `Basic ${Buffer.from('admin:tok-0123456789abcdef').toString('base64')}` },
        },
        (r) => {
          r.resume();
          resolve(r.headers['set-cookie'] ?? []);
        },
      ).on('error', reject);
    });
    const admin = cookies.find((c) => c.startsWith('xoauth_proxy_admin='));
    expect(admin).toMatch(/; HttpOnly; SameSite=Strict; Max-Age=3600; Secure$/);
    expect(admin).toContain('; Path=/admin;');
  });
});
