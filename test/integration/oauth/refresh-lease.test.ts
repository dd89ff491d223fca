/**
 * Several token managers on one store, each with its own handle (as the daemon and a CLI, or several
 * instances, would be): one refresh per account across all of them, waiters read the winner's token,
 * and a holder that stopped mid-refresh neither blocks the account nor loses it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ConnectionConfig, ResolvedAccount, Settings } from '../../../src/config/types.js';
import { silentLogger } from '../../../src/log.js';
import { TokenManager } from '../../../src/oauth/token-manager.js';
import { SqliteStore } from '../../../src/store/sqlite-store.js';
import type { Store } from '../../../src/store/types.js';
import { fakeConnection, startFakeAuthServer, type FakeAuthServer } from '../../helpers/fake-auth-server.js';

let fake: FakeAuthServer;
let dir: string;
let connection: ConnectionConfig;
const stores: Store[] = [];

const settings: Settings = {
  refreshMarginMs: 10 * 60_000,
  keepAliveIntervalMs: 6 * 3600_000,
  tokenRequestTimeoutMs: 5_000,
  credentialCacheMs: 60_000,
  shutdownGraceMs: 30_000,
  limits: {} as Settings['limits'],
  loginLimiter: {} as Settings['loginLimiter'],
};

function open(): Store {
  const s = SqliteStore.open({ path: join(dir, 'tokens.db'), keyFile: join(dir, 'key') }, { env: {} });
  stores.push(s);
  return s;
}

function manager(store: Store, refreshLeaseMs?: number): TokenManager {
  return new TokenManager({
    config: {
      settings,
      accounts: [{ username: '*@example.com', connection: connection.name }],
      connections: new Map([[connection.name, connection]]),
    },
    store,
    logger: silentLogger(),
    ...(refreshLeaseMs ? { refreshLeaseMs } : {}),
  });
}

function account(email: string): ResolvedAccount {
  return { id: email, username: email, email, connection, entry: email };
}

async function seedExpired(store: Store, email: string): Promise<string> {
  const grant = fake.issueGrant(email, { accessTokenTtlSeconds: 0 });
  await store.putToken({
    accountId: email,
    connection: connection.name,
    refreshToken: grant.refreshToken,
    accessToken: grant.accessToken,
    accessTokenExpiresAt: Date.now(),
    scopes: ['https://mail.google.com/'],
    identity: email,
    state: 'active',
    updatedAt: Date.now(),
  });
  return grant.refreshToken;
}

/** What a holder's token request did at the provider before it stopped: the refresh token is spent. */
async function spendAtProvider(
  refreshToken: string,
): Promise<{ access_token: string; refresh_token: string; expires_in: number }> {
  const res = await fetch(connection.tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      client_id: connection.clientId,
      client_secret: connection.clientSecret ?? '',
    }),
  });
  return (await res.json()) as { access_token: string; refresh_token: string; expires_in: number };
}

