/**
 * `xoauth-proxy store migrate`: 50 accounts from the embedded store into PostgreSQL, byte-identical,
 * every refresh token checked, and the SQLite file refusing to be used afterwards.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import type { PostgresStoreSettings } from '../../../src/config/types.js';
import { isProxyError } from '../../../src/errors.js';
import { migrateSqliteToPostgres } from '../../../src/store/migrate.js';
import { PostgresStore } from '../../../src/store/postgres-store.js';
import { SqliteStore } from '../../../src/store/sqlite-store.js';
import { runCli } from '../../unit/cli/helpers.js';
import { requirePostgres, usePostgres } from '../../helpers/postgres.js';
import { record } from '../../helpers/store-contract.js';

const enabled = requirePostgres();
const postgres = usePostgres();
const dir = mkdtempSync(join(tmpdir(), 'xoauth-migrate-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function seededSqlite(name: string, accounts: number): Promise<{ path: string; keyFile: string }> {
  const keyFile = join(dir, `${name}.key`);
  writeFileSync(keyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
  const settings = { path: join(dir, `${name}.db`), keyFile };
  const store = SqliteStore.open(settings, { env: {} });
  for (let i = 0; i < accounts; i++) {
    const id = `user${String(i).padStart(2, '0')}@example.com`;
    await store.putToken(record(id, i % 7 === 0 ? { refreshToken: undefined, state: 'needs-consent' } : {}));
    if (i % 5 === 0) {
      await store.addAppPassword({
        id: `ap${i}`,
        accountId: id,
        label: 'phone',
        hash: `h${i}`,
        createdAt: i,
      });
    }
  }
  await store.addConsentLink({
    tokenHash: 'a'.repeat(64),
    accountId: 'user01@example.com',
    username: 'user01@example.com',
    createdAt: 1,
    expiresAt: 2,
  });
  await store.close();
  return settings;
}

function target(url: string, keyFile: string): PostgresStoreSettings {
  return { kind: 'postgres', url, keyFile, refreshLeaseMs: 20_000, poolMax: 2, timeoutMs: 5_000 };
}

describe.runIf(enabled)('store migrate', () => {
  it('copies 50 accounts byte-identical, checks each refresh token, and marks the file as moved', async () => {
    const from = await seededSqlite('fifty', 50);
    const db = await postgres.createDatabase();
    const source = SqliteStore.open(from, { env: {} });
    const original = source.allTokenRows();
    const originalRecords = await source.listTokens();
    await source.close();

    const result = await migrateSqliteToPostgres(from, target(db.url, from.keyFile), { env: {} });
    expect(result).toMatchObject({ grants: 50, appPasswords: 10, consentLinks: 1 });

    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const copied = (await client.query('SELECT * FROM xoauth_tokens ORDER BY account_id')).rows as Record<
      string,
      unknown
    >[];
    await client.end();
    expect(
      copied.map((r) =>
        Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v === null ? null : String(v)])),
      ),
    ).toEqual(
      original.map((r) =>
        Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v === null ? null : String(v)])),
      ),
    );
    const shared = await PostgresStore.open(target(db.url, from.keyFile), { env: {} });
    expect(await shared.listTokens()).toEqual(originalRecords);
    expect(await shared.listAppPasswords()).toHaveLength(10);
    expect(await shared.getConsentLink('a'.repeat(64))).toMatchObject({ accountId: 'user01@example.com' });
    await shared.close();

    // A forgotten instance still pointed at the file refuses to start, saying where the grants went.
    let err: unknown;
    try {
      SqliteStore.open(from, { env: {} });
    } catch (e) {
      err = e;
    }
    expect(isProxyError(err, 'store')).toBe(true);
    expect((err as Error).message).toMatch(/was moved to postgres:\/\//);
    // And a second migration of it copies nothing.
    const again = await migrateSqliteToPostgres(from, target(db.url, from.keyFile), { env: {} }).catch(
      (e: unknown) => e,
    );
    expect((again as Error).message).toMatch(/already moved/);
  });

  it('refuses a target that holds grants, a running daemon, and another key, marking nothing', async () => {
    const from = await seededSqlite('refusals', 3);
    const busy = await postgres.createDatabase();
    const other = await PostgresStore.open(target(busy.url, from.keyFile), { env: {} });
    await other.putToken(record('someone@example.com'));
    await other.close();
    expect(
      String(
        await migrateSqliteToPostgres(from, target(busy.url, from.keyFile), { env: {} }).catch(
          (e: unknown) => e,
        ),
      ),
    ).toMatch(/already holds grants/);

    writeFileSync(join(dir, 'xoauth-proxy.pid'), `${process.pid}\n`);
    const empty = await postgres.createDatabase();
    expect(
      String(
        await migrateSqliteToPostgres(from, target(empty.url, from.keyFile), { env: {} }).catch(
          (e: unknown) => e,
        ),
      ),
    ).toMatch(/still running/);
    rmSync(join(dir, 'xoauth-proxy.pid'));

    const wrongKey = join(dir, 'wrong.key');
    writeFileSync(wrongKey, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    expect(
      String(
        await migrateSqliteToPostgres(from, target(empty.url, wrongKey), { env: {} }).catch(
          (e: unknown) => e,
        ),
      ),
    ).toMatch(/does not decrypt/);
    // Nothing marked: the file still opens.
    await SqliteStore.open(from, { env: {} }).close();
  });

  it('the CLI command copies into the configured store', async () => {
    const from = await seededSqlite('cli', 4);
    const db = await postgres.createDatabase();
    const config = join(dir, 'config.yaml');
    writeFileSync(
      config,
      `store:\n  kind: postgres\n  url: ${db.url}\n  keyFile: ${from.keyFile}\nconnections: []\naccounts: []\n`,
    );
    const r = await runCli(['store', 'migrate', '--config', config, '--from', from.path]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Copied 4 grants, 1 app passwords and 1 consent links/);
    const sqliteConfig = join(dir, 'sqlite.yaml');
    writeFileSync(sqliteConfig, `connections: []\naccounts: []\n`);
    const refused = await runCli(['store', 'migrate', '--config', sqliteConfig, '--from', from.path]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/store.kind: postgres/);
  });
});
