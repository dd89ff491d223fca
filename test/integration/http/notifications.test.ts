import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { resolveAccount } from '../../../src/config/accounts.js';
import type { ResolvedAccount } from '../../../src/config/types.js';
import { silentLogger } from '../../../src/log.js';
import { createConfiguredNotifier, notifyOnTokenEvent } from '../../../src/notify/index.js';
import { createNotifier, type NotificationPayload } from '../../../src/notify/notifier.js';
import { formAction, formField, startHarness, TestBrowser, type Harness } from './harness.js';

interface Hook {
  url: string;
  received: NotificationPayload[];
  status: number;
  next(): Promise<NotificationPayload>;
  close(): Promise<void>;
}

async function startHook(): Promise<Hook> {
  const received: NotificationPayload[] = [];
  const waiters: Array<(p: NotificationPayload) => void> = [];
  const hook = { status: 204 } as Hook;
  const server: Server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const payload = JSON.parse(Buffer.concat(chunks).toString('utf8')) as NotificationPayload;
      received.push(payload);
      waiters.shift()?.(payload);
      res.writeHead(hook.status).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return Object.assign(hook, {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    received,
    next: () => new Promise<NotificationPayload>((r) => waiters.push(r)),
    close: () => new Promise<void>((r) => server.close(() => r())),
  });
}

describe('notifications', () => {
  let hook: Hook;
  let h: Harness;
  beforeEach(async () => {
    hook = await startHook();
    h = await startHarness({ extra: `notify:\n  webhook: ${hook.url}\n  minInterval: 1h` });
  });
  afterEach(async () => {
    await h.close();
    await hook.close();
  });

  it('posts needs-consent with a fresh consent link that opens the consent page', async () => {
    const notifier = createConfiguredNotifier(h.config, h.store, silentLogger(), { now: () => h.clock.now });
    const onEvent = notifyOnTokenEvent(notifier);
    const got = hook.next();
    onEvent({
      kind: 'needs-consent',
      accountId: 'alice@example.com',
      at: h.clock.now,
      error: 'invalid_grant',
    });
    const payload = await got;
    expect(payload).toMatchObject({
      event: 'needs-consent',
      account: 'alice@example.com',
      reason: 'invalid_grant',
    });
    expect(payload.message).toContain('sign in again');
    // The configured public URL is the config's port (8080); the test server runs elsewhere, so
    // check the token part against the running server.
    const token = new URL(payload.consentUrl as string).pathname;
    expect(token).toMatch(/^\/consent\/[A-Za-z0-9_-]{43}$/);
    expect((await new TestBrowser().get(h.base + token)).status).toBe(200);
  });

  it('a failing account (provider outage, grant kept) gets no consent link; needs-consent does', async () => {
    const notifier = createConfiguredNotifier(h.config, h.store, silentLogger(), { now: () => h.clock.now });
    const onEvent = notifyOnTokenEvent(notifier);
    const failing = hook.next();
    onEvent({ kind: 'failing', accountId: 'alice@example.com', at: h.clock.now, error: 'http 503' });
    const payload = await failing;
    expect(payload).toMatchObject({ event: 'failing', account: 'alice@example.com', reason: 'http 503' });
    expect(payload.consentUrl).toBeUndefined();
    expect(JSON.stringify(payload)).not.toContain('/consent/');
    const needs = hook.next();
    onEvent({
      kind: 'needs-consent',
      accountId: 'alice@example.com',
      at: h.clock.now,
      error: 'invalid_grant',
    });
    expect((await needs).consentUrl).toMatch(/\/consent\/[A-Za-z0-9_-]{43}$/);
  });

  it('rate limits per account and event kind', async () => {
    const notifier = createConfiguredNotifier(h.config, h.store, silentLogger(), { now: () => h.clock.now });
    const alice = { accountId: 'alice@example.com' };
    expect(await notifier.notify({ kind: 'failing', ...alice })).toBe('sent');
    expect(await notifier.notify({ kind: 'failing', ...alice })).toBe('rate-limited');
    expect(await notifier.notify({ kind: 'needs-consent', ...alice })).toBe('sent');
    expect(await notifier.notify({ kind: 'failing', accountId: 'bob@example.org' })).toBe('sent');
    h.clock.now += 3600_000 - 1;
    expect(await notifier.notify({ kind: 'failing', ...alice })).toBe('rate-limited');
    h.clock.now += 1;
    expect(await notifier.notify({ kind: 'failing', ...alice })).toBe('sent');
    expect(hook.received.map((p) => `${p.event}:${p.account}`)).toEqual([
      'failing:alice@example.com',
      'needs-consent:alice@example.com',
      'failing:bob@example.org',
      'failing:alice@example.com',
    ]);
  });

  it('never throws when the webhook fails', async () => {
    hook.status = 500;
    const notifier = createConfiguredNotifier(h.config, h.store, silentLogger());
    await expect(notifier.notify({ kind: 'failing', accountId: 'alice@example.com' })).resolves.toBe('sent');
    const unreachable = createNotifier({
      settings: { webhook: 'http://127.0.0.1:1/hook', minIntervalMs: 0 },
      logger: silentLogger(),
    });
    await expect(unreachable.notify({ kind: 'failing', accountId: 'a@b.c' })).resolves.toBe('sent');
    const disabled = createNotifier({ settings: { minIntervalMs: 0 }, logger: silentLogger() });
    expect(await disabled.notify({ kind: 'failing', accountId: 'a@b.c' })).toBe('disabled');
  });

  it('announces a finished web consent', async () => {
    await h.close();
    const notifier = createNotifier({
      settings: { webhook: hook.url, minIntervalMs: 0 },
      logger: silentLogger(),
    });
    h = await startHarness({ deps: { notifier } });
    const browser = new TestBrowser();
    const link = await h.server.createConsentLink(
      resolveAccount(h.config, 'alice@example.com') as ResolvedAccount,
    );
    const page = await (await browser.get(link.url)).text();
    const start = await browser.post(new URL(formAction(page), h.base).toString(), {
      csrf: formField(page, 'csrf'),
    });
    const auth = await fetch(start.headers.get('location') as string, { redirect: 'manual' });
    const got = hook.next();
    expect((await browser.get(auth.headers.get('location') as string)).status).toBe(200);
    const payload = await got;
    expect(payload).toMatchObject({ event: 'consent-complete', account: 'alice@example.com' });
    expect(payload.consentUrl).toBeUndefined();
  });
});

