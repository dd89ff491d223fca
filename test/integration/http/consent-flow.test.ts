import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { resolveAccount } from '../../../src/config/accounts.js';
import { verifyPassword } from '../../../src/credentials/password.js';
import { createLogger } from '../../../src/log.js';
import { hashConsentToken } from '../../../src/oauth/consent-links.js';
import { formAction, formField, location, startHarness, text, TestBrowser, type Harness } from './harness.js';

function account(h: Harness, username: string) {
  const a = resolveAccount(h.config, username);
  if (!a) throw new Error(`no account ${username}`);
  return a;
}

/** Opens the link, presses the button; returns the provider's authorize URL. */
async function pressStart(h: Harness, browser: TestBrowser, url: string): Promise<string> {
  const page = await browser.get(url);
  expect(page.status).toBe(200);
  const html = await page.text();
  const start = await browser.post(new URL(formAction(html), h.base).toString(), {
    csrf: formField(html, 'csrf'),
  });
  expect(start.status).toBe(303);
  return location(start);
}

/** The fake provider auto-consents and redirects back: the callback URL. */
async function authorize(authorizeUrl: string): Promise<string> {
  const res = await fetch(authorizeUrl, { redirect: 'manual' });
  expect(res.status).toBe(302);
  return location(res);
}

async function fullConsent(h: Harness, browser: TestBrowser, url: string): Promise<Response> {
  return browser.get(await authorize(await pressStart(h, browser, url)));
}

