/**
 * The whole web consent in a real (headless) Chromium: open the consent link, press the button, the
 * fake provider auto-consents, land on the welcome page, read the app password, then log in through
 * the IMAP proxy with it, to a real Dovecot that checks the stored token at the fake provider.
 * Screenshots of the consent, welcome and admin pages go to test-artifacts/ (copies in docs/screenshots/).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ImapFlow } from 'imapflow';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveAccount } from '../../../src/config/accounts.js';
import { parseConfig } from '../../../src/config/load.js';
import type { Config, ResolvedAccount } from '../../../src/config/types.js';
import { LocalAuthenticator } from '../../../src/credentials/authenticator.js';
import { hashPassword } from '../../../src/credentials/password.js';
import { consentHintFor } from '../../../src/http/consent-hint.js';
import { createHttpServer, type HttpServer } from '../../../src/http/server.js';
import { silentLogger } from '../../../src/log.js';
import { openStore } from '../../../src/store/index.js';
import { TokenManager } from '../../../src/oauth/token-manager.js';
import type { Store } from '../../../src/oauth/types.js';
import { createImapServer } from '../../../src/proxy/imap/server.js';
import type { ProxyServer } from '../../../src/proxy/shared/types.js';
import { requireDovecot, startDovecot, type DovecotServer } from '../../helpers/dovecot.js';
import { startFakeAuthServer, type FakeAuthServer } from '../../helpers/fake-auth-server.js';
import { pickFreePorts } from '../../helpers/proxy-process.js';

const ARTIFACTS = resolve('test-artifacts');
const ADMIN_PASSWORD = 'admin pw for the browser test';
const ALICE = 'alice.martin@example.com';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

describe.runIf(requireDovecot())('web consent in Chromium, then IMAP with the app password', () => {
  let fake: FakeAuthServer;
  let dovecot: DovecotServer;
  let dir: string;
  let config: Config;
  let store: Store;
  let http: HttpServer;
  let imap: ProxyServer;
  let imapPort: number;
  let context: BrowserContext;

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    fake = await startFakeAuthServer();
    dovecot = await startDovecot({ tokeninfoUrl: fake.tokeninfoUrl, users: [ALICE] });
    dir = mkdtempSync(join(tmpdir(), 'xoauth-browser-'));
    writeFileSync(join(dir, 'ca.pem'), dovecot.caPem);
    const [httpPort, port] = await pickFreePorts(2);
    imapPort = port as number;
    const adminHash = await hashPassword(ADMIN_PASSWORD, { ln: 10, r: 8, p: 1 });
    config = parseConfig(
      `
listen:
  imap:
    - port: ${imapPort}
  smtp:
    - port: 1587
  http:
    - port: ${httpPort}
store:
  path: ${join(dir, 'tokens.db')}
  keyFile: ${join(dir, 'key')}
http:
  adminPassword: '${adminHash}'
connections:
  - name: gmail
    provider: google
    clientId: 123456789012-demo.apps.googleusercontent.com
    clientSecret: GOCSPX-demo-secret-do-not-use-4f2a
    projectId: mail-proxy-demo
    authorizeUrl: ${fake.authorizeUrl}
    tokenUrl: ${fake.tokenUrl}
    userinfoUrl: ${fake.userinfoUrl}
    imap: { host: ${dovecot.host}, port: ${dovecot.ports.imaps}, tls: implicit }
    caFile: ${join(dir, 'ca.pem')}
  - name: contoso
    provider: microsoft
    clientId: 3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a5b
    tenantId: contoso.onmicrosoft.com
accounts:
  - username: ${ALICE}
    connection: gmail
  - username: '*@example.org'
    connection: gmail
  - username: carol@contoso.com
    connection: contoso
`,
      { file: join(dir, 'config.yaml'), env: {} },
    );
    store = await openStore(config.store, { env: { XOAUTH_PROXY_KEY: randomBytes(32).toString('base64') } });
    const logger = silentLogger();
    const tokens = new TokenManager({ config, store, logger });
    http = createHttpServer(config.listen.http[0]!, { config, store, tokens, logger });
    await http.listen();
    imap = createImapServer(config.listen.imap[0]!, {
      config,
      authenticator: new LocalAuthenticator({ config, store, logger }),
      tokens,
      logger,
      consentHint: (account) => consentHintFor(config, account),
    });
    await imap.listen();
    context = await chromium.launchPersistentContext(join(dir, 'chromium-profile'), {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 900, height: 760 },
      httpCredentials: { username: 'admin', password: ADMIN_PASSWORD },
    });
  }, 120_000);

  afterAll(async () => {
    await context?.close();
    await imap?.close();
    await http?.close();
    await store?.close();
    await dovecot?.stop();
    await fake?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('consents, shows the app password once, and the password logs in through the IMAP proxy', async () => {
    const link = await http.createConsentLink(resolveAccount(config, ALICE) as ResolvedAccount);
    const page = await context.newPage();

    await page.goto(link.url);
    expect(await page.locator('h1').textContent()).toBe('Connect your mailbox');
    expect(await page.locator('dl.facts').textContent()).toContain(ALICE);
    await page.screenshot({ path: join(ARTIFACTS, 'consent.png'), fullPage: true });

    await Promise.all([
      page.waitForURL(/\/oauth\/callback\?/, { timeout: 30_000 }),
      page.getByRole('button', { name: 'Continue to Google' }).click(),
    ]);
    expect(await page.locator('h1').textContent()).toBe('Welcome, Alice Martin!');
    const password = (await page.locator('#app-password').textContent())?.trim() ?? '';
    expect(password).toMatch(/^[a-z2-9]{4}(-[a-z2-9]{4}){4}$/);
    await page.screenshot({ path: join(ARTIFACTS, 'welcome.png'), fullPage: true });

    // The link is spent: opening it again explains that, in words.
    const again = await context.newPage();
    await again.goto(link.url);
    expect(await again.locator('h1').textContent()).toBe('This link has already been used');
    await again.screenshot({ path: join(ARTIFACTS, 'link-used.png'), fullPage: true });
    await again.close();

    // The password is shown once: a reload does not show it again.
    await page.reload();
    expect(await page.locator('h1').textContent()).toBe('You are all set');
    expect(await page.locator('#app-password').count()).toBe(0);

    const client = new ImapFlow({
      host: '127.0.0.1',
      port: imapPort,
      secure: false,
      doSTARTTLS: false,
      auth: { user: ALICE, pass: password },
      logger: false,
      disableAutoIdle: true,
    });
    await client.connect();
    const status = await client.status('INBOX', { messages: true });
    expect(status && status.path).toBe('INBOX');
    await client.logout();
    // Dovecot writes its log asynchronously: wait for the line rather than read it at once.
    const logins = await dovecot.waitForLogins({
      count: 1,
      filter: (l) => l.user === ALICE && l.method === 'XOAUTH2',
    });
    expect(logins.length).toBeGreaterThanOrEqual(1);
    expect((await store.listAppPasswords(ALICE))[0]?.lastUsedAt).toBeGreaterThan(0);
  }, 120_000);

  it('the admin page lists the account and "Refresh token" opens consent in a new window', async () => {
    const page = await context.newPage();
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.goto(`${http.baseUrl}/admin`);
    expect(await page.locator('h1').textContent()).toBe('Administration');
    const row = page.locator('tr', { hasText: ALICE });
    expect(await row.locator('.badge').textContent()).toBe('Active');
    const body = await page.content();
    expect(body).not.toContain('GOCSPX-demo-secret-do-not-use-4f2a');
    await page.screenshot({ path: join(ARTIFACTS, 'admin.png'), fullPage: true });

    const [popup] = await Promise.all([
      context.waitForEvent('page'),
      row.getByRole('button', { name: 'Refresh token' }).click(),
    ]);
    await popup.waitForLoadState();
    expect(await popup.locator('h1').textContent()).toBe('Connect your mailbox');
    expect(popup.url()).toMatch(/\/consent\/[A-Za-z0-9_-]{43}$/);
  }, 120_000);
});
