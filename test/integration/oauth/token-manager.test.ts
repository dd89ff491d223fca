import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type {
  AccountConfig,
  ConnectionConfig,
  ResolvedAccount,
  Settings,
} from '../../../src/config/types.js';
import { isProxyError, ProxyError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import { storeGrant } from '../../../src/oauth/grant-record.js';
import { openStore as openStoreFile } from '../../../src/store/index.js';
import {
  BACKOFF_BASE_MS,
  BACKOFF_MAX_MS,
  FAILING_AFTER_FAILURES,
  LOGIN_RETRY_MS,
  FAILING_AFTER_MS,
  TokenManager,
} from '../../../src/oauth/token-manager.js';
import type { TokenEvent, TokenRecord, Store } from '../../../src/oauth/types.js';
import type { Logger } from 'pino';
import { corruptRefreshToken } from '../../helpers/corrupt-store.js';
import { fakeConnection, startFakeAuthServer, type FakeAuthServer } from '../../helpers/fake-auth-server.js';
import { captureLogger } from '../../helpers/proxy-env.js';

const MARGIN = 10 * 60_000;
let fake: FakeAuthServer;
let dir: string;
let store: Store;
let now: number;
let events: TokenEvent[];
let connection: ConnectionConfig;
const stores: Store[] = [];

function settings(overrides: Partial<Settings> = {}): Settings {
  return {
    refreshMarginMs: MARGIN,
    keepAliveIntervalMs: 6 * 3600_000,
    tokenRequestTimeoutMs: 5_000,
    credentialCacheMs: 60_000,
    shutdownGraceMs: 30_000,
    limits: {} as Settings['limits'],
    loginLimiter: {} as Settings['loginLimiter'],
    ...overrides,
  };
}

async function openStore(): Promise<Store> {
  const s = await openStoreFile(
    { path: join(dir, 'tokens.db'), keyFile: join(dir, 'store.key') },
    { env: {} },
  );
  stores.push(s);
  return s;
}

function manager(
  options: {
    settings?: Partial<Settings>;
    connections?: ConnectionConfig[];
    store?: Store;
    accounts?: AccountConfig[];
    logger?: Logger;
  } = {},
) {
  const conns = options.connections ?? [connection];
  return new TokenManager({
    config: {
      settings: settings(options.settings),
      accounts: options.accounts ?? [{ username: '*@example.com', connection: connection.name }],
      connections: new Map(conns.map((c) => [c.name, c])),
    },
    store: options.store ?? store,
    logger: options.logger ?? silentLogger(),
    clock: () => now,
    onEvent: (e) => events.push(e),
  });
}

function account(email: string, conn: ConnectionConfig = connection): ResolvedAccount {
  return { id: email, username: email, email, connection: conn, entry: email };
}

/** Seeds a consented grant whose access token has `ttlSeconds` left. */
async function seed(email: string, ttlSeconds = 0, extra: Partial<TokenRecord> = {}) {
  const grant = fake.issueGrant(email, { accessTokenTtlSeconds: ttlSeconds });
  const record: TokenRecord = {
    accountId: email,
    connection: connection.name,
    refreshToken: grant.refreshToken,
    accessToken: grant.accessToken,
    accessTokenExpiresAt: now + ttlSeconds * 1000,
    scopes: ['https://mail.google.com/'],
    identity: email,
    state: 'active',
    lastRefreshAt: now,
    updatedAt: now,
    ...extra,
  };
  await store.putToken(record);
  return { ...grant, record };
}

/** The store's own methods, bound to it, so that a test can replace some of them. */
function wrapStore(inner: Store): Store {
  const out: Record<string, unknown> = { location: inner.location };
  let proto: object | null = Object.getPrototypeOf(inner) as object | null;
  while (proto && proto !== Object.prototype) {
    for (const name of Object.getOwnPropertyNames(proto)) {
      const value = (inner as unknown as Record<string, unknown>)[name];
      if (name !== 'constructor' && typeof value === 'function' && !(name in out))
        out[name] = (value as (...a: unknown[]) => unknown).bind(inner);
    }
    proto = Object.getPrototypeOf(proto) as object | null;
  }
  return out as unknown as Store;
}

async function rejection(p: Promise<unknown>): Promise<ProxyError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ProxyError);
  return err as ProxyError;
}