describe('consent pages', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => {
    await h.close();
  });

  it('walks link -> provider -> callback -> welcome page, stores tokens and shows an app password once', async () => {
    const alice = account(h, 'alice@example.com');
    const link = await h.server.createConsentLink(alice);
    expect(link.url).toMatch(new RegExp(`^${h.base}/consent/[A-Za-z0-9_-]{43}$`));
    const browser = new TestBrowser();

    const page = await browser.get(link.url);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(page.headers.get('content-security-policy')).toContain(`form-action 'self' ${h.fake.url}`);
    expect(page.headers.get('referrer-policy')).toBe('no-referrer');
    expect(page.headers.get('x-frame-options')).toBe('DENY');
    expect(page.headers.get('cache-control')).toBe('no-store');
    const consentText = text(await page.text());
    expect(consentText).toContain('alice@example.com');
    expect(consentText).toContain('Continue to fake');

    const authorizeUrl = await pressStart(h, browser, link.url);
    const q = new URL(authorizeUrl).searchParams;
    expect(authorizeUrl.startsWith(h.fake.authorizeUrl)).toBe(true);
    expect(q.get('redirect_uri')).toBe(`${h.base}/oauth/callback`);
    expect(q.get('code_challenge_method')).toBe('S256');
    expect(q.get('login_hint')).toBe('alice@example.com');
    expect(q.get('state')).toMatch(/^[A-Za-z0-9_-]{20,}$/);

    const welcome = await browser.get(await authorize(authorizeUrl));
    expect(welcome.status).toBe(200);
    const html = await welcome.text();
    const t = text(html);
    expect(t).toMatch(/Welcome, \S+/);
    expect(t).toContain('alice@example.com is now connected');
    expect(t).toContain('1143');
    expect(t).toContain('1587');
    const password = /<output class="secret" id="app-password"[^>]*>([^<]+)<\/output>/.exec(html)?.[1];
    expect(password).toMatch(/^[a-z2-9]{4}(-[a-z2-9]{4}){4}$/);

    const record = await h.store.getToken('alice@example.com');
    expect(record?.state).toBe('active');
    expect(record?.refreshToken).toBeTruthy();
    expect(record?.identity).toBe('alice@example.com');
    expect(h.invalidated).toEqual(['alice@example.com']);
    const passwords = await h.store.listAppPasswords('alice@example.com');
    expect(passwords).toHaveLength(1);
    expect(passwords[0]?.label).toMatch(/^web consent \d{4}-\d{2}-\d{2}$/);
    expect(await verifyPassword(password as string, passwords[0]?.hash as string)).toBe(true);
    expect(html).not.toContain(record?.refreshToken as string);

    // Single use: the link is spent now.
    const again = await new TestBrowser().get(link.url);
    expect(again.status).toBe(410);
    expect(text(await again.text())).toContain('already been used');
  });

  it('a reload of the callback says "all set" and does not show the password again', async () => {
    const link = await h.server.createConsentLink(account(h, 'alice@example.com'));
    const browser = new TestBrowser();
    const callback = await authorize(await pressStart(h, browser, link.url));
    expect((await browser.get(callback)).status).toBe(200);
    const reload = await browser.get(callback);
    expect(reload.status).toBe(200);
    const html = await reload.text();
    expect(text(html)).toContain('You are all set');
    expect(html).not.toContain('app-password');
    expect(await h.store.listAppPasswords('alice@example.com')).toHaveLength(1);
  });

  it('works for an address under a domain pattern, bound to that address', async () => {
    const bob = account(h, 'bob@example.org');
    expect(bob.entry).toBe('*@example.org');
    const link = await h.server.createConsentLink(bob);
    const stored = await h.store.getConsentLink(hashConsentToken(link.url.split('/').pop() as string));
    expect(stored).toMatchObject({ accountId: 'bob@example.org', username: 'bob@example.org' });
    const res = await fullConsent(h, new TestBrowser(), link.url);
    expect(res.status).toBe(200);
    expect((await h.store.getToken('bob@example.org'))?.state).toBe('active');
    expect(await h.store.getToken('alice@example.com')).toBeUndefined();
  });

  it('shows no app password when the account has an admin-set password', async () => {
    await h.close();
    h = await startHarness({
      accounts: `  - username: dave@example.net\n    connection: fake\n    password: '$scrypt$ln=10,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5'`,
    });
    const res = await fullConsent(
      h,
      new TestBrowser(),
      (await h.server.createConsentLink(account(h, 'dave@example.net'))).url,
    );
    expect(res.status).toBe(200);
    const html = await res.text();
    expect(html).not.toContain('app-password');
    expect(text(html)).toContain('the password your administrator gave you');
    expect(await h.store.listAppPasswords('dave@example.net')).toHaveLength(0);
  });

  it('expires: valid one millisecond before, expired at the deadline', async () => {
    const link = await h.server.createConsentLink(account(h, 'alice@example.com'), { expiresMs: 60_000 });
    h.clock.now += 59_999;
    expect((await new TestBrowser().get(link.url)).status).toBe(200);
    h.clock.now += 1;
    const res = await new TestBrowser().get(link.url);
    expect(res.status).toBe(410);
    expect(text(await res.text())).toContain('This link has expired');
  });

  it('refuses unknown, tampered and malformed links with a friendly page', async () => {
    const link = await h.server.createConsentLink(account(h, 'alice@example.com'));
    const token = link.url.split('/').pop() as string;
    const tampered = token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A');
    for (const path of [
      `/consent/${tampered}`,
      `/consent/${'x'.repeat(43)}`,
      '/consent/short',
      '/consent/a.b',
    ]) {
      const res = await new TestBrowser().get(h.base + path);
      expect(res.status, path).toBe(404);
      const t = text(await res.text());
      expect(t).toContain('This link does not work');
      expect(t).toContain('ask your administrator for a new link');
    }
  });

  it('checks the CSRF token and the browser cookie on the start button', async () => {
    const link = await h.server.createConsentLink(account(h, 'alice@example.com'));
    const browser = new TestBrowser();
    const html = await (await browser.get(link.url)).text();
    const action = new URL(formAction(html), h.base).toString();
    const csrf = formField(html, 'csrf');

    const noToken = await browser.post(action, {});
    expect(noToken.status).toBe(403);
    expect(text(await noToken.text())).toContain('The form has expired');

    const otherBrowser = new TestBrowser();
    await otherBrowser.get(link.url);
    expect((await otherBrowser.post(action, { csrf })).status).toBe(403);

    const noCookie = await new TestBrowser().post(action, { csrf });
    expect(noCookie.status).toBe(400);
    expect(text(await noCookie.text())).toContain('allow cookies');

    expect((await browser.post(action, { csrf })).status).toBe(303);
  });

  it('refuses a callback with an unknown state, from another browser, or after 15 minutes', async () => {
    const unknown = await new TestBrowser().get(`${h.base}/oauth/callback?code=abc&state=nope`);
    expect(unknown.status).toBe(400);
    expect(text(await unknown.text())).toContain('could not be matched');
    expect((await new TestBrowser().get(`${h.base}/oauth/callback`)).status).toBe(400);

    const link = await h.server.createConsentLink(account(h, 'alice@example.com'));
    const browser = new TestBrowser();
    const late = await authorize(await pressStart(h, browser, link.url));
    h.clock.now += 15 * 60_000;
    expect((await browser.get(late)).status).toBe(400);
    expect(await h.store.getToken('alice@example.com')).toBeUndefined();
  });

  it("a callback from another browser is refused and leaves the owner's consent in progress intact", async () => {
    const link = await h.server.createConsentLink(account(h, 'alice@example.com'));
    const owner = new TestBrowser();
    const callback = await authorize(await pressStart(h, owner, link.url));
    // Someone who got hold of the redirect URL (code and state), without the owner's cookie.
    for (const stranger of [new TestBrowser(), new TestBrowser()]) {
      const res = await stranger.get(callback);
      expect(res.status).toBe(400);
      expect(text(await res.text())).toContain('could not be matched');
    }
    expect(h.fake.counts.authorizationCode).toBe(0);
    expect(await h.store.getToken('alice@example.com')).toBeUndefined();
    // The owner's browser still finishes with the very same callback...
    const welcome = await owner.get(callback);
    expect(welcome.status).toBe(200);
    expect(text(await welcome.text())).toContain('alice@example.com is now connected');
    expect((await h.store.getToken('alice@example.com'))?.state).toBe('active');
    // ...and only once: the state was spent by the matching callback (no second exchange, no password).
    expect(await (await owner.get(callback)).text()).not.toContain('app-password');
    expect(h.fake.counts.authorizationCode).toBe(1);
    expect(await h.store.listAppPasswords('alice@example.com')).toHaveLength(1);
  });

  it('refuses a callback when the link expired while the owner was at the provider; nothing is stored', async () => {
    const link = await h.server.createConsentLink(account(h, 'alice@example.com'), { expiresMs: 5 * 60_000 });
    const browser = new TestBrowser();
    const callback = await authorize(await pressStart(h, browser, link.url));
    // Within the 15 minutes a consent may stay in progress, but past the link's own deadline.
    h.clock.now += 5 * 60_000;
    const res = await browser.get(callback);
    expect(res.status).toBe(410);
    expect(text(await res.text())).toContain('This link has expired');
    expect(h.fake.counts.authorizationCode).toBe(0);
    expect(await h.store.getToken('alice@example.com')).toBeUndefined();
    expect(await h.store.listAppPasswords('alice@example.com')).toEqual([]);
    expect(
      (await h.store.getConsentLink(hashConsentToken(link.url.split('/').pop() as string)))?.usedAt,
    ).toBeUndefined();
  });

  it('one link holds at most 3 consents in progress: its oldest is dropped, the newest works', async () => {
    const link = await h.server.createConsentLink(account(h, 'alice@example.com'));
    const browsers = [1, 2, 3, 4].map(() => new TestBrowser());
    const callbacks: string[] = [];
    for (const b of browsers) callbacks.push(await authorize(await pressStart(h, b, link.url)));
    // The first press was pushed out by the fourth.
    expect(text(await (await (browsers[0] as TestBrowser).get(callbacks[0] as string)).text())).toContain(
      'could not be matched',
    );
    // The newest press finishes.
    const welcome = await (browsers[3] as TestBrowser).get(callbacks[3] as string);
    expect(welcome.status).toBe(200);
    expect((await h.store.getToken('alice@example.com'))?.state).toBe('active');
  });

  it("pressing one link over and over never evicts another owner's consent in progress", async () => {
    const bobLink = await h.server.createConsentLink(account(h, 'bob@example.org'));
    const bob = new TestBrowser();
    const bobCallback = await authorize(await pressStart(h, bob, bobLink.url));

    // More presses than the whole table holds (1000), all with one link, in one browser.
    const link = await h.server.createConsentLink(account(h, 'alice@example.com'));
    const flood = new TestBrowser();
    const page = await (await flood.get(link.url)).text();
    const action = new URL(formAction(page), h.base).toString();
    const csrf = formField(page, 'csrf');
    for (let i = 0; i < 1010; i++) {
      const res = await flood.post(action, { csrf });
      expect(res.status).toBe(303);
    }
    const welcome = await bob.get(bobCallback);
    expect(welcome.status).toBe(200);
    expect(text(await welcome.text())).toContain('bob@example.org is now connected');
  }, 60_000);

  it('explains access_denied and keeps the link usable', async () => {
    const link = await h.server.createConsentLink(account(h, 'alice@example.com'));
    h.fake.options.denyConsent = true;
    const browser = new TestBrowser();
    const res = await browser.get(await authorize(await pressStart(h, browser, link.url)));
    expect(res.status).toBe(403);
    const t = text(await res.text());
    expect(t).toContain('Access was not granted');
    expect(t).toContain('The link still works until');
    expect(await h.store.getToken('alice@example.com')).toBeUndefined();

    h.fake.options.denyConsent = false;
    expect((await fullConsent(h, browser, link.url)).status).toBe(200);
  });

  it('explains invalid_scope and other provider errors', async () => {
    const link = await h.server.createConsentLink(account(h, 'alice@example.com'));
    const browser = new TestBrowser();
    const state1 = new URL(await pressStart(h, browser, link.url)).searchParams.get('state') as string;
    const scope = await browser.get(`${h.base}/oauth/callback?error=invalid_scope&state=${state1}`);
    expect(scope.status).toBe(502);
    expect(text(await scope.text())).toContain('invalid_scope');

    const state2 = new URL(await pressStart(h, browser, link.url)).searchParams.get('state') as string;
    const other = await browser.get(
      `${h.base}/oauth/callback?error=${encodeURIComponent('server_error<script>')}&state=${state2}`,
    );
    expect(other.status).toBe(502);
    const html = await other.text();
    expect(html).toContain('server_error');
    expect(html).not.toContain('<script>');
  });

  it('refuses a different identity, naming both addresses, and stores nothing', async () => {
    h.fake.options.autoConsentEmail = 'mallory@example.com';
    const link = await h.server.createConsentLink(account(h, 'alice@example.com'));
    const res = await fullConsent(h, new TestBrowser(), link.url);
    expect(res.status).toBe(403);
    const t = text(await res.text());
    expect(t).toContain('mallory@example.com');
    expect(t).toContain('alice@example.com');
    expect(t).toContain('Nothing was saved');
    expect(await h.store.getToken('alice@example.com')).toBeUndefined();
    expect(await h.store.listAppPasswords('alice@example.com')).toHaveLength(0);
    expect(
      (await h.store.getConsentLink(hashConsentToken(link.url.split('/').pop() as string)))?.usedAt,
    ).toBeUndefined();
  });

  it('explains a failed code exchange and stores nothing', async () => {
    const link = await h.server.createConsentLink(account(h, 'alice@example.com'));
    const browser = new TestBrowser();
    const callback = await authorize(await pressStart(h, browser, link.url));
    h.fake.failNext(1, 500);
    const res = await browser.get(callback);
    expect(res.status).toBe(502);
    expect(text(await res.text())).toContain('Could not finish connecting');
    expect(await h.store.getToken('alice@example.com')).toBeUndefined();
  });

  it('escapes everything it shows', async () => {
    // A pattern no longer accepts such a name, but pages must escape whatever an account holds.
    const name = '<img src=x onerror=alert(1)>"@example.org';
    const evil = { ...account(h, 'bob@example.org'), id: name.toLowerCase(), username: name, email: name };
    const page = await new TestBrowser().get((await h.server.createConsentLink(evil)).url);
    const html = await page.text();
    expect(html).not.toContain('<img src=x');
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;&quot;@example.org');
  });

  it('refuses an oversized form and a link to an app-only account', async () => {
    const link = await h.server.createConsentLink(account(h, 'alice@example.com'));
    const browser = new TestBrowser();
    await browser.get(link.url);
    const big = await browser.post(`${link.url}/start`, { csrf: 'x'.repeat(20_000) });
    expect(big.status).toBe(413);
    const robot = await new TestBrowser().get(
      (await h.server.createConsentLink(account(h, 'robot@contoso.com'))).url,
    );
    expect(robot.status).toBe(410);
    expect(text(await robot.text())).toContain('No sign-in needed');
  });

  it('serves the stylesheet, a 404 page and refuses wrong methods', async () => {
    const css = await fetch(`${h.base}/assets/style.css`);
    expect(css.status).toBe(200);
    expect(css.headers.get('content-type')).toContain('text/css');
    const missing = await fetch(`${h.base}/nothing`);
    expect(missing.status).toBe(404);
    expect(missing.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect(text(await missing.text())).toContain('Page not found');
    expect((await fetch(`${h.base}/oauth/callback`, { method: 'POST' })).status).toBe(405);
    // No admin password configured: no admin page at all.
    expect((await fetch(`${h.base}/admin`)).status).toBe(404);
  });
});

