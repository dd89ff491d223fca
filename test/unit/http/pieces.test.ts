import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.js';
import type { Config, ResolvedAccount } from '../../../src/config/types.js';
import { resolveAccount } from '../../../src/config/accounts.js';
import { consentHintFor } from '../../../src/http/consent-hint.js';
import { deviceFlowAvailable } from '../../../src/http/consent-grants.js';
import { clientHost, formatTime, maskSecret } from '../../../src/http/pages/format.js';
import { ExpiringMap } from '../../../src/http/pending-consents.js';
import { publicBaseUrl, redirectUri } from '../../../src/config/public-url.js';
import { CsrfTokens, safeEqual } from '../../../src/http/security.js';
import { loggablePath } from '../../../src/http/server.js';
import {
  createAppPassword,
  generateAppPassword,
  revokeAppPassword,
} from '../../../src/credentials/app-passwords.js';
import {
  checkConsentLink,
  createConsentLink,
  hashConsentToken,
  spendConsentLink,
} from '../../../src/oauth/consent-links.js';
import { openStore } from '../../../src/store/index.js';
import type { Store } from '../../../src/oauth/types.js';

function config(http: string, listenHttp = true): Config {
  return parseConfig(
    `
listen:
  imap: [{ port: 1143 }]
${listenHttp ? '  http: [{ port: 8080 }]' : ''}
store: { path: /tmp/unused.db, keyFile: /tmp/unused.key }
connections:
  - { name: g, provider: google, clientId: id, clientSecret: s }
  - { name: m, provider: microsoft, clientId: id, tenantId: common }
  - { name: app, provider: microsoft, clientId: id, clientSecret: s, tenantId: 11111111-2222-3333-4444-555555555555, grant: client_credentials }
accounts:
  - { username: alice@example.com, connection: g }
  - { username: '*@example.org', connection: g }
  - { username: carol@contoso.com, connection: m }
  - { username: robot@contoso.com, connection: app }
${http}
`,
    { file: '/tmp/config.yaml', env: {} },
  );
}

function acct(c: Config, u: string): ResolvedAccount {
  const a = resolveAccount(c, u);
  if (!a) throw new Error(u);
  return a;
}

describe('public URL, redirect URI and consent hint', () => {
  it('defaults to http://localhost:<port> and strips a trailing slash from publicUrl', () => {
    expect(publicBaseUrl(config(''))).toBe('http://localhost:8080');
    expect(publicBaseUrl(config(''), 4321)).toBe('http://localhost:4321');
    const c = config('http: { publicUrl: "https://proxy.example.com/" }');
    expect(publicBaseUrl(c)).toBe('https://proxy.example.com');
    expect(redirectUri(publicBaseUrl(c))).toBe('https://proxy.example.com/oauth/callback');
  });

  it('points at the admin page or the CLI command', () => {
    const admin = config(
      'http: { publicUrl: "https://p.example.com", adminPassword: tok-123456789, consentHint: admin }',
    );
    expect(consentHintFor(admin, acct(admin, 'alice@example.com'))).toBe(
      'Access for alice@example.com must be granted again: https://p.example.com/admin ("Refresh token")',
    );
    const command = config('http: { adminPassword: tok-123456789, consentHint: command }');
    expect(consentHintFor(command, acct(command, 'bob@example.org'))).toContain(
      'xoauth-proxy consent-link bob@example.org',
    );
    // No admin page without an admin password: fall back to the command.
    const noAdmin = config('http: { consentHint: admin }');
    expect(consentHintFor(noAdmin, acct(noAdmin, 'alice@example.com'))).toContain('consent-link');
  });

  it('offers the device flow only for delegated Microsoft connections', () => {
    const c = config('');
    expect(deviceFlowAvailable(acct(c, 'carol@contoso.com'))).toBe(true);
    expect(deviceFlowAvailable(acct(c, 'alice@example.com'))).toBe(false);
    expect(deviceFlowAvailable(acct(c, 'robot@contoso.com'))).toBe(false);
  });
});

describe('loggablePath', () => {
  it('hides consent tokens and device ids, drops the query', () => {
    expect(loggablePath('/consent/abcDEF123_-/start?x=1')).toBe('/consent/[redacted]/start');
    expect(loggablePath('/consent/device/abc')).toBe('/consent/device/[redacted]');
    expect(loggablePath('/oauth/callback?code=secret&state=s')).toBe('/oauth/callback');
    expect(loggablePath(undefined)).toBe('/');
  });
});

describe('formatting', () => {
  it('masks secrets, formats times, picks the client host', () => {
    expect(maskSecret(undefined)).toBe('none (public client)');
    expect(maskSecret('short')).toBe('••••••••');
    expect(maskSecret('GOCSPX-abcdefghijklmnop')).toBe('••••••••mnop');
    expect(formatTime(Date.UTC(2026, 0, 2, 3, 4, 5))).toBe('2026-01-02 03:04 UTC');
    expect(formatTime(undefined)).toBe('—');
    expect(clientHost({ host: '0.0.0.0', port: 1, tls: 'none' }, 'proxy.example.com')).toBe(
      'proxy.example.com',
    );
    expect(clientHost({ host: '127.0.0.1', port: 1, tls: 'none' }, 'proxy.example.com')).toBe('127.0.0.1');
  });
});