beforeEach(async () => {
  fake = await startFakeAuthServer();
  dir = mkdtempSync(join(tmpdir(), 'xoauth-tm-'));
  now = Date.now();
  events = [];
  connection = fakeConnection(fake);
  store = await openStore();
});
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  await fake.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('TokenManager', () => {
  it('hands out the stored token while it has more than the margin left, without a request', async () => {
    const { accessToken } = await seed('a@example.com', 3600);
    const tm = manager();
    expect((await tm.getAccessToken(account('a@example.com'))).token).toBe(accessToken);
    expect((await tm.getAccessToken(account('a@example.com'))).token).toBe(accessToken);
    expect(fake.counts.token).toBe(0);
  });

  it('refreshes a token inside the margin', async () => {
    const { accessToken } = await seed('a@example.com', 9 * 60);
    const token = await manager().getAccessToken(account('a@example.com'));
    expect(token.token).not.toBe(accessToken);
    expect(fake.checkAccessToken(token.token)).toBe('a@example.com');
    expect(fake.counts.refresh).toBe(1);
  });

  it('50 concurrent calls on an expired token make exactly one token request', async () => {
    await seed('a@example.com', 0);
    const tm = manager();
    const results = await Promise.all(
      Array.from({ length: 50 }, () => tm.getAccessToken(account('a@example.com'))),
    );
    expect(fake.counts.token).toBe(1);
    expect(new Set(results.map((r) => r.token)).size).toBe(1);
    expect(fake.checkAccessToken(results[0]!.token)).toBe('a@example.com');
    // forceRefresh calls arriving together also share one request.
    const forced = await Promise.all(
      Array.from({ length: 10 }, () => tm.getAccessToken(account('a@example.com'), { forceRefresh: true })),
    );
    expect(fake.counts.token).toBe(2);
    expect(new Set(forced.map((r) => r.token)).size).toBe(1);
  });

  it('persists the access token (encrypted), so a restart does not refresh needlessly', async () => {
    await seed('a@example.com', 0);
    const first = await manager().getAccessToken(account('a@example.com'));
    for (const f of readdirSync(dir)) {
      expect(readFileSync(join(dir, f)).includes(Buffer.from(first.token)), f).toBe(false);
    }
    const restarted = manager({ store: await openStore() });
    expect((await restarted.getAccessToken(account('a@example.com'))).token).toBe(first.token);
    expect(fake.counts.token).toBe(1);
    expect(await store.getToken('a@example.com')).toMatchObject({
      accessToken: first.token,
      lastRefreshAt: now,
    });
  });

  it('Microsoft-style rotation persists the new refresh token, and the next refresh uses it', async () => {
    fake.options.rotateRefreshTokens = true;
    const { refreshToken: old } = await seed('m@example.com', 0);
    const tm = manager();
    await tm.getAccessToken(account('m@example.com'));
    const rotated = (await store.getToken('m@example.com'))!.refreshToken!;
    expect(rotated).not.toBe(old);
    expect(fake.isRefreshTokenValid(rotated)).toBe(true);
    expect(fake.isRefreshTokenValid(old)).toBe(false);

    const next = await tm.getAccessToken(account('m@example.com'), { forceRefresh: true });
    expect(fake.lastTokenRequest?.get('refresh_token')).toBe(rotated);
    expect(fake.checkAccessToken(next.token)).toBe('m@example.com');
    expect((await store.getToken('m@example.com'))!.refreshToken).not.toBe(rotated);
  });

  it('does not hand out a token whose rotated grant could not be saved', async () => {
    fake.options.rotateRefreshTokens = true;
    await seed('m@example.com', 0);
    const failing: Store = wrapStore(store);
    failing.updateToken = async () => {
      throw new Error('disk full');
    };
    failing.getToken = async (id) => await store.getToken(id);
    const err = await rejection(manager({ store: failing }).getAccessToken(account('m@example.com')));
    expect(err.code).toBe('token-unavailable');
    expect(err.message).toContain('disk full');
  });

  it('a rotated refresh token the store could not save is kept in memory, used and saved later', async () => {
    fake.options.rotateRefreshTokens = true;
    const { refreshToken: old } = await seed('m@example.com', 0);
    const flaky: Store = wrapStore(store);
    let failWrites = 1;
    flaky.updateToken = async (id, update) => {
      if (failWrites > 0) {
        failWrites--;
        throw new Error('SQLITE_BUSY: database is locked');
      }
      return await store.updateToken(id, update);
    };
    flaky.getToken = async (id) => await store.getToken(id);
    flaky.listTokens = async () => await store.listTokens();
    const tm = manager({ store: flaky });
    const err = await rejection(tm.getAccessToken(account('m@example.com')));
    expect(err.code).toBe('token-unavailable');
    // The provider killed the old refresh token on rotation; the store still holds it.
    expect(fake.isRefreshTokenValid(old)).toBe(false);
    expect((await store.getToken('m@example.com'))!.refreshToken).toBe(old);

    // The next call saves the rotated grant first, and the forced refresh uses the rotated token.
    const next = await tm.getAccessToken(account('m@example.com'), { forceRefresh: true });
    expect(fake.checkAccessToken(next.token)).toBe('m@example.com');
    expect(fake.lastTokenRequest?.get('refresh_token')).not.toBe(old);
    const saved = (await store.getToken('m@example.com'))!;
    expect(saved.refreshToken).not.toBe(old);
    expect(fake.isRefreshTokenValid(saved.refreshToken!)).toBe(true);
    expect(saved).toMatchObject({ state: 'active', accessToken: next.token });
  });

  it('while the store stays unwritable, the unsaved rotated token is used for the next refresh', async () => {
    fake.options.rotateRefreshTokens = true;
    const { refreshToken: old } = await seed('m@example.com', 0);
    const flaky: Store = wrapStore(store);
    let failWrites = 3;
    flaky.updateToken = async (id, update) => {
      if (failWrites > 0) {
        failWrites--;
        throw new Error('disk full');
      }
      return await store.updateToken(id, update);
    };
    flaky.getToken = async (id) => await store.getToken(id);
    flaky.listTokens = async () => await store.listTokens();
    const tm = manager({ store: flaky });
    await rejection(tm.getAccessToken(account('m@example.com')));
    expect(fake.lastTokenRequest?.get('refresh_token')).toBe(old);
    // The save fails again; the unsaved access token is fresh, so no new request is made.
    await rejection(tm.getAccessToken(account('m@example.com')));
    expect(fake.counts.refresh).toBe(1);
    expect((await store.getToken('m@example.com'))!.refreshToken).toBe(old);
    // An hour later the save still fails once more: the refresh has to use the unsaved rotated token
    // (the provider killed `old`), and the set it brings is saved.
    now += 3600_000;
    const token = await tm.getAccessToken(account('m@example.com'));
    expect(fake.checkAccessToken(token.token)).toBe('m@example.com');
    expect(fake.counts.refresh).toBe(2);
    const saved = (await store.getToken('m@example.com'))!;
    expect(saved.refreshToken).not.toBe(old);
    expect(fake.isRefreshTokenValid(saved.refreshToken!)).toBe(true);
    expect(saved.accessToken).toBe(token.token);
  });

  it('the keep-alive tick saves an unsaved rotated refresh token', async () => {
    fake.options.rotateRefreshTokens = true;
    const { refreshToken: old } = await seed('m@example.com', 0);
    const flaky: Store = wrapStore(store);
    let failWrites = 1;
    flaky.updateToken = async (id, update) => {
      if (failWrites > 0) {
        failWrites--;
        throw new Error('disk full');
      }
      return await store.updateToken(id, update);
    };
    flaky.getToken = async (id) => await store.getToken(id);
    flaky.listTokens = async () => await store.listTokens();
    const tm = manager({ store: flaky });
    await rejection(tm.getAccessToken(account('m@example.com')));
    await tm.runKeepAlive();
    const saved = (await store.getToken('m@example.com'))!;
    expect(saved.refreshToken).not.toBe(old);
    expect(fake.isRefreshTokenValid(saved.refreshToken!)).toBe(true);
    expect((await tm.getAccessToken(account('m@example.com'))).token).toBe(saved.accessToken);
    expect(fake.counts.refresh).toBe(1);
  });

  it('Google-style refresh keeps the old refresh token, which keeps working', async () => {
    const { refreshToken } = await seed('g@example.com', 0);
    const tm = manager();
    await tm.getAccessToken(account('g@example.com'));
    expect((await store.getToken('g@example.com'))!.refreshToken).toBe(refreshToken);
    await tm.getAccessToken(account('g@example.com'), { forceRefresh: true });
    expect(fake.lastTokenRequest?.get('refresh_token')).toBe(refreshToken);
    expect(await store.getToken('g@example.com')).toMatchObject({ refreshToken, state: 'active' });
    expect(fake.counts.refresh).toBe(2);
  });

  it('a 500 keeps every token and the account active (lastError recorded), backs off, then recovers', async () => {
    const { record } = await seed('t@example.com', 0);
    const tm = manager();
    fake.failNext(1, 500);
    const err = await rejection(tm.getAccessToken(account('t@example.com')));
    expect(err.code).toBe('token-unavailable');
    expect(err.transient).toBe(true);
    const stored = (await store.getToken('t@example.com'))!;
    expect(stored).toMatchObject({
      state: 'active',
      refreshToken: record.refreshToken,
      accessToken: record.accessToken,
    });
    expect(stored.lastError).toContain('temporarily_unavailable');
    // One blip is not "keeps failing": nobody is notified.
    expect(events).toEqual([]);

    // Inside the backoff: no request at all.
    await rejection(tm.getAccessToken(account('t@example.com')));
    expect(fake.counts.token).toBe(1);

    now += BACKOFF_BASE_MS + 1;
    const token = await tm.getAccessToken(account('t@example.com'));
    expect(fake.checkAccessToken(token.token)).toBe('t@example.com');
    expect(await store.getToken('t@example.com')).toMatchObject({
      state: 'active',
      refreshToken: record.refreshToken,
    });
    expect((await store.getToken('t@example.com'))!.lastError).toBeUndefined();
    expect(events).toEqual([]);
  });

  it(`an account that keeps failing (${FAILING_AFTER_FAILURES} transient failures in a row) goes to failing once, then recovers`, async () => {
    const { record } = await seed('t@example.com', 0);
    const tm = manager();
    fake.failNext(FAILING_AFTER_FAILURES + 1, 503);
    for (let i = 1; i <= FAILING_AFTER_FAILURES + 1; i++) {
      await rejection(tm.getAccessToken(account('t@example.com')));
      expect(fake.counts.token).toBe(i);
      const state = (await store.getToken('t@example.com'))!.state;
      expect(state, `after failure ${i}`).toBe(i < FAILING_AFTER_FAILURES ? 'active' : 'failing');
      now += BACKOFF_MAX_MS + 1;
    }
    expect(await store.getToken('t@example.com')).toMatchObject({
      refreshToken: record.refreshToken,
      accessToken: record.accessToken,
    });
    expect(events.map((e) => e.kind)).toEqual(['failing']);
    expect(events[0]!.error).toContain('temporarily_unavailable');
    await tm.getAccessToken(account('t@example.com'));
    expect(await store.getToken('t@example.com')).toMatchObject({ state: 'active' });
    expect(events.map((e) => e.kind)).toEqual(['failing', 'recovered']);
  });

  it('an account failing for longer than the failing duration goes to failing on its next failure', async () => {
    await seed('t@example.com', 0);
    const tm = manager();
    fake.failNext(2, 500);
    await rejection(tm.getAccessToken(account('t@example.com')));
    now += FAILING_AFTER_MS;
    await rejection(tm.getAccessToken(account('t@example.com')));
    expect(fake.counts.token).toBe(2);
    expect((await store.getToken('t@example.com'))!.state).toBe('failing');
    expect(events.map((e) => e.kind)).toEqual(['failing']);
  });

  it('the thresholds are options: failing after the first failure when asked', async () => {
    await seed('t@example.com', 0);
    const tm = new TokenManager({
      config: {
        settings: settings(),
        accounts: [{ username: '*@example.com', connection: connection.name }],
        connections: new Map([[connection.name, connection]]),
      },
      store,
      logger: silentLogger(),
      clock: () => now,
      onEvent: (e) => events.push(e),
      failingAfter: { failures: 1 },
    });
    fake.failNext(1, 500);
    await rejection(tm.getAccessToken(account('t@example.com')));
    expect((await store.getToken('t@example.com'))!.state).toBe('failing');
    expect(events.map((e) => e.kind)).toEqual(['failing']);
  });

  it('keep-alive retries an account in a transient failure streak (still active) after its backoff', async () => {
    await seed('t@example.com', 3600);
    const tm = manager();
    fake.failNext(1, 500);
    await tm.getAccessToken(account('t@example.com'), { forceRefresh: true }).catch(() => undefined);
    expect((await store.getToken('t@example.com'))!.state).toBe('active');
    now += BACKOFF_BASE_MS + 1;
    await tm.runKeepAlive();
    expect(fake.counts.token).toBe(2);
    expect((await store.getToken('t@example.com'))!.lastError).toBeUndefined();
  });

  it("the keep-alive's backoff doubles with repeated failures", async () => {
    await seed('t@example.com', 3600);
    const tm = manager();
    fake.failNext(3, 503);
    await tm.runKeepAlive();
    expect(fake.counts.token).toBe(0); // not due: refreshed just now
    await tm.getAccessToken(account('t@example.com'), { forceRefresh: true }).catch(() => undefined);
    expect(fake.counts.token).toBe(1);
    now += BACKOFF_BASE_MS + 1;
    await tm.runKeepAlive();
    expect(fake.counts.token).toBe(2);
    now += BACKOFF_BASE_MS + 1; // not yet: the second backoff is twice as long
    await tm.runKeepAlive();
    expect(fake.counts.token).toBe(2);
    now += BACKOFF_BASE_MS;
    await tm.runKeepAlive();
    expect(fake.counts.token).toBe(3);
  });

  it(`logins retry the token endpoint ${LOGIN_RETRY_MS / 1000} s after the last attempt, not after the keep-alive's backoff`, async () => {
    await seed('t@example.com', 0);
    const tm = manager();
    fake.failNext(6, 503);
    for (let i = 1; i <= 6; i++) {
      await rejection(tm.getAccessToken(account('t@example.com')));
      expect(fake.counts.token, `attempt ${i}`).toBe(i);
      // Inside the login wait: no request, however many logins ask.
      await Promise.all([1, 2, 3].map(() => rejection(tm.getAccessToken(account('t@example.com')))));
      expect(fake.counts.token, `attempt ${i}`).toBe(i);
      now += LOGIN_RETRY_MS;
    }
    // The keep-alive, by contrast, waits out its backoff (by now much longer than the login wait).
    await tm.runKeepAlive();
    expect(fake.counts.token).toBe(6);
  });

  it('after an outage of minutes, the first login within 5 s of recovery succeeds and errors name the latest failure', async () => {
    await seed('t@example.com', 0);
    const tm = manager();
    const start = now;
    // A 90 s outage: the keep-alive and logins fail with one reason, then another.
    fake.failNext(1_000, 500, 'server_error');
    const errors: ProxyError[] = [];
    for (let step = 0; now - start < 60_000 && step < 100; step++) {
      await tm.runKeepAlive();
      errors.push(await rejection(tm.getAccessToken(account('t@example.com'))));
      now += 3_000;
    }
    expect(errors.at(-1)!.detail).toMatch(/^token endpoint failed \d+ s ago: server_error/);
    // A different failure now: a login 4 s after it reports this one, with its age.
    fake.clearFailures();
    fake.failNext(1_000, 503, 'temporarily_unavailable');
    now += LOGIN_RETRY_MS;
    const fresh = await rejection(tm.getAccessToken(account('t@example.com')));
    expect(fresh.detail).toMatch(/^token endpoint failed 0 s ago: temporarily_unavailable/);
    now += 4_000;
    const later = await rejection(tm.getAccessToken(account('t@example.com')));
    expect(later.detail).toMatch(/^token endpoint failed 4 s ago: temporarily_unavailable/);
    expect(later.detail).not.toContain('server_error');
    expect(later.message).toContain('4 s ago');
    while (now - start < 90_000) {
      await tm.runKeepAlive();
      await tm.getAccessToken(account('t@example.com')).catch(() => undefined);
      now += 3_000;
    }
    const before = fake.counts.token;
    // The provider recovers; the keep-alive's backoff has grown to minutes by now.
    fake.clearFailures();
    now += 1_000;
    await tm.runKeepAlive();
    expect(fake.counts.token).toBe(before);
    now += LOGIN_RETRY_MS - 1_000;
    const token = await tm.getAccessToken(account('t@example.com'));
    expect(fake.checkAccessToken(token.token)).toBe('t@example.com');
    expect(await store.getToken('t@example.com')).toMatchObject({ state: 'active' });
    expect((await store.getToken('t@example.com'))!.lastError).toBeUndefined();
  });

  it('a Retry-After from the provider holds logins back too', async () => {
    await seed('t@example.com', 0);
    const tm = manager();
    fake.failNext(1, 429, 'temporarily_unavailable', 60);
    await rejection(tm.getAccessToken(account('t@example.com')));
    now += 30_000;
    const err = await rejection(tm.getAccessToken(account('t@example.com')));
    expect(err.message).toContain('try again in 30 s');
    expect(fake.counts.token).toBe(1);
    now += 30_000;
    await tm.getAccessToken(account('t@example.com'));
    expect(fake.counts.token).toBe(2);
  });

  it('a timeout keeps every token and the account active', async () => {
    const { record } = await seed('t@example.com', 0);
    fake.setHanging(true);
    const started = Date.now();
    const err = await rejection(
      manager({ settings: { tokenRequestTimeoutMs: 300 } }).getAccessToken(account('t@example.com')),
    );
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(err.code).toBe('token-unavailable');
    expect(await store.getToken('t@example.com')).toMatchObject({
      state: 'active',
      refreshToken: record.refreshToken,
      accessToken: record.accessToken,
    });
    expect((await store.getToken('t@example.com'))!.lastError).toBeDefined();
  });

  it('during an outage the old access token is still used while it lasts', async () => {
    const { accessToken } = await seed('t@example.com', 5 * 60);
    fake.failNext(1, 502);
    const tm = manager();
    expect((await tm.getAccessToken(account('t@example.com'))).token).toBe(accessToken);
    expect(await store.getToken('t@example.com')).toMatchObject({
      state: 'active',
      lastError: expect.any(String),
    });
    // ...but not when the upstream just refused it.
    tm.invalidate('t@example.com');
    expect((await rejection(tm.getAccessToken(account('t@example.com'), { forceRefresh: true }))).code).toBe(
      'token-unavailable',
    );
  });

  it('invalid_grant moves the account to needs-consent, keeps the refresh token and stops using it', async () => {
    const { refreshToken } = await seed('r@example.com', 0);
    fake.revoke('r@example.com');
    const tm = manager();
    const err = await rejection(tm.getAccessToken(account('r@example.com')));
    expect(err.code).toBe('needs-consent');
    expect(err.transient).toBe(false);
    expect(err.message).toContain('xoauth-proxy consent r@example.com');
    expect(await store.getToken('r@example.com')).toMatchObject({ state: 'needs-consent', refreshToken });
    expect((await store.getToken('r@example.com'))!.lastError).toContain('invalid_grant');
    expect(events.map((e) => e.kind)).toEqual(['needs-consent']);

    expect((await rejection(tm.getAccessToken(account('r@example.com'), { forceRefresh: true }))).code).toBe(
      'needs-consent',
    );
    expect(fake.counts.token).toBe(1);

    // The CLI (another process, another store handle) writes a new grant: it works without a restart.
    const grant = fake.issueGrant('r@example.com', { accessTokenTtlSeconds: 3600 });
    await storeGrant(
      await openStore(),
      account('r@example.com'),
      {
        accessToken: grant.accessToken,
        refreshToken: grant.refreshToken,
        expiresAt: now + 3600_000,
        scopes: [],
      },
      { email: 'r@example.com' },
      now,
    );
    expect((await tm.getAccessToken(account('r@example.com'))).token).toBe(grant.accessToken);
    expect(events.map((e) => e.kind)).toEqual(['needs-consent', 'consented']);
  });

  it('a refused client (wrong secret) keeps the grant usable: failing, long backoff, no consent needed', async () => {
    const { refreshToken } = await seed('x@example.com', 0);
    const tm = manager();
    fake.failNext(1, 401, 'invalid_client');
    const err = await rejection(tm.getAccessToken(account('x@example.com')));
    expect(err.code).toBe('token-unavailable');
    const stored = (await store.getToken('x@example.com'))!;
    expect(stored).toMatchObject({ state: 'failing', refreshToken });
    expect(stored.lastError).toContain('invalid_client');
    expect(stored.lastError).toContain('clientSecret');
    // The keep-alive backs off for the longest step; a login tries again after the short login wait,
    // and the same refresh token works (the admin fixed the app registration).
    now += BACKOFF_BASE_MS * 4;
    await tm.runKeepAlive();
    expect(fake.counts.token).toBe(1);
    expect(fake.checkAccessToken((await tm.getAccessToken(account('x@example.com'))).token)).toBe(
      'x@example.com',
    );
    expect(fake.lastTokenRequest?.get('refresh_token')).toBe(refreshToken);
    expect(events.map((e) => e.kind)).toEqual(['failing', 'recovered']);
  });

  it('an account without a grant needs consent', async () => {
    const err = await rejection(manager().getAccessToken(account('nobody@example.com')));
    expect(err.code).toBe('needs-consent');
    expect(fake.counts.token).toBe(0);
  });

  it('invalidate makes the next call refresh instead of reusing the refused token', async () => {
    const { accessToken } = await seed('i@example.com', 3600);
    const tm = manager();
    expect((await tm.getAccessToken(account('i@example.com'))).token).toBe(accessToken);
    tm.invalidate('i@example.com');
    const next = await tm.getAccessToken(account('i@example.com'));
    expect(next.token).not.toBe(accessToken);
    expect(fake.counts.refresh).toBe(1);
  });

  it('recordConsent stores the grant and reports consented', async () => {
    const tm = manager();
    const grant = fake.issueGrant('c@example.com');
    await tm.recordConsent(
      account('c@example.com'),
      {
        accessToken: grant.accessToken,
        refreshToken: grant.refreshToken,
        expiresAt: now + 3600_000,
        scopes: ['s'],
      },
      { email: 'c@example.com', name: 'C' },
    );
    expect(await store.getToken('c@example.com')).toMatchObject({
      state: 'active',
      identity: 'c@example.com',
      displayName: 'C',
      refreshToken: grant.refreshToken,
    });
    expect((await tm.getAccessToken(account('c@example.com'))).token).toBe(grant.accessToken);
    expect(events.map((e) => e.kind)).toEqual(['consented']);
  });

  it('client credentials: one app token per connection, renewed when it nears expiry, nothing stored', async () => {
    const app = fakeConnection(fake, { name: 'app', grant: 'client_credentials', scopes: ['x/.default'] });
    const tm = manager({ connections: [app] });
    const [a, b] = await Promise.all([
      tm.getAccessToken(account('one@example.com', app)),
      tm.getAccessToken(account('two@example.com', app)),
    ]);
    expect(a.token).toBe(b.token);
    expect(fake.counts.clientCredentials).toBe(1);
    expect(fake.checkAccessToken(a.token)).toBe('app:test-client');
    await tm.getAccessToken(account('one@example.com', app));
    expect(fake.counts.clientCredentials).toBe(1);
    now += 3600_000 - MARGIN + 1;
    const renewed = await tm.getAccessToken(account('one@example.com', app));
    expect(renewed.token).not.toBe(a.token);
    expect(fake.counts.clientCredentials).toBe(2);
    expect(await store.listTokens()).toEqual([]);
    tm.invalidate('two@example.com');
    await tm.getAccessToken(account('two@example.com', app));
    expect(fake.counts.clientCredentials).toBe(3);
  });

  it('keep-alive refreshes grants not refreshed within the interval and finds revoked ones', async () => {
    const interval = 6 * 3600_000;
    await seed('fresh@example.com', 3600);
    const stale = await seed('stale@example.com', 3600, { lastRefreshAt: now - interval - 1 });
    await seed('revoked@example.com', 3600, { lastRefreshAt: now - interval - 1 });
    fake.revoke('revoked@example.com');
    const tm = manager();
    await tm.runKeepAlive();
    expect(fake.counts.refresh).toBe(2);
    expect((await store.getToken('fresh@example.com'))!.lastRefreshAt).toBe(now);
    expect(await store.getToken('stale@example.com')).toMatchObject({ lastRefreshAt: now, state: 'active' });
    expect((await store.getToken('stale@example.com'))!.accessToken).not.toBe(stale.accessToken);
    expect((await store.getToken('revoked@example.com'))!.state).toBe('needs-consent');
    // needs-consent accounts are not retried.
    now += interval + 1;
    await tm.runKeepAlive();
    expect(fake.counts.refresh).toBe(4);
  });

  it('keep-alive: a stored row that cannot be decrypted is reported for its account, every other account is refreshed', async () => {
    const interval = 6 * 3600_000;
    const broken = await seed('broken@example.com', 3600, { lastRefreshAt: now - interval - 1 });
    const fine = await seed('fine@example.com', 3600, { lastRefreshAt: now - interval - 1 });
    corruptRefreshToken(join(dir, 'tokens.db'), 'broken@example.com');
    const { logger, logLines, logText } = captureLogger();
    const tm = manager({ logger });
    await tm.runKeepAlive();
    expect(fake.counts.refresh).toBe(1);
    expect(fake.lastTokenRequest?.get('refresh_token')).toBe(fine.refreshToken);
    expect((await store.getToken('fine@example.com'))!.lastRefreshAt).toBe(now);
    const reported = () => logLines.filter((l) => l.account === 'broken@example.com');
    expect(reported()).toHaveLength(1);
    expect(reported()[0]).toMatchObject({
      level: 50,
      reason: expect.stringContaining('cannot be decrypted'),
    });
    // The next tick goes on the same way, without repeating the line.
    now += interval + 1;
    await tm.runKeepAlive();
    expect(fake.counts.refresh).toBe(2);
    expect(reported()).toHaveLength(1);
    for (const secret of [broken.refreshToken, broken.accessToken, fine.refreshToken]) {
      expect(logText()).not.toContain(secret);
    }
    expect((await tm.status()).map((a) => [a.accountId, a.state])).toEqual([
      ['broken@example.com', 'unreadable'],
      ['fine@example.com', 'active'],
    ]);
    // A login for it is a temporary error that says what is wrong, not a wrong password.
    const err = await rejection(tm.getAccessToken(account('broken@example.com')));
    expect(err.code).toBe('token-unavailable');
    expect(err.message).toContain('cannot be decrypted');
    // A new consent replaces the unreadable row.
    const grant = fake.issueGrant('broken@example.com', { accessTokenTtlSeconds: 3600 });
    await tm.recordConsent(
      account('broken@example.com'),
      {
        accessToken: grant.accessToken,
        refreshToken: grant.refreshToken,
        expiresAt: now + 3600_000,
        scopes: [],
      },
      { email: 'broken@example.com' },
    );
    expect((await tm.status()).find((a) => a.accountId === 'broken@example.com')!.state).toBe('active');
    expect((await tm.getAccessToken(account('broken@example.com'))).token).toBe(grant.accessToken);
  });

  it('keep-alive leaves grants alone that no config entry serves any more', async () => {
    await seed('kept@example.com', 3600, { lastRefreshAt: 0 });
    await seed('orphan@elsewhere.example', 3600, { lastRefreshAt: 0 });
    await seed('shared@example.net', 3600, { lastRefreshAt: 0 });
    const tm = manager({
      accounts: [
        { username: '*@example.com', connection: 'fake' },
        { username: 'team', email: 'Shared@Example.net', connection: 'fake' },
      ],
    });
    await tm.runKeepAlive();
    expect(fake.counts.refresh).toBe(2);
    expect((await store.getToken('orphan@elsewhere.example'))!.lastRefreshAt).toBe(0);
    expect((await store.getToken('shared@example.net'))!.lastRefreshAt).toBe(now);
  });

  it('start() runs keep-alive on an unref’d timer; stop() ends it', async () => {
    await seed('k@example.com', 3600, { lastRefreshAt: 0 });
    const tm = manager({ settings: { keepAliveIntervalMs: 4000 } });
    tm.start();
    await vi.waitFor(() => expect(fake.counts.refresh).toBeGreaterThanOrEqual(1), {
      timeout: 15_000,
      interval: 50,
    });
    await tm.stop();
    expect((await store.getToken('k@example.com'))!.lastRefreshAt).toBe(now);
  });

  it('status lists accounts without tokens', async () => {
    await seed('s@example.com', 3600);
    const tm = new TokenManager({
      config: {
        settings: settings(),
        accounts: [
          { username: 's@example.com', connection: 'fake' },
          { username: 'new@example.com', connection: 'fake' },
        ],
        connections: new Map([[connection.name, connection]]),
      },
      store,
      logger: silentLogger(),
    });
    const status = await tm.status();
    expect(status.map((s) => [s.accountId, s.state])).toEqual([
      ['s@example.com', 'active'],
      ['new@example.com', 'no-grant'],
    ]);
    expect(JSON.stringify(status)).not.toMatch(/"(at|rt)-/);
    expect(isProxyError(new ProxyError('store', 'x'))).toBe(true);
  });
});