beforeEach(async () => {
  fake = await startFakeAuthServer({ rotateRefreshTokens: true, tokenDelayMs: 150 });
  connection = fakeConnection(fake);
  dir = mkdtempSync(join(tmpdir(), 'xoauth-lease-'));
});
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  await fake.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('refresh leases across token managers', () => {
  it('three managers, 60 concurrent logins over 5 expired accounts: 5 token requests, no reuse', async () => {
    const managers = [manager(open()), manager(open()), manager(open())];
    const ids = ['a', 'b', 'c', 'd', 'e'].map((x) => `${x}@example.com`);
    for (const id of ids) await seedExpired(stores[0]!, id);
    const logins = Array.from({ length: 60 }, (_, i) =>
      managers[i % 3]!.getAccessToken(account(ids[i % ids.length]!)),
    );
    const tokens = await Promise.all(logins);
    expect(fake.counts.refresh).toBe(5);
    expect(fake.counts.refreshReuse).toBe(0);
    for (const [i, t] of tokens.entries()) expect(fake.checkAccessToken(t.token)).toBe(ids[i % ids.length]);
    // The store holds each account's live refresh token.
    for (const id of ids) {
      const stored = await stores[0]!.getToken(id);
      expect(fake.isRefreshTokenValid(stored!.refreshToken!)).toBe(true);
    }
  });

  it('a manager that takes the lease just after another one committed and let go reads that grant', async () => {
    const first = open();
    const late = open();
    const id = 'race@example.com';
    await seedExpired(first, id);
    const winner = manager(first);
    // The late manager has read the expired grant; before it takes the lease, the winner refreshes,
    // commits and releases the lease: the take then succeeds, on a grant that is already fresh.
    const acquire = late.acquireRefreshLease.bind(late);
    let raced = false;
    late.acquireRefreshLease = async (...args) => {
      if (!raced) {
        raced = true;
        await winner.getAccessToken(account(id));
      }
      return acquire(...args);
    };
    const token = await manager(late).getAccessToken(account(id));
    expect(raced).toBe(true);
    expect(fake.counts.refresh).toBe(1);
    expect(fake.checkAccessToken(token.token)).toBe(id);
  });

  it('a holder that stopped before its request: another takes over after the lease and refreshes', async () => {
    const store = open();
    await seedExpired(store, 'x@example.com');
    expect(await store.acquireRefreshLease('x@example.com', 'dead-holder', 400)).toEqual({ acquired: true });
    const started = Date.now();
    const token = await manager(open()).getAccessToken(account('x@example.com'));
    expect(Date.now() - started).toBeGreaterThanOrEqual(350);
    expect(fake.checkAccessToken(token.token)).toBe('x@example.com');
    expect(fake.counts.refreshReuse).toBe(0);
  });

  it('a holder that stopped after the provider rotated: in doubt (failing), and its late commit restores it', async () => {
    const store = open();
    const sent = await seedExpired(store, 'y@example.com');
    expect(await store.acquireRefreshLease('y@example.com', 'frozen-holder', 300)).toEqual({
      acquired: true,
    });
    // The frozen holder's request reached the provider, which rotated the refresh token.
    const rotated = await spendAtProvider(sent);
    expect(fake.isRefreshTokenValid(sent)).toBe(false);

    const other = manager(open());
    const err = await other.getAccessToken(account('y@example.com')).then(
      () => undefined,
      (e: unknown) => e as { code: string; message: string },
    );
    expect(err?.code).toBe('token-unavailable');
    const record = await store.getToken('y@example.com');
    expect(record?.state).toBe('failing');
    expect(record?.lastError).toMatch(/in doubt/);
    expect(record?.refreshToken).toBe(sent);

    // The frozen holder wakes up and commits over the refresh token it sent (compare-and-set).
    await store.updateToken('y@example.com', (cur) =>
      cur && cur.refreshToken === sent
        ? {
            ...cur,
            refreshToken: rotated.refresh_token,
            accessToken: rotated.access_token,
            accessTokenExpiresAt: Date.now() + rotated.expires_in * 1000,
            state: 'active',
            updatedAt: Date.now(),
          }
        : undefined,
    );
    const token = await other.getAccessToken(account('y@example.com'));
    expect(token.token).toBe(rotated.access_token);
    expect((await store.getToken('y@example.com'))?.state).toBe('active');
  });

  it('in doubt after a takeover: a third manager that refreshes next keeps it in doubt too', async () => {
    const store = open();
    const sent = await seedExpired(store, 'z@example.com');
    await store.acquireRefreshLease('z@example.com', 'frozen-holder', 300);
    // The frozen holder's request spent the refresh token at the provider.
    await spendAtProvider(sent);
    const refusal = (m: TokenManager) =>
      m.getAccessToken(account('z@example.com')).then(
        () => undefined,
        (e: unknown) => (e as { code: string }).code,
      );
    expect(await refusal(manager(open()))).toBe('token-unavailable');
    // This one took no lease over; only the store tells it that the refusal may be undone.
    expect(await refusal(manager(open()))).toBe('token-unavailable');
    const record = await store.getToken('z@example.com');
    expect(record?.state).toBe('failing');
    expect(record?.lastError).toMatch(/in doubt until \d{4}-/);
    expect(record?.inDoubtUntil).toBeGreaterThan(Date.now());
  });
});