describe('logs', () => {
  it('never contain the link, the code, a token, the app password or the client secret', async () => {
    let logged = '';
    const destination = new Writable({
      write(chunk: Buffer, _enc, done) {
        logged += chunk.toString();
        done();
      },
    });
    const h = await startHarness({
      tokenManager: true,
      deps: { logger: createLogger({ level: 'debug', pretty: false, destination }) },
    });
    try {
      const link = await h.server.createConsentLink(account(h, 'alice@example.com'));
      const browser = new TestBrowser();
      const callback = await authorize(await pressStart(h, browser, link.url));
      const html = await (await browser.get(callback)).text();
      const password = /id="app-password"[^>]*>([^<]+)</.exec(html)?.[1] as string;
      // And a failing one: identity mismatch, then a provider error, then a bogus state.
      h.fake.options.autoConsentEmail = 'mallory@example.com';
      const link2 = await h.server.createConsentLink(account(h, 'bob@example.org'));
      const callback2 = await authorize(await pressStart(h, browser, link2.url));
      expect((await browser.get(callback2)).status).toBe(403);
      await browser.get(`${h.base}/oauth/callback?code=secret-code-123&state=bogus`);
      const record = await h.store.getToken('alice@example.com');
      expect(logged).toContain('consent complete');
      expect(logged).toContain('signed in as someone else');
      for (const secret of [
        link.url.split('/').pop() as string,
        link2.url.split('/').pop() as string,
        new URL(callback).searchParams.get('code') as string,
        new URL(callback2).searchParams.get('code') as string,
        'secret-code-123',
        record?.refreshToken as string,
        record?.accessToken as string,
        password,
        'test-secret-0123456789',
      ]) {
        expect(secret.length).toBeGreaterThan(8);
        expect(logged).not.toContain(secret);
      }
    } finally {
      await h.close();
    }
  });
});

