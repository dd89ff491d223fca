import { afterEach, describe, expect, it } from 'vitest';
import { resolveAccount } from '../../../src/config/accounts.js';
import { hashPassword } from '../../../src/credentials/password.js';
import { corruptRefreshToken } from '../../helpers/corrupt-store.js';
import { formField, location, startHarness, text, TestBrowser, type Harness } from './harness.js';

const basic = (secret: string): Record<string, string> => ({
  authorization: `Basic ${Buffer.from(`admin:${secret}`).toString('base64')}`,
});

describe('admin page', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  async function withHash(password = 'correct horse battery'): Promise<Harness> {
    const hash = await hashPassword(password, { ln: 10, r: 8, p: 1 });
    h = await startHarness({ http: `  adminPassword: '${hash}'\n  consentHint: admin` });
    return h;
  }

  it('asks for credentials, refuses a wrong password, and shows connections and accounts', async () => {
    const h = await withHash();
    const anonymous = await fetch(`${h.base}/admin`);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toMatch(/^Basic realm=/);
    expect((await fetch(`${h.base}/admin`, { headers: basic('wrong') })).status).toBe(401);

    const alice = resolveAccount(h.config, 'alice@example.com');
    await h.store.putToken({
      accountId: 'alice@example.com',
      connection: 'fake',
      refreshToken: 'rt-secret-value',
      accessToken: 'at-secret-value',
      accessTokenExpiresAt: Date.UTC(2030, 0, 2, 3, 4),
      scopes: [],
      state: 'needs-consent',
      lastError: 'invalid_grant: Token has been expired or revoked.',
      updatedAt: Date.now(),
    });
    await h.store.putToken({
      accountId: 'bob@example.org',
      connection: 'fake',
      refreshToken: 'rt-bob',
      scopes: [],
      state: 'active',
      updatedAt: Date.now(),
    });
    expect(alice).toBeDefined();
    const res = await fetch(`${h.base}/admin`, { headers: basic('correct horse battery') });
    expect(res.status).toBe(200);
    const html = await res.text();
    const t = text(html);
    expect(t).toContain('test-client');
    expect(t).toContain('••••••••6789');
    expect(html).not.toContain('test-secret-0123456789');
    expect(html).not.toContain('rt-secret-value');
    expect(html).not.toContain('at-secret-value');
    expect(t).toContain('11111111-2222-3333-4444-555555555555');
    expect(t).toContain('Needs consent');
    expect(t).toContain('2030-01-02 03:04 UTC');
    expect(t).toContain('invalid_grant');
    expect(t).toContain('*@example.org');
    expect(t).toContain('bob@example.org');
    expect(html).toContain('target="_blank"');
    expect(res.headers.get('content-security-policy')).toContain("form-action 'self'");
  });

  it('accepts an admin token (not a hash) compared as is', async () => {
    h = await startHarness({ http: `  adminPassword: 'tok-0123456789abcdef'` });
    expect((await fetch(`${h.base}/admin`, { headers: basic('tok-0123456789abcdef') })).status).toBe(200);
    expect((await fetch(`${h.base}/admin`, { headers: basic('tok-0123456789abcdeX') })).status).toBe(401);
  });

  it('creates consent links only with a valid CSRF token, also for pattern accounts', async () => {
    const h = await withHash();
    const browser = new TestBrowser(basic('correct horse battery'));
    const page = await (await browser.get(`${h.base}/admin`)).text();
    const csrf = formField(page, 'csrf');

    const forged = await browser.post(`${h.base}/admin/consent-link`, { username: 'alice@example.com' });
    expect(forged.status).toBe(403);
    const otherBrowser = new TestBrowser(basic('correct horse battery'));
    await otherBrowser.get(`${h.base}/admin`);
    expect(
      (await otherBrowser.post(`${h.base}/admin/consent-link`, { csrf, username: 'alice@example.com' }))
        .status,
    ).toBe(403);

    const created = await browser.post(`${h.base}/admin/consent-link`, { csrf, username: 'zoe@example.org' });
    expect(created.status).toBe(200);
    const html = await created.text();
    const url = /id="consent-link">([^<]+)</.exec(html)?.[1];
    expect(url).toMatch(new RegExp(`^${h.base}/consent/[A-Za-z0-9_-]{43}$`));
    const consentPage = await new TestBrowser().get(url as string);
    expect(consentPage.status).toBe(200);
    expect(text(await consentPage.text())).toContain('zoe@example.org');

    const unknown = await browser.post(`${h.base}/admin/consent-link`, {
      csrf,
      username: 'nobody@else.test',
    });
    expect(unknown.status).toBe(400);
    expect(text(await unknown.text())).toContain('does not match any account');
  });

  it('an account whose stored row cannot be decrypted shows as unreadable; the page still renders', async () => {
    const h = await withHash();
    await h.store.putToken({
      accountId: 'alice@example.com',
      connection: 'fake',
      refreshToken: 'rt-secret-value',
      accessToken: 'at-secret-value',
      accessTokenExpiresAt: Date.UTC(2030, 0, 2, 3, 4),
      scopes: [],
      state: 'active',
      updatedAt: Date.now(),
    });
    corruptRefreshToken(h.config.store, 'alice@example.com');
    const res = await fetch(`${h.base}/admin`, { headers: basic('correct horse battery') });
    expect(res.status).toBe(200);
    const page = text(await res.text());
    expect(page).toContain('alice@example.com');
    expect(page).toMatch(/Unreadable/);
    expect(page).toMatch(/cannot be decrypted.*create a consent link to replace it/);
    expect(page).not.toContain('rt-secret-value');
  });

  it('says how accounts of a Graph connection send, and which grant lacks the Graph consent', async () => {
    const hash = await hashPassword('correct horse battery', { ln: 10, r: 8, p: 1 });
    h = await startHarness({
      http: `  adminPassword: '${hash}'`,
      connections: [
        '  - name: m365',
        '    provider: microsoft',
        '    clientId: m365-client',
        '    tenantId: 11111111-2222-3333-4444-555555555555',
        '    send: auto',
      ].join('\n'),
      accounts: [
        '  - username: dana@contoso.com',
        '    connection: m365',
        '  - username: eve@contoso.com',
        '    connection: m365',
      ].join('\n'),
    });
    const base = { connection: 'm365', refreshToken: 'rt', state: 'active' as const, updatedAt: Date.now() };
    await h.store.putToken({
      ...base,
      accountId: 'dana@contoso.com',
      scopes: ['https://graph.microsoft.com/Mail.Send'],
      graphSendUntil: Date.UTC(2031, 4, 6, 7, 8),
    });
    await h.store.putToken({
      ...base,
      accountId: 'eve@contoso.com',
      scopes: ['https://outlook.office.com/SMTP.Send'],
    });
    const t = text(
      await (await fetch(`${h.base}/admin`, { headers: basic('correct horse battery') })).text(),
    );
    expect(t).toContain('sends through Graph (SMTP AUTH off) until 2031-05-06 07:08 UTC');
    expect(t).toContain('sends by SMTP (Graph if SMTP AUTH is off); consent again to allow Graph');
  });

  it('app-only accounts get no consent buttons and no consent links', async () => {
    const h = await withHash();
    const browser = new TestBrowser(basic('correct horse battery'));
    const page = await (await browser.get(`${h.base}/admin`)).text();
    expect(text(page)).toContain('app-only: no consent needed');
    const res = await browser.post(`${h.base}/admin/consent-link`, {
      csrf: formField(page, 'csrf'),
      username: 'robot@contoso.com',
    });
    expect(res.status).toBe(400);
    expect(text(await res.text())).toContain('No consent needed');
  });

  it('"Refresh token" redirects to a fresh, short-lived consent page', async () => {
    const h = await withHash();
    const browser = new TestBrowser(basic('correct horse battery'));
    const csrf = formField(await (await browser.get(`${h.base}/admin`)).text(), 'csrf');
    const res = await browser.post(`${h.base}/admin/refresh`, { csrf, username: 'alice@example.com' });
    expect(res.status).toBe(303);
    const target = location(res);
    expect(target).toMatch(/^\/consent\/[A-Za-z0-9_-]{43}$/);
    const page = await browser.get(h.base + target);
    expect(page.status).toBe(200);
    h.clock.now += 3600_000;
    expect((await browser.get(h.base + target)).status).toBe(410);
  });

  it('refuses POSTs without credentials and GET on the action URLs', async () => {
    const h = await withHash();
    const res = await fetch(`${h.base}/admin/consent-link`, {
      method: 'POST',
      body: 'username=alice@example.com',
    });
    expect(res.status).toBe(401);
    expect((await fetch(`${h.base}/admin/refresh`, { headers: basic('correct horse battery') })).status).toBe(
      405,
    );
  });

  it('locks an address out after ten wrong passwords', async () => {
    h = await startHarness({ http: `  adminPassword: 'tok-0123456789abcdef'` });
    for (let i = 0; i < 10; i++) {
      expect((await fetch(`${h.base}/admin`, { headers: basic(`wrong-${i}`) })).status).toBe(401);
    }
    const locked = await fetch(`${h.base}/admin`, { headers: basic('tok-0123456789abcdef') });
    expect(locked.status).toBe(429);
    h.clock.now += 10 * 60_000 + 1;
    expect((await fetch(`${h.base}/admin`, { headers: basic('tok-0123456789abcdef') })).status).toBe(200);
  });
});
