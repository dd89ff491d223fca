/**
 * xoauth_proxy_token_requests_total from the real TokenManager against the fake authorization
 * server: one count per token-endpoint request, labelled with the manager's own classification.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ConnectionConfig, ResolvedAccount, Settings } from '../../../src/config/types.js';
import { silentLogger } from '../../../src/log.js';
import { Metrics } from '../../../src/metrics/metrics.js';
import { openStore } from '../../../src/store/index.js';
import { BACKOFF_MAX_MS, TokenManager } from '../../../src/oauth/token-manager.js';
import type { Store } from '../../../src/oauth/types.js';
import { fakeConnection, startFakeAuthServer, type FakeAuthServer } from '../../helpers/fake-auth-server.js';

let fake: FakeAuthServer;
let dir: string;
let store: Store;
let now: number;
let metrics: Metrics;

beforeEach(async () => {
  fake = await startFakeAuthServer();
  dir = mkdtempSync(join(tmpdir(), 'xoauth-metrics-tokens-'));
  store = await openStore({ path: join(dir, 'tokens.db'), keyFile: join(dir, 'store.key') }, { env: {} });
  now = Date.now();
  metrics = new Metrics({ defaultMetrics: false });
});

afterEach(async () => {
  await store.close();
  await fake.close();
  rmSync(dir, { recursive: true, force: true });
});

function manager(connections: ConnectionConfig[]): TokenManager {
  const settings: Settings = {
    refreshMarginMs: 10 * 60_000,
    keepAliveIntervalMs: 6 * 3600_000,
    tokenRequestTimeoutMs: 5_000,
    credentialCacheMs: 60_000,
    shutdownGraceMs: 30_000,
    limits: {} as Settings['limits'],
    loginLimiter: {} as Settings['loginLimiter'],
  };
  return new TokenManager({
    config: {
      settings,
      accounts: connections.map((c) => ({ username: '*@example.com', connection: c.name })),
      connections: new Map(connections.map((c) => [c.name, c])),
    },
    store,
    logger: silentLogger(),
    clock: () => now,
    metrics,
  });
}

function account(email: string, connection: ConnectionConfig): ResolvedAccount {
  return { id: email, username: email, email, connection, entry: email };
}

async function seed(email: string, connection: ConnectionConfig): Promise<void> {
  const grant = fake.issueGrant(email, { accessTokenTtlSeconds: 0 });
  await store.putToken({
    accountId: email,
    connection: connection.name,
    refreshToken: grant.refreshToken,
    accessToken: grant.accessToken,
    accessTokenExpiresAt: now,
    scopes: ['https://mail.google.com/'],
    state: 'active',
    updatedAt: now,
  });
}

async function count(grant: string, result: string): Promise<number> {
  const text = await metrics.scrape();
  const series = `xoauth_proxy_token_requests_total{grant="${grant}",result="${result}"} `;
  const line = text.split('\n').find((l) => l.startsWith(series));
  if (line === undefined) throw new Error(`no series ${series}`);
  return Number(line.slice(series.length));
}

describe('token request metrics', () => {
  it('refresh: ok, a transient failure (503), then a permanent one (invalid_grant)', async () => {
    const connection = fakeConnection(fake);
    const tokens = manager([connection]);
    await seed('alice@example.com', connection);
    const alice = account('alice@example.com', connection);

    await tokens.getAccessToken(alice);
    expect(await count('refresh_token', 'ok')).toBe(1);

    fake.failNext(1, 503);
    await expect(tokens.getAccessToken(alice, { forceRefresh: true })).rejects.toMatchObject({
      code: 'token-unavailable',
    });
    expect(await count('refresh_token', 'transient')).toBe(1);
    // During the backoff no request is made, so nothing more is counted.
    await expect(tokens.getAccessToken(alice, { forceRefresh: true })).rejects.toMatchObject({
      code: 'token-unavailable',
    });
    expect(fake.counts.refresh).toBe(2);
    expect(await count('refresh_token', 'transient')).toBe(1);

    now += BACKOFF_MAX_MS + 1_000;
    fake.failNext(1, 400, 'invalid_grant');
    await expect(tokens.getAccessToken(alice, { forceRefresh: true })).rejects.toMatchObject({
      code: 'needs-consent',
    });
    expect(await count('refresh_token', 'permanent')).toBe(1);
    expect(await count('refresh_token', 'ok')).toBe(1);
    expect(await count('client_credentials', 'ok')).toBe(0);
  });

  it('client_credentials: counted under its own grant', async () => {
    const app = fakeConnection(fake, { name: 'app', grant: 'client_credentials', scopes: ['x/.default'] });
    const tokens = manager([app]);
    await tokens.getAccessToken(account('box@example.com', app));
    // The app-only token is cached and shared: a second mailbox makes no request.
    await tokens.getAccessToken(account('other@example.com', app));
    expect(await count('client_credentials', 'ok')).toBe(1);
    expect(await count('refresh_token', 'ok')).toBe(0);
  });
});
