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
import { PostgresStore } from '../../../src/store/postgres-store.js';
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
});