describe('notify command', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'xoauth-notify-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs the command without a shell, with the event in args and env', async () => {
    const out = join(dir, 'out.txt');
    const script = join(dir, 'notify.sh');
    writeFileSync(
      script,
      `#!/bin/sh\nprintf '%s\\n' "$1" "$2" "$XOAUTH_PROXY_EVENT" "$XOAUTH_PROXY_ACCOUNT" "$XOAUTH_PROXY_REASON" "$XOAUTH_PROXY_CONSENT_URL" > "${out}"\n`,
    );
    chmodSync(script, 0o755);
    const notifier = createNotifier({
      settings: { command: script, minIntervalMs: 0 },
      logger: silentLogger(),
      consentLinkFor: () => Promise.resolve('http://localhost:8080/consent/x'),
    });
    const evil = '$(touch pwned);alice@example.com';
    expect(await notifier.notify({ kind: 'needs-consent', accountId: evil, reason: 'invalid_grant' })).toBe(
      'sent',
    );
    expect(readFileSync(out, 'utf8').split('\n')).toEqual([
      'needs-consent',
      evil,
      'needs-consent',
      evil,
      'invalid_grant',
      'http://localhost:8080/consent/x',
      '',
    ]);
  });

  it('the command gets a minimal environment: no store key, no other secret from the proxy env', async () => {
    const out = join(dir, 'env.txt');
    const script = join(dir, 'notify-env.sh');
    writeFileSync(script, `#!/bin/sh\nenv > "${out}"\n`);
    chmodSync(script, 0o755);
    const saved = { ...process.env };
    process.env.XOAUTH_PROXY_KEY = 'c2VjcmV0LXN0b3JlLWtleS1zZWNyZXQtc3RvcmUta2V5MTI=';
    process.env.SOME_CLIENT_SECRET = 'hunter2-very-secret';
    process.env.TZ = 'Europe/Amsterdam';
    try {
      const notifier = createNotifier({
        settings: { command: script, minIntervalMs: 0 },
        logger: silentLogger(),
      });
      expect(await notifier.notify({ kind: 'failing', accountId: 'a@b.c', reason: 'http 503' })).toBe('sent');
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
    }
    const text = readFileSync(out, 'utf8');
    const vars = new Map(
      text
        .split('\n')
        .filter((l) => l.includes('='))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const),
    );
    expect(text).not.toContain('hunter2-very-secret');
    expect(text).not.toContain('c2VjcmV0LXN0b3JlLWtleS1zZWNyZXQtc3RvcmUta2V5MTI=');
    expect(vars.has('XOAUTH_PROXY_KEY')).toBe(false);
    expect(vars.has('SOME_CLIENT_SECRET')).toBe(false);
    expect(vars.get('PATH')).toBe(saved.PATH);
    expect(vars.get('TZ')).toBe('Europe/Amsterdam');
    expect(vars.get('XOAUTH_PROXY_EVENT')).toBe('failing');
    expect(vars.get('XOAUTH_PROXY_ACCOUNT')).toBe('a@b.c');
    expect(vars.get('XOAUTH_PROXY_REASON')).toBe('http 503');
    // Only what we pass (sh may add PWD, SHLVL and `_` itself).
    const allowed =
      /^(PATH|HOME|LANG|LC_ALL|TZ|PWD|OLDPWD|SHLVL|_|XOAUTH_PROXY_(EVENT|ACCOUNT|USERNAME|REASON|MESSAGE|AT|CONSENT_URL))$/;
    expect([...vars.keys()].filter((k) => !allowed.test(k))).toEqual([]);
  });

  it('a failing command is logged, not thrown', async () => {
    const notifier = createNotifier({
      settings: { command: join(dir, 'does-not-exist'), minIntervalMs: 0 },
      logger: silentLogger(),
    });
    await expect(notifier.notify({ kind: 'failing', accountId: 'a@b.c' })).resolves.toBe('sent');
  });
});
