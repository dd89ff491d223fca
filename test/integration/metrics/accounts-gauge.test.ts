import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ConnectionConfig, Settings } from '../../../src/config/types.js';
import { silentLogger } from '../../../src/log.js';
import { Metrics } from '../../../src/metrics/metrics.js';
import { openStore } from '../../../src/store/index.js';
import { TokenManager } from '../../../src/oauth/token-manager.js';
import type { TokenRecord, Store } from '../../../src/oauth/types.js';
import { corruptRefreshToken } from '../../helpers/corrupt-store.js';

let dir: string;
let store: Store;

const connection = {
  name: 'g',
  provider: 'google',
  grant: 'authorization_code',
} as unknown as ConnectionConfig;

function grant(accountId: string, state: TokenRecord['state']): TokenRecord {
  return {
    accountId,
    connection: 'g',
    refreshToken: `rt-${accountId}`,
    accessToken: `at-${accountId}`,
    accessTokenExpiresAt: Date.now() + 3600_000,
    scopes: [],
    state,
    updatedAt: Date.now(),
  };
}

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'xoauth-gauge-'));
  store = await openStore({ path: join(dir, 'tokens.db'), keyFile: join(dir, 'key') }, { env: {} });
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('accounts gauge', () => {
  it('counts account states at scrape time without handing out any token', async () => {
    await store.putToken(grant('a@example.com', 'active'));
    await store.putToken(grant('b@example.com', 'active'));
    await store.putToken(grant('c@example.com', 'needs-consent'));
    await store.putToken(grant('d@example.com', 'failing'));
    // A store double on the real store: every path that hands out secrets throws.
    const noSecrets: Store = Object.create(store) as Store;
    noSecrets.listTokens = () => {
      throw new Error('listTokens decrypts every token');
    };
    noSecrets.getToken = () => {
      throw new Error('getToken decrypts a token');
    };
    noSecrets.listTokenSummaries = () => store.listTokenSummaries!();
    noSecrets.watchGrants = (listener) => store.watchGrants(listener);
    const tokens = new TokenManager({
      config: {
        settings: { refreshMarginMs: 600_000, keepAliveIntervalMs: 3600_000 } as Settings,
        accounts: [
          { username: '*@example.com', connection: 'g' },
          { username: 'e@example.com', connection: 'g' },
        ],
        connections: new Map([['g', connection]]),
      },
      store: noSecrets,
      logger: silentLogger(),
    });
    const metrics = new Metrics({ defaultMetrics: false });
    metrics.trackAccounts(() => tokens.status());
    const text = await metrics.scrape();
    expect(sample(text, 'xoauth_proxy_accounts{state="active"}')).toBe(2);
    expect(sample(text, 'xoauth_proxy_accounts{state="needs-consent"}')).toBe(1);
    expect(sample(text, 'xoauth_proxy_accounts{state="failing"}')).toBe(1);
    expect(sample(text, 'xoauth_proxy_accounts{state="no-grant"}')).toBe(1);
    expect(sample(text, 'xoauth_proxy_accounts{state="unreadable"}')).toBe(0);
  });

  it('counts an account whose stored row cannot be decrypted as unreadable, the others as they are', async () => {
    await store.putToken(grant('a@example.com', 'active'));
    await store.putToken(grant('b@example.com', 'active'));
    await store.putToken(grant('c@example.com', 'failing'));
    corruptRefreshToken(join(dir, 'tokens.db'), 'b@example.com');
    const tokens = new TokenManager({
      config: {
        settings: { refreshMarginMs: 600_000, keepAliveIntervalMs: 3600_000 } as Settings,
        accounts: [{ username: '*@example.com', connection: 'g' }],
        connections: new Map([['g', connection]]),
      },
      store,
      logger: silentLogger(),
    });
    const metrics = new Metrics({ defaultMetrics: false });
    metrics.trackAccounts(() => tokens.status());
    const text = await metrics.scrape();
    expect(sample(text, 'xoauth_proxy_accounts{state="active"}')).toBe(1);
    expect(sample(text, 'xoauth_proxy_accounts{state="failing"}')).toBe(1);
    expect(sample(text, 'xoauth_proxy_accounts{state="unreadable"}')).toBe(1);
    expect((await tokens.status()).find((s) => s.accountId === 'b@example.com')).toMatchObject({
      state: 'unreadable',
      lastError: expect.stringContaining('cannot be decrypted'),
    });
  });
});