describe('ExpiringMap and CSRF tokens', () => {
  it('expires entries at their deadline, takes once, and caps its size', () => {
    let now = 1000;
    const m = new ExpiringMap<{ expiresAt: number; v: number }>(() => now, 3);
    m.set('a', { expiresAt: 2000, v: 1 });
    now = 1999;
    expect(m.get('a')?.v).toBe(1);
    now = 2000;
    expect(m.get('a')).toBeUndefined();
    for (const k of ['b', 'c', 'd', 'e']) m.set(k, { expiresAt: 9999, v: 2 });
    expect(m.size).toBe(3);
    expect(m.get('b')).toBeUndefined();
    expect(m.take('e')?.v).toBe(2);
    expect(m.take('e')).toBeUndefined();
  });

  it('reports entries pushed out by the cap or found expired, not those taken or deleted', () => {
    let now = 1000;
    const dropped: string[] = [];
    const m = new ExpiringMap<{ expiresAt: number }>(
      () => now,
      2,
      (key) => dropped.push(key),
    );
    m.set('a', { expiresAt: 5000 });
    m.set('b', { expiresAt: 2000 });
    m.set('c', { expiresAt: 5000 });
    expect(dropped).toEqual(['a']);
    now = 2000;
    expect(m.get('b')).toBeUndefined();
    expect(dropped).toEqual(['a', 'b']);
    m.set('d', { expiresAt: 3000 });
    now = 3000;
    m.set('e', { expiresAt: 5000 });
    expect(dropped).toEqual(['a', 'b', 'd']);
    expect(m.take('e')).toBeDefined();
    expect(m.delete('c')).toBe(true);
    expect(m.size).toBe(0);
    expect(dropped).toEqual(['a', 'b', 'd']);
  });

  it('binds CSRF tokens to browser and purpose', () => {
    const csrf = new CsrfTokens();
    const t = csrf.issue('browser-1', 'admin');
    expect(csrf.verify('browser-1', 'admin', t)).toBe(true);
    expect(csrf.verify('browser-2', 'admin', t)).toBe(false);
    expect(csrf.verify('browser-1', 'consent:x', t)).toBe(false);
    expect(csrf.verify('browser-1', 'admin', undefined)).toBe(false);
    expect(new CsrfTokens().verify('browser-1', 'admin', t)).toBe(false);
    expect(safeEqual('abc', 'abc')).toBe(true);
    expect(safeEqual('abc', 'abcd')).toBe(false);
  });
});

describe('consent links and app passwords on the real store', () => {
  let dir: string;
  let store: Store;
  const c = config('');
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'xoauth-unit-http-'));
    store = await openStore(
      { path: join(dir, 't.db'), keyFile: join(dir, 'k') },
      { env: { XOAUTH_PROXY_KEY: randomBytes(32).toString('base64') } },
    );
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stores only the hash, is single use and expires', async () => {
    const link = await createConsentLink(store, acct(c, 'bob@example.org'), {
      baseUrl: 'https://p.example.com/',
      expiresMs: 1000,
      now: 5000,
    });
    expect(link.url.startsWith('https://p.example.com/consent/')).toBe(true);
    const token = link.url.split('/').pop() as string;
    const hash = hashConsentToken(token);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(await store.getConsentLink(token)).toBeUndefined();
    expect(await store.getConsentLink(hash)).toMatchObject({ accountId: 'bob@example.org', expiresAt: 6000 });
    expect((await checkConsentLink(store, token, 5999)).status).toBe('valid');
    expect((await checkConsentLink(store, token, 6000)).status).toBe('expired');
    expect((await checkConsentLink(store, 'x'.repeat(43), 5000)).status).toBe('unknown');
    expect((await checkConsentLink(store, `${token}x`, 5000)).status).toBe('malformed');
    expect(await spendConsentLink(store, hash, 5500)).toBe(true);
    expect(await spendConsentLink(store, hash, 5501)).toBe(false);
    expect(await checkConsentLink(store, token, 5600)).toMatchObject({
      status: 'used',
      record: { usedAt: 5500 },
    });
    await expect(
      createConsentLink(store, acct(c, 'alice@example.com'), { baseUrl: 'http://x', expiresMs: 0 }),
    ).rejects.toThrow(RangeError);
  });

  it('makes readable, distinct app passwords with unique labels, revocable by id or label', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const p = generateAppPassword();
      expect(p).toMatch(/^[a-hjkmnp-z2-9]{4}(-[a-hjkmnp-z2-9]{4}){4}$/);
      seen.add(p);
    }
    expect(seen.size).toBe(200);
    const a = await createAppPassword(store, 'alice@example.com', 'laptop');
    const b = await createAppPassword(store, 'alice@example.com', 'laptop');
    expect(b.record.label).toBe('laptop (2)');
    expect(a.record.hash).not.toContain(a.password);
    expect(await revokeAppPassword(store, 'alice@example.com', 'laptop')).toBe(true);
    expect(await revokeAppPassword(store, 'bob@example.org', b.record.id)).toBe(false);
    expect(await revokeAppPassword(store, 'alice@example.com', b.record.id)).toBe(true);
    expect(await store.listAppPasswords('alice@example.com')).toEqual([]);
  });
});
