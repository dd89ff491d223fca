import { describe, expect, it, vi } from 'vitest';
import {
  APP_PASSWORD_TOUCH_INTERVAL_MS,
  LocalAuthenticator,
} from '../../../src/credentials/authenticator.js';
import { CredentialCache } from '../../../src/credentials/credential-cache.js';
import { LoginLimiter } from '../../../src/credentials/login-limiter.js';
import { hashPassword } from '../../../src/credentials/password.js';
import { ProxyError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import { generateAppPassword } from '../../../src/credentials/app-passwords.js';
import type { AppPasswordRecord } from '../../../src/oauth/types.js';
import { GOOGLE, load, yaml } from '../config/helpers.js';

const FAST = { ln: 10, r: 8, p: 1 };

async function setup(options: { appPasswords?: AppPasswordRecord[]; lockAfter?: number } = {}) {
  const hash = await hashPassword('config-pw', FAST);
  const config = load(
    yaml(
      'connections:',
      ...GOOGLE,
      'accounts:',
      '  - username: alice@example.com',
      '    connection: g',
      `    password: '${hash}'`,
      "  - username: '*@example.org'",
      '    connection: g',
      'settings:',
      '  loginLimiter:',
      '    freeFailures: 1',
      '    baseDelay: 1s',
      '    maxDelay: 8s',
      `    lockAfter: ${options.lockAfter ?? 4}`,
      '    lockDuration: 10m',
      '    window: 10m',
    ),
  );
  const clock = { now: 1_700_000_000_000 };
  const sleeps: number[] = [];
  const apps = options.appPasswords ?? [];
  const store = {
    listAppPasswords: vi.fn((accountId?: string) =>
      Promise.resolve(apps.filter((a) => accountId === undefined || a.accountId === accountId)),
    ),
    touchAppPassword: vi.fn(() => Promise.resolve()),
  };
  const auth = new LocalAuthenticator({
    config,
    store,
    logger: silentLogger(),
    now: () => clock.now,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
  });
  return { auth, store, sleeps, clock, config };
}

const attempt = (username: string, password: string, remoteAddress = '192.0.2.1') => ({
  username,
  password,
  remoteAddress,
});

async function failure(p: Promise<unknown>): Promise<ProxyError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ProxyError);
  return err as ProxyError;
}

