/**
 * The PostgreSQL store against a real server: the same contract as the embedded store, plus what a
 * shared database adds (schema made once by instances starting together, the key checked, a newer
 * schema refused, a database outage reported and recovered from without a restart).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import type { PostgresStoreSettings } from '../../../src/config/types.js';
import { isProxyError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import { TokenManager } from '../../../src/oauth/token-manager.js';
import type { ResolvedAccount, Settings } from '../../../src/config/types.js';
import { PostgresStore } from '../../../src/store/postgres-store.js';
import { fakeConnection, startFakeAuthServer } from '../../helpers/fake-auth-server.js';
import { requirePostgres, usePostgres } from '../../helpers/postgres.js';
import { record, storeContract } from '../../helpers/store-contract.js';

const enabled = requirePostgres();
const postgres = usePostgres();
const dir = mkdtempSync(join(tmpdir(), 'xoauth-pg-store-'));
const keyFile = join(dir, 'key');
writeFileSync(keyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function settings(url: string, overrides: Partial<PostgresStoreSettings> = {}): PostgresStoreSettings {
  return {
    kind: 'postgres',
    url,
    keyFile,
    refreshLeaseMs: 20_000,
    poolMax: 4,
    timeoutMs: 2_000,
    ...overrides,
  };
}

let url = '';
if (enabled) {
  storeContract('PostgreSQL', {
    fresh: async () => {
      url = (await postgres.createDatabase()).url;
    },
    open: () => PostgresStore.open(settings(url), { env: {} }),
  });
}

describe.runIf(enabled)('PostgreSQL store', () => {
  it('ten instances opening a new database at once make the schema once and agree on the key', async () => {
    const db = await postgres.createDatabase();
    const stores = await Promise.all(
      Array.from({ length: 10 }, () => PostgresStore.open(settings(db.url), { env: {} })),
    );
    await stores[3]!.putToken(record('alice@example.com'));
    expect((await stores[7]!.getToken('alice@example.com'))?.refreshToken).toBe('rt-alice@example.com');
    for (const s of stores) await s.close();
  });

  it('the database never holds a token in clear, and another key is refused with what to do', async () => {
    const db = await postgres.createDatabase();
    const store = await PostgresStore.open(settings(db.url), { env: {} });
    await store.putToken(record('alice@example.com'));
    await store.close();
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const dump = JSON.stringify((await client.query('SELECT * FROM xoauth_tokens')).rows);
    expect(dump).not.toContain('rt-alice');
    expect(dump).not.toContain('at-alice');
    await client.end();

    const otherKey = { XOAUTH_PROXY_KEY: randomBytes(32).toString('base64') };
    const err = await PostgresStore.open(settings(db.url), { env: otherKey }).catch((e: unknown) => e);
    expect(isProxyError(err, 'store')).toBe(true);
    expect((err as Error).message).toMatch(/different key/);
  });

  it('refuses to start without the shared key file, and makes none', async () => {
    const db = await postgres.createDatabase();
    const missing = join(dir, 'no-such-key');
    const err = await PostgresStore.open(settings(db.url, { keyFile: missing }), { env: {} }).catch(
      (e: unknown) => e,
    );
    expect(isProxyError(err, 'store')).toBe(true);
    expect((err as Error).message).toMatch(/openssl rand -base64 32/);
  });

  it('a schema 1 database gains the Graph column in place and keeps its grants', async () => {
    const db = await postgres.createDatabase();
    const first = await PostgresStore.open(settings(db.url), { env: {} });
    await first.putToken(record('old@example.com'));
    await first.close();
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query('ALTER TABLE xoauth_tokens DROP COLUMN graph_send_until');
    await client.query("UPDATE xoauth_meta SET value = '1' WHERE key = 'schema_version'");
    await client.end();
    const store = await PostgresStore.open(settings(db.url), { env: {} });
    try {
      expect(await store.getToken('old@example.com')).toEqual(record('old@example.com'));
      await store.updateToken('old@example.com', (r) =>
        r ? { ...r, graphSendUntil: 1_900_000_000_000 } : r,
      );
      expect((await store.getToken('old@example.com'))?.graphSendUntil).toBe(1_900_000_000_000);
    } finally {
      await store.close();
    }
  });

  it('a database written by a newer version is refused and left untouched', async () => {
    const db = await postgres.createDatabase();
    const store = await PostgresStore.open(settings(db.url), { env: {} });
    await store.close();
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query("UPDATE xoauth_meta SET value = '99' WHERE key = 'schema_version'");
    await client.end();
    const err = await PostgresStore.open(settings(db.url), { env: {} }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/newer xoauth-proxy \(schema 99/);
  });

  it('a database that stops answering is a store error within the timeout; it works again once back', async () => {
    const db = await postgres.createDatabase();
    const server = await postgres.server();
    const store = await PostgresStore.open(settings(db.url, { timeoutMs: 1_000 }), { env: {} });
    await store.putToken(record('alice@example.com'));
    server.blackhole();
    try {
      const started = Date.now();
      const err = await store.getToken('alice@example.com').catch((e: unknown) => e);
      expect(isProxyError(err, 'store')).toBe(true);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(String((err as Error).message)).not.toMatch(/password/i);
    } finally {
      server.unblackhole();
    }
    // No restart: the next query opens a fresh connection.
    let back: unknown;
    for (let i = 0; i < 50 && back === undefined; i++) {
      back = await store.getToken('alice@example.com').catch(() => undefined);
      if (back === undefined) await new Promise((r) => setTimeout(r, 100));
    }
    expect(back).toMatchObject({ refreshToken: 'rt-alice@example.com' });
    await store.close();
  });

  it('a rotated refresh token the database cannot take stays in memory and is committed once it is back', async () => {
    const db = await postgres.createDatabase();
    const server = await postgres.server();
    // The provider answers slowly, so the database can go away between the lease and the commit.
    const fake = await startFakeAuthServer({ rotateRefreshTokens: true, tokenDelayMs: 800 });
    const store = await PostgresStore.open(settings(db.url, { timeoutMs: 1_000 }), { env: {} });
    try {
      const connection = fakeConnection(fake);
      const email = 'rot@example.com';
      const grant = fake.issueGrant(email, { accessTokenTtlSeconds: 0 });
      await store.putToken({
        ...record(email, { connection: connection.name, refreshToken: grant.refreshToken }),
        accessToken: grant.accessToken,
        accessTokenExpiresAt: Date.now(),
      });
      const tokens = new TokenManager({
        config: {
          settings: {
            refreshMarginMs: 600_000,
            keepAliveIntervalMs: 3600_000,
            tokenRequestTimeoutMs: 5_000,
          } as Settings,
          accounts: [{ username: email, connection: connection.name }],
          connections: new Map([[connection.name, connection]]),
        },
        store,
        logger: silentLogger(),
      });
      const account: ResolvedAccount = { id: email, username: email, email, connection, entry: email };
      const login = tokens.getAccessToken(account).then(
        () => 'ok',
        (e: unknown) => (e as { code?: string }).code,
      );
      await new Promise((r) => setTimeout(r, 300));
      server.blackhole();
      try {
        // Not handed out before its grant is saved: a temporary error, never "needs consent".
        expect(await login).toBe('token-unavailable');
        expect(fake.counts.refresh).toBe(1);
      } finally {
        server.unblackhole();
      }
      // Back: the next login commits the token only memory held, and asks the provider nothing more.
      let token: string | undefined;
      for (let i = 0; i < 50 && token === undefined; i++) {
        token = await tokens.getAccessToken(account).then(
          (t) => t.token,
          () => undefined,
        );
        if (token === undefined) await new Promise((r) => setTimeout(r, 200));
      }
      expect(fake.checkAccessToken(token!)).toBe(email);
      expect(fake.counts.refresh).toBe(1);
      expect(fake.counts.refreshReuse).toBe(0);
      const stored = await store.getToken(email);
      expect(stored?.refreshToken).not.toBe(grant.refreshToken);
      expect(fake.isRefreshTokenValid(stored!.refreshToken!)).toBe(true);
      await tokens.stop();
    } finally {
      await store.close();
      await fake.close();
    }
  });
});