describe('consent pages with the real TokenManager', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness({ tokenManager: true });
  });
  afterEach(async () => {
    await h.close();
  });

  it('records the consent through the token manager: fresh token served, consented event, no refresh', async () => {
    const alice = account(h, 'alice@example.com');
    await h.store.putToken({
      accountId: alice.id,
      connection: 'fake',
      refreshToken: 'rt-revoked',
      scopes: [],
      state: 'needs-consent',
      lastError: 'invalid_grant',
      updatedAt: Date.now(),
    });
    const res = await fullConsent(h, new TestBrowser(), (await h.server.createConsentLink(alice)).url);
    expect(res.status).toBe(200);
    const token = await h.tokens.getAccessToken(alice);
    expect(h.fake.checkAccessToken(token.token)).toBe('alice@example.com');
    expect(h.fake.counts.refresh).toBe(0);
    expect(h.events.map((e) => e.kind)).toEqual(['consented']);
    expect(await h.store.getToken(alice.id)).toMatchObject({ state: 'active' });
    expect((await h.store.getToken(alice.id))?.lastError).toBeUndefined();
    expect(h.invalidated).toEqual([]);
  });
});

describe('device-code consent (Microsoft)', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness({ fake: { deviceIntervalSeconds: 1 } });
  });
  afterEach(async () => {
    await h.close();
  });

  async function startDevice(browser: TestBrowser): Promise<string> {
    const link = await h.server.createConsentLink(account(h, 'carol@contoso.com'));
    const html = await (await browser.get(link.url)).text();
    expect(text(html)).toContain('Sign in with a code instead');
    const res = await browser.post(new URL(formAction(html, 1), h.base).toString(), {
      csrf: formField(html, 'csrf'),
    });
    expect(res.status).toBe(303);
    return location(res, h.base);
  }

  async function waitForOutcome(browser: TestBrowser, url: string): Promise<Response> {
    for (let i = 0; i < 100; i++) {
      const res = await browser.get(url);
      const body = await res.clone().text();
      if (!body.includes('http-equiv="refresh"')) return res;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error('device flow did not finish');
  }

  it('shows the code, waits, and lands on the welcome page', async () => {
    h.fake.deviceScript(1, 'approve', 'carol@contoso.com');
    const browser = new TestBrowser();
    const url = await startDevice(browser);
    const waiting = await (await browser.get(url)).text();
    expect(waiting).toContain('http-equiv="refresh"');
    expect(waiting).toContain('id="user-code"');
    expect((await new TestBrowser().get(url)).status).toBe(400);
    const done = await waitForOutcome(browser, url);
    expect(done.status).toBe(200);
    expect(text(await done.text())).toContain('carol@contoso.com is now connected');
    expect((await h.store.getToken('carol@contoso.com'))?.state).toBe('active');
  });

  it('shows no app password after a device-code consent: the browser may not be the owner', async () => {
    // The phishing case: whoever pressed the button sends the code to the owner, who signs in
    // elsewhere. The page this browser sees must not hand it a password for the owner's mailbox.
    h.fake.deviceScript(1, 'approve', 'carol@contoso.com');
    const attacker = new TestBrowser();
    const done = await waitForOutcome(attacker, await startDevice(attacker));
    expect(done.status).toBe(200);
    const html = await done.text();
    const t = text(html);
    expect(t).toContain('carol@contoso.com is now connected');
    expect(html).not.toContain('id="app-password"');
    expect(t).toContain('Ask your administrator for an app password');
    expect(t).toContain('xoauth-proxy app-password create carol@contoso.com');
    expect(t).not.toMatch(/Welcome, \S/);
    // None was made either: a password nobody saw would only be one more to guess.
    expect(await h.store.listAppPasswords('carol@contoso.com')).toEqual([]);
    expect((await h.store.getToken('carol@contoso.com'))?.state).toBe('active');
  });

  it('explains a declined sign-in', async () => {
    h.fake.deviceScript(0, 'declined', 'carol@contoso.com');
    const browser = new TestBrowser();
    const done = await waitForOutcome(browser, await startDevice(browser));
    expect(done.status).toBe(400);
    expect(text(await done.text())).toContain('did not complete');
    expect(await h.store.getToken('carol@contoso.com')).toBeUndefined();
  });

  it('is not offered for a non-Microsoft connection', async () => {
    const link = await h.server.createConsentLink(account(h, 'alice@example.com'));
    const browser = new TestBrowser();
    const html = await (await browser.get(link.url)).text();
    expect(html).not.toContain('/device');
    const res = await browser.post(link.url + '/device', { csrf: formField(html, 'csrf') });
    expect(res.status).toBe(400);
  });
});
