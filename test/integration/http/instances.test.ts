/**
 * Two instances behind one load balancer: each with its own HTTP server and its own handle on the
 * shared store. The owner's browser may reach either one at every step.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { resolveAccount } from '../../../src/config/accounts.js';
import { createHttpServer, type HttpServer } from '../../../src/http/server.js';
import type { Store } from '../../../src/store/types.js';
import { silentLogger } from '../../../src/log.js';
import { formAction, formField, location, startHarness, text, TestBrowser, type Harness } from './harness.js';

describe('consent across instances sharing a store', () => {
  let h: Harness;
  let otherStore: Store;
  let other: HttpServer;

  beforeEach(async () => {
    h = await startHarness({ realClock: true });
    otherStore = await h.openStore();
    const listener = h.config.listen.http[0]!;
    other = createHttpServer(
      { ...listener, port: 0 },
      {
        config: h.config,
        store: otherStore,
        tokens: { getAccessToken: () => Promise.reject(new Error('unused')), invalidate: () => undefined },
        logger: silentLogger(),
      },
    );
    await other.listen();
  });
  afterEach(async () => {
    await other.close();
    await otherStore.close();
    await h.close();
  });

  /** The same path on the other instance. */
  const onOther = (url: string): string => {
    const u = new URL(url);
    return new URL(`${u.pathname}${u.search}`, other.baseUrl).toString();
  };

  it('a page from one instance posts to the other, and the provider may send the owner back to either', async () => {
    const alice = resolveAccount(h.config, 'alice@example.com')!;
    const link = await h.server.createConsentLink(alice);
    const browser = new TestBrowser();

    // The link page (and its CSRF token) comes from the first instance...
    const page = await browser.get(link.url);
    const html = await page.text();
    // ...the button's POST lands on the second: the CSRF token is good there.
    const start = await browser.post(onOther(new URL(formAction(html), h.base).toString()), {
      csrf: formField(html, 'csrf'),
    });
    expect(start.status).toBe(303);
    const authorizeUrl = location(start);

    // The provider redirects to the public URL; the balancer hands the callback to the first instance,
    // which never saw the press: the consent in progress is in the store.
    const res = await fetch(authorizeUrl, { redirect: 'manual' });
    const callback = location(res);
    const welcome = await browser.get(callback);
    expect(welcome.status).toBe(200);
    expect(text(await welcome.text())).toContain('alice@example.com');
    expect((await otherStore.getToken('alice@example.com'))?.state).toBe('active');

    // The state is spent everywhere: a replay on the second instance says "already done".
    const replay = await browser.get(onOther(callback));
    expect(replay.status).toBe(200);
    expect(text(await replay.text())).toMatch(/already|all set/i);
    expect(h.fake.counts.token).toBe(1);
  });

  it('a CSRF token made for one purpose or browser is refused by the other instance', async () => {
    const alice = resolveAccount(h.config, 'alice@example.com')!;
    const link = await h.server.createConsentLink(alice);
    const owner = new TestBrowser();
    const html = await (await owner.get(link.url)).text();
    const stranger = new TestBrowser();
    await stranger.get(onOther(link.url));
    const res = await stranger.post(onOther(new URL(formAction(html), h.base).toString()), {
      csrf: formField(html, 'csrf'),
    });
    expect(res.status).not.toBe(303);
  });
});
