/**
 * Device-code sessions hold a poller at the provider: every session that leaves the table (pushed out
 * by the size cap, expired, replaced by a newer code for the same link) must stop it, and one link has
 * at most one poller running.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { resolveAccount } from '../../../src/config/accounts.js';
import type { ConsentGrants, DeviceStart, PendingGrant } from '../../../src/http/consent-grants.js';
import { formAction, formField, location, startHarness, text, TestBrowser, type Harness } from './harness.js';

const CODE_LIFETIME_MS = 15 * 60_000;

interface FakeDevice {
  userCode: string;
  cancelled: number;
  /** Times its grant was stored. */
  saved: number;
  approve(): void;
}

/** Device grants that never talk to a provider: each start is one "poller" whose cancels are counted. */
function deviceGrants(now: () => number) {
  const started: FakeDevice[] = [];
  const grants: ConsentGrants = {
    startAuthorization: () => {
      throw new Error('not used');
    },
    exchangeCode: () => Promise.reject(new Error('not used')),
    identityAllowed: () => true,
    startDevice: (account): Promise<DeviceStart> => {
      let approve: (g: PendingGrant) => void = () => undefined;
      let reject: (err: Error) => void = () => undefined;
      const result = new Promise<PendingGrant>((res, rej) => {
        approve = res;
        reject = rej;
      });
      result.catch(() => undefined);
      const device: FakeDevice = {
        userCode: `CODE-${started.length + 1}`,
        cancelled: 0,
        saved: 0,
        approve: () =>
          approve({
            identity: { email: account.email },
            save: () => {
              device.saved += 1;
              return Promise.resolve();
            },
          }),
      };
      started.push(device);
      return Promise.resolve({
        userCode: device.userCode,
        verificationUri: 'https://microsoft.example/link',
        expiresAt: now() + CODE_LIFETIME_MS,
        result,
        cancel: () => {
          device.cancelled += 1;
          reject(new Error('cancelled'));
        },
      });
    },
  };
  /** Pollers started and not cancelled. */
  const live = () => started.filter((d) => d.cancelled === 0);
  return { grants, started, live };
}

describe('device-code sessions', () => {
  let h: Harness;
  let fake: ReturnType<typeof deviceGrants>;
  beforeEach(async () => {
    const clock = { now: Date.now() };
    fake = deviceGrants(() => clock.now);
    h = await startHarness({ deps: { grants: fake.grants, now: () => clock.now } });
    // the harness's clock object is the one the server reads
    h.clock = clock;
  });
  afterEach(async () => {
    await h.close();
  });

  async function newLink(expiresMs?: number): Promise<string> {
    const carol = resolveAccount(h.config, 'carol@contoso.com');
    if (!carol) throw new Error('no account carol');
    return (await h.server.createConsentLink(carol, expiresMs === undefined ? {} : { expiresMs })).url;
  }

  /** Opens the link and presses "Sign in with a code"; returns the device page URL. */
  async function pressDevice(browser: TestBrowser, link: string): Promise<string> {
    const html = await (await browser.get(link)).text();
    const res = await browser.post(new URL(formAction(html, 1), h.base).toString(), {
      csrf: formField(html, 'csrf'),
    });
    expect(res.status).toBe(303);
    return location(res, h.base);
  }

  it('a second press in the same browser shows the same code and starts no second poller', async () => {
    const link = await newLink();
    const browser = new TestBrowser();
    const first = await pressDevice(browser, link);
    const second = await pressDevice(browser, link);
    expect(second).toBe(first);
    expect(fake.started).toHaveLength(1);
    expect(text(await (await browser.get(second)).text())).toContain('CODE-1');
  });

  it('a press in another browser replaces the code and stops the old poller', async () => {
    const link = await newLink();
    const a = new TestBrowser();
    const b = new TestBrowser();
    const first = await pressDevice(a, link);
    const second = await pressDevice(b, link);
    expect(second).not.toBe(first);
    expect(fake.started).toHaveLength(2);
    expect(fake.started[0]?.cancelled).toBe(1);
    expect(fake.live()).toHaveLength(1);
    expect(text(await (await b.get(second)).text())).toContain('CODE-2');
    // the first browser learns why its code stopped working
    const old = await a.get(first);
    expect(old.status).toBe(409);
    expect(text(await old.text())).toContain('A newer code was requested');
  });

  it('after a replaced code the new one still completes the consent', async () => {
    const link = await newLink();
    await pressDevice(new TestBrowser(), link);
    const browser = new TestBrowser();
    const url = await pressDevice(browser, link);
    fake.started[1]?.approve();
    await new Promise((r) => setImmediate(r));
    const done = await browser.get(url);
    expect(done.status).toBe(200);
    expect(text(await done.text())).toContain('carol@contoso.com is now connected');
  });

  it('many presses on one link leave one poller running', async () => {
    const link = await newLink();
    for (let i = 0; i < 5; i++) await pressDevice(new TestBrowser(), link);
    expect(fake.started).toHaveLength(5);
    expect(fake.live()).toHaveLength(1);
  });

  it('a session pushed out by the size cap stops its poller', { timeout: 60_000 }, async () => {
    const browser = new TestBrowser();
    for (let i = 0; i < 201; i++) await pressDevice(browser, await newLink());
    expect(fake.started).toHaveLength(201);
    expect(fake.started[0]?.cancelled).toBe(1);
    expect(fake.live()).toHaveLength(200);
  });

  it('a code approved after the link expired stores nothing and says the link expired', async () => {
    const browser = new TestBrowser();
    const url = await pressDevice(browser, await newLink(5 * 60_000));
    // The code itself is still good (15 minutes), the link is not.
    h.clock.now += 5 * 60_000;
    fake.started[0]?.approve();
    await new Promise((r) => setImmediate(r));
    for (let i = 0; i < 2; i++) {
      const res = await browser.get(url);
      expect(res.status).toBe(410);
      expect(text(await res.text())).toContain('This link has expired');
    }
    expect(fake.started[0]?.saved).toBe(0);
    expect(await h.store.listAppPasswords('carol@contoso.com')).toEqual([]);
  });

  it('an expired session stops its poller', async () => {
    const browser = new TestBrowser();
    const url = await pressDevice(browser, await newLink());
    h.clock.now += CODE_LIFETIME_MS + 15 * 60_000;
    expect((await browser.get(url)).status).toBe(400);
    expect(fake.started[0]?.cancelled).toBe(1);
    expect(fake.live()).toHaveLength(0);
  });
});
