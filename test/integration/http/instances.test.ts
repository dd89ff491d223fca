/**
 * Two instances behind one load balancer: each with its own HTTP server and its own handle on the
 * shared store (the embedded file, and a real PostgreSQL database). The owner's browser may reach
 * either one at every step.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { resolveAccount } from '../../../src/config/accounts.js';
import { createHttpServer, type HttpServer } from '../../../src/http/server.js';
import { PostgresStore } from '../../../src/store/postgres-store.js';
import type { Store } from '../../../src/store/types.js';
import { requirePostgres, usePostgres } from '../../helpers/postgres.js';
import { silentLogger } from '../../../src/log.js';
import { formAction, formField, location, startHarness, text, TestBrowser, type Harness } from './harness.js';

const withPostgres = requirePostgres();
const postgres = usePostgres();

/** How each backend gives an instance its own handle on the one shared store. */
const BACKENDS: Array<{ name: string; enabled: boolean; opener(h: Harness): Promise<() => Promise<Store>> }> =
  [
    { name: 'SQLite', enabled: true, opener: (h) => Promise.resolve(() => h.openStore()) },
    {
      name: 'PostgreSQL',
      enabled: withPostgres,
      async opener() {
        const { url } = await postgres.createDatabase();
        const env = { XOAUTH_PROXY_KEY: randomBytes(32).toString('base64') };
        const settings = {
          kind: 'postgres',
          url,
          keyFile: '/nonexistent',
          refreshLeaseMs: 20_000,
          poolMax: 4,
          timeoutMs: 5_000,
        } as const;
        return () => PostgresStore.open(settings, { env });
      },
    },
  ];

describe.each(BACKENDS.filter((b) => b.enabled))(
  'consent across instances sharing a store ($name)',
  (backend) => {
    let h: Harness;
    let stores: Store[];
    let first: HttpServer;
    let other: HttpServer;

    beforeEach(async () => {
      h = await startHarness({ realClock: true });
      const open = await backend.opener(h);
      stores = [await open(), await open()];
      const listener = h.config.listen.http[0]!;
      const start = async (store: Store): Promise<HttpServer> => {
        const server = createHttpServer(
          { ...listener, port: 0 },
          {
            config: h.config,
            store,
            tokens: {
              getAccessToken: () => Promise.reject(new Error('unused')),
              invalidate: () => undefined,
            },
            logger: silentLogger(),
          },
        );
        await server.listen();
        return server;
      };
      first = await start(stores[0]!);
      other = await start(stores[1]!);
    });
    afterEach(async () => {
      await Promise.all([first.close(), other.close()]);
      for (const s of stores) await s.close();
      await h.close();
    });
    const otherStore = (): Store => stores[1]!;

    /** The same path on the other instance. */
    const onOther = (url: string): string => {
      const u = new URL(url);
      return new URL(`${u.pathname}${u.search}`, other.baseUrl).toString();
    };

    it('a page from one instance posts to the other, and the provider may send the owner back to either', async () => {
      const alice = resolveAccount(h.config, 'alice@example.com')!;
      const link = await first.createConsentLink(alice);
      const browser = new TestBrowser();

      // The link page (and its CSRF token) comes from the first instance...
      const page = await browser.get(link.url);
      const html = await page.text();
      // ...the button's POST lands on the second: the CSRF token is good there.
      const start = await browser.post(onOther(new URL(formAction(html), first.baseUrl).toString()), {
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
      expect((await otherStore().getToken('alice@example.com'))?.state).toBe('active');

      // The state is spent everywhere: a replay on the second instance says "already done".
      const replay = await browser.get(onOther(callback));
      expect(replay.status).toBe(200);
      expect(text(await replay.text())).toMatch(/already|all set/i);
      expect(h.fake.counts.token).toBe(1);
    });

    it('a CSRF token made for one purpose or browser is refused by the other instance', async () => {
      const alice = resolveAccount(h.config, 'alice@example.com')!;
      const link = await first.createConsentLink(alice);
      const owner = new TestBrowser();
      const html = await (await owner.get(link.url)).text();
      const stranger = new TestBrowser();
      await stranger.get(onOther(link.url));
      const res = await stranger.post(onOther(new URL(formAction(html), first.baseUrl).toString()), {
        csrf: formField(html, 'csrf'),
      });
      expect(res.status).not.toBe(303);
    });
  },
);