describe('LocalAuthenticator', () => {
  it('accepts the config password and resolves the account', async () => {
    const { auth, sleeps } = await setup();
    const account = await auth.verify(attempt('Alice@Example.com', 'config-pw'));
    expect(account).toMatchObject({
      id: 'alice@example.com',
      username: 'Alice@Example.com',
      entry: 'alice@example.com',
    });
    expect(sleeps).toEqual([]);
  });

  it('rejects a wrong password with bad-credentials', async () => {
    const { auth } = await setup();
    const err = await failure(auth.verify(attempt('alice@example.com', 'nope')));
    expect(err.code).toBe('bad-credentials');
    expect(err.transient).toBe(false);
    expect(err.detail).toBe('Invalid username or password');
  });

  it('accepts an app password of the account and records its use', async () => {
    const appHash = await hashPassword('app-pw-1', FAST);
    const { auth, store, clock } = await setup({
      appPasswords: [
        { id: 'ap1', accountId: 'bob@example.org', label: 'phone', hash: appHash, createdAt: 1 },
        {
          id: 'ap2',
          accountId: 'carol@example.org',
          label: 'x',
          hash: await hashPassword('carol-pw', FAST),
          createdAt: 1,
        },
      ],
    });
    const account = await auth.verify(attempt('bob@example.org', 'app-pw-1'));
    expect(account.id).toBe('bob@example.org');
    expect(store.listAppPasswords).toHaveBeenCalledWith('bob@example.org');
    expect(store.touchAppPassword).toHaveBeenCalledWith('ap1', clock.now);
    // another account's app password does not work
    await failure(auth.verify(attempt('bob@example.org', 'carol-pw')));
  });

  it('a password naming its record is checked against that record; older records still work', async () => {
    const named = generateAppPassword('bbbb');
    const carols = generateAppPassword('cccc');
    const { auth, store, clock } = await setup({
      appPasswords: [
        {
          id: 'bbbb',
          accountId: 'bob@example.org',
          label: 'phone',
          hash: await hashPassword(named, FAST),
          createdAt: 1,
        },
        {
          id: '0f6b3c2e-legacy',
          accountId: 'bob@example.org',
          label: 'old laptop',
          hash: await hashPassword('legacy-app-pw', FAST),
          createdAt: 1,
        },
        {
          id: 'cccc',
          accountId: 'carol@example.org',
          label: 'x',
          hash: await hashPassword(carols, FAST),
          createdAt: 1,
        },
      ],
    });
    expect((await auth.verify(attempt('bob@example.org', named))).id).toBe('bob@example.org');
    expect(store.touchAppPassword).toHaveBeenLastCalledWith('bbbb', clock.now);
    expect((await auth.verify(attempt('bob@example.org', 'legacy-app-pw'))).id).toBe('bob@example.org');
    // carol's password names a record bob does not have; bob's names one carol does not have
    await failure(auth.verify(attempt('bob@example.org', carols, '192.0.2.7')));
    await failure(auth.verify(attempt('carol@example.org', named, '192.0.2.8')));
    // the right id with a wrong secret is refused
    // (the last character changed for sure: a random one may already be the replacement)
    const last = named.slice(-1) === 'z' ? 'y' : 'z';
    await failure(auth.verify(attempt('bob@example.org', `bbbb${named.slice(4, -1)}${last}`, '192.0.2.9')));
  });

  it('an account with neither password nor app passwords cannot log in', async () => {
    const { auth } = await setup();
    const err = await failure(auth.verify(attempt('dave@example.org', '')));
    expect(err.code).toBe('bad-credentials');
  });

  it('unknown users fail like a wrong password, after a real hash computation', async () => {
    const { auth } = await setup();
    const started = performance.now();
    const err = await failure(auth.verify(attempt('nobody@nowhere.test', 'x')));
    expect(err.code).toBe('bad-credentials');
    expect(err.message).toBe('invalid username or password');
    // a dummy scrypt (N=2^15) takes measurable time; an early return would take well under 1 ms
    expect(performance.now() - started).toBeGreaterThan(5);
  });

  it('applies the limiter delay on failures and locks after lockAfter', async () => {
    const { auth, sleeps } = await setup();
    for (let i = 0; i < 4; i++) await failure(auth.verify(attempt('alice@example.com', 'bad')));
    expect(sleeps).toEqual([1_000, 2_000, 4_000]);
    // locked: even the right password fails, without checking
    const err = await failure(auth.verify(attempt('alice@example.com', 'config-pw')));
    expect(err.detail).toBe('Too many failed logins; try again later');
  });

  it('the lock ends after its duration', async () => {
    const { auth, clock } = await setup();
    for (let i = 0; i < 4; i++) await failure(auth.verify(attempt('alice@example.com', 'bad')));
    clock.now += 10 * 60_000;
    await expect(auth.verify(attempt('alice@example.com', 'config-pw'))).resolves.toMatchObject({
      id: 'alice@example.com',
    });
  });

  it('a success resets the username counter', async () => {
    const { auth, sleeps } = await setup({ lockAfter: 100 });
    await failure(auth.verify(attempt('alice@example.com', 'bad', '192.0.2.1')));
    await failure(auth.verify(attempt('alice@example.com', 'bad', '192.0.2.2')));
    await auth.verify(attempt('alice@example.com', 'config-pw', '192.0.2.3'));
    await failure(auth.verify(attempt('alice@example.com', 'bad', '192.0.2.4')));
    expect(sleeps).toEqual([1_000]);
  });

  it('caches a verified credential so a reconnect skips scrypt', async () => {
    const { config } = await setup();
    const cache = new CredentialCache({ ttlMs: 60_000 });
    const remember = vi.spyOn(cache, 'remember');
    const has = vi.spyOn(cache, 'has');
    const auth = new LocalAuthenticator({
      config,
      logger: silentLogger(),
      cache,
      limiter: new LoginLimiter(config.settings.loginLimiter),
    });
    await auth.verify(attempt('alice@example.com', 'config-pw'));
    expect(remember).toHaveBeenCalledTimes(1);
    await auth.verify(attempt('alice@example.com', 'config-pw'));
    expect(remember).toHaveBeenCalledTimes(1);
    expect(has.mock.results.at(-1)?.value).toBe(true);
  });

  it('concurrent identical logins share one password check', async () => {
    const { config } = await setup();
    const cache = new CredentialCache({ ttlMs: 60_000 });
    const remember = vi.spyOn(cache, 'remember');
    const auth = new LocalAuthenticator({ config, logger: silentLogger(), cache });
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        auth.verify(attempt('alice@example.com', 'config-pw', `192.0.2.${i}`)),
      ),
    );
    expect(results.every((a) => a.id === 'alice@example.com')).toBe(true);
    expect(remember).toHaveBeenCalledTimes(1);
  });

  it('concurrent wrong passwords are each counted by the limiter', async () => {
    const { auth, sleeps } = await setup({ lockAfter: 100 });
    const errors = await Promise.all(
      Array.from({ length: 3 }, () => failure(auth.verify(attempt('alice@example.com', 'bad')))),
    );
    expect(errors.map((e) => e.code)).toEqual(['bad-credentials', 'bad-credentials', 'bad-credentials']);
    expect(sleeps.sort((a, b) => a - b)).toEqual([1_000, 2_000]);
  });

  describe('recording app password use', () => {
    async function appSetup(touch?: () => Promise<void>) {
      const appHash = await hashPassword('app-pw-1', FAST);
      const ctx = await setup({
        appPasswords: [
          { id: 'ap1', accountId: 'bob@example.org', label: 'phone', hash: appHash, createdAt: 1 },
        ],
      });
      if (touch) ctx.store.touchAppPassword.mockImplementation(touch);
      return ctx;
    }

    it('writes lastUsedAt at most once per interval per app password, cache hit or not', async () => {
      const { auth, store, clock } = await appSetup();
      for (let i = 0; i < 5; i++) {
        await auth.verify(attempt('bob@example.org', 'app-pw-1'));
        clock.now += 30_000;
      }
      expect(store.touchAppPassword).toHaveBeenCalledTimes(1);
      expect(store.touchAppPassword).toHaveBeenLastCalledWith('ap1', 1_700_000_000_000);
      clock.now = 1_700_000_000_000 + APP_PASSWORD_TOUCH_INTERVAL_MS;
      await auth.verify(attempt('bob@example.org', 'app-pw-1'));
      expect(store.touchAppPassword).toHaveBeenCalledTimes(2);
      expect(store.touchAppPassword).toHaveBeenLastCalledWith('ap1', clock.now);
    });

    it('a failing write never fails the login and is not retried on every login', async () => {
      const { auth, store, clock } = await appSetup(() => Promise.reject(new Error('database is locked')));
      await expect(auth.verify(attempt('bob@example.org', 'app-pw-1'))).resolves.toMatchObject({
        id: 'bob@example.org',
      });
      clock.now += 1_000;
      await expect(auth.verify(attempt('bob@example.org', 'app-pw-1'))).resolves.toMatchObject({
        id: 'bob@example.org',
      });
      // a store stuck behind another writer costs one busy wait per interval, not one per login
      expect(store.touchAppPassword).toHaveBeenCalledTimes(1);
    });

    it('a cache hit on the config password does not read the app passwords', async () => {
      const { auth, store } = await appSetup();
      await auth.verify(attempt('alice@example.com', 'config-pw'));
      const reads = store.listAppPasswords.mock.calls.length;
      await auth.verify(attempt('alice@example.com', 'config-pw'));
      await auth.verify(attempt('alice@example.com', 'config-pw'));
      expect(store.listAppPasswords).toHaveBeenCalledTimes(reads);
    });

    it('a revoked app password stops working at once, even while its check is cached', async () => {
      const { auth, store } = await appSetup();
      await auth.verify(attempt('bob@example.org', 'app-pw-1'));
      store.listAppPasswords.mockResolvedValue([]);
      const err = await failure(auth.verify(attempt('bob@example.org', 'app-pw-1')));
      expect(err.code).toBe('bad-credentials');
    });
  });

  it('a malformed stored hash is skipped, not fatal', async () => {
    const { auth } = await setup({
      appPasswords: [{ id: 'bad', accountId: 'bob@example.org', label: 'x', hash: 'garbage', createdAt: 1 }],
    });
    const err = await failure(auth.verify(attempt('bob@example.org', 'garbage')));
    expect(err.code).toBe('bad-credentials');
  });
});
