import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isProxyError } from '../../../src/errors.js';
import { SqliteStore } from '../../../src/store/sqlite-store.js';
import type { TokenRecord, Store } from '../../../src/store/types.js';
import { corruptRefreshToken } from '../../helpers/corrupt-store.js';

let dir: string;
let settings: { path: string; keyFile: string };
const noEnv = {};
// Opening the embedded store is synchronous; its methods are not.
const open = (env: NodeJS.ProcessEnv = noEnv): Store => SqliteStore.open(settings, { env });

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'xoauth-store-'));
  settings = { path: join(dir, 'data', 'tokens.db'), keyFile: join(dir, 'data', 'store.key') };
});
afterEach(async () => {
  rmSync(dir, { recursive: true, force: true });
});

const REFRESH = 'rt-SECRET-refresh-value-1234567890';
const ACCESS = 'at-SECRET-access-value-0987654321';

function record(overrides: Partial<TokenRecord> = {}): TokenRecord {
  return {
    accountId: 'alice@example.com',
    connection: 'google',
    refreshToken: REFRESH,
    accessToken: ACCESS,
    accessTokenExpiresAt: 1_900_000_000_000,
    scopes: ['https://mail.google.com/'],
    identity: 'alice@example.com',
    displayName: 'Alice',
    state: 'active',
    lastRefreshAt: 1_800_000_000_000,
    updatedAt: 1_800_000_000_000,
    ...overrides,
  };
}

function digest(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

async function expectStoreError(fn: () => unknown, ...fragments: string[]): Promise<void> {
  let thrown: unknown;
  try {
    await fn();
  } catch (err) {
    thrown = err;
  }
  expect(isProxyError(thrown, 'store'), String(thrown)).toBe(true);
  for (const f of fragments) expect((thrown as Error).message).toContain(f);
}

describe('token store', () => {
  it('round-trips a record, including every optional field', async () => {
    const store = open();
    await store.putToken(record());
    expect(await store.getToken('alice@example.com')).toEqual(record());
    await store.putToken(
      record({ accountId: 'bob@example.com', refreshToken: undefined, accessToken: undefined }),
    );
    const bob = (await store.getToken('bob@example.com'))!;
    expect(bob.refreshToken).toBeUndefined();
    expect(bob.accessToken).toBeUndefined();
    expect((await store.listTokens()).map((r) => r.accountId)).toEqual([
      'alice@example.com',
      'bob@example.com',
    ]);
    expect(await store.getToken('nobody@example.com')).toBeUndefined();
    await store.close();
    // A second open (new process in real life) sees the same data with the same key file.
    const again = open();
    expect(await again.getToken('alice@example.com')).toEqual(record());
    await again.close();
  });

  it('updateToken is read-modify-write and returns the stored record', async () => {
    const store = open();
    expect(await store.updateToken('alice@example.com', () => undefined)).toBeUndefined();
    await store.updateToken('alice@example.com', (cur) => cur ?? record());
    const next = await store.updateToken('alice@example.com', (cur) => ({
      ...cur!,
      state: 'failing',
      lastError: 'boom',
    }));
    expect(next).toMatchObject({ state: 'failing', lastError: 'boom', refreshToken: REFRESH });
    expect(await store.getToken('alice@example.com')).toEqual(next);
    await store.close();
  });

  it('creates the store 0600, the key file 0600 and the directory 0700', async () => {
    const store = open();
    await store.putToken(record());
    expect(statSync(settings.path).mode & 0o777).toBe(0o600);
    expect(statSync(settings.keyFile).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'data')).mode & 0o777).toBe(0o700);
    for (const f of readdirSync(join(dir, 'data'))) {
      expect(statSync(join(dir, 'data', f)).mode & 0o077, f).toBe(0);
    }
    await store.close();
  });

  it('holds no token in clear text (store, WAL and shm files)', async () => {
    const store = open();
    await store.putToken(record());
    await store.updateToken('alice@example.com', (cur) => ({ ...cur!, lastError: 'x' }));
    const files = readdirSync(join(dir, 'data')).map((f) => join(dir, 'data', f));
    expect(files.some((f) => f.endsWith('-wal'))).toBe(true);
    const check = () => {
      for (const f of readdirSync(join(dir, 'data'))) {
        const bytes = readFileSync(join(dir, 'data', f));
        for (const secret of [REFRESH, ACCESS, 'SECRET']) {
          expect(bytes.includes(Buffer.from(secret)), `${secret} in ${f}`).toBe(false);
        }
      }
    };
    check();
    await store.close(); // checkpoints the WAL into the main file
    check();
    // ...and the identity is there, so the grep above would have found plain text.
    expect(readFileSync(settings.path).includes(Buffer.from('alice@example.com'))).toBe(true);
  });

  it('never overwrites an existing key file and uses it', async () => {
    await open().close();
    const key = readFileSync(settings.keyFile, 'utf8');
    expect(Buffer.from(key.trim(), 'base64')).toHaveLength(32);
    const store = open();
    await store.putToken(record());
    await store.close();
    expect(readFileSync(settings.keyFile, 'utf8')).toBe(key);
  });

  it('takes the key from XOAUTH_PROXY_KEY and then creates no key file', async () => {
    const env = { XOAUTH_PROXY_KEY: Buffer.alloc(32, 7).toString('base64') };
    const store = open(env);
    await store.putToken(record());
    await store.close();
    expect(() => statSync(settings.keyFile)).toThrow();
    expect((await open(env).getToken('alice@example.com'))?.refreshToken).toBe(REFRESH);
  });

  it('says clearly when XOAUTH_PROXY_KEY is malformed', async () => {
    await expectStoreError(
      () => open({ XOAUTH_PROXY_KEY: 'not-a-key' }),
      'XOAUTH_PROXY_KEY',
      'malformed',
      '32',
    );
    await expectStoreError(
      () => open({ XOAUTH_PROXY_KEY: Buffer.alloc(16).toString('base64') }),
      'malformed',
      'decoding to 16 bytes',
    );
  });

  it('says clearly when the key file is malformed, and leaves it alone', async () => {
    await open().close();
    writeFileSync(settings.keyFile, 'garbage\n', { mode: 0o600 });
    await expectStoreError(() => open(), settings.keyFile, 'malformed');
    expect(readFileSync(settings.keyFile, 'utf8')).toBe('garbage\n');
  });

  it('refuses a wrong key with a clear error and leaves the file untouched', async () => {
    const store = open();
    await store.putToken(record());
    await store.close();
    const before = digest(settings.path);
    const mtime = statSync(settings.path).mtimeMs;
    await expectStoreError(
      () => open({ XOAUTH_PROXY_KEY: Buffer.alloc(32, 1).toString('base64') }),
      settings.path,
      'different key',
      'untouched',
    );
    expect(digest(settings.path)).toBe(before);
    expect(statSync(settings.path).mtimeMs).toBe(mtime);
    // The right key still works afterwards.
    expect((await open().getToken('alice@example.com'))?.refreshToken).toBe(REFRESH);
  });

  it('does not make a new key when the store exists but its key file is gone', async () => {
    const store = open();
    await store.putToken(record());
    await store.close();
    rmSync(settings.keyFile);
    const before = digest(settings.path);
    await expectStoreError(() => open(), settings.keyFile, 'Restore the key file');
    expect(() => statSync(settings.keyFile)).toThrow();
    expect(digest(settings.path)).toBe(before);
  });

  it('refuses a corrupt file with a clear error and leaves it untouched', async () => {
    await open().close();
    rmSync(settings.path);
    writeFileSync(settings.path, Buffer.from('this is not a database '.repeat(200)), { mode: 0o600 });
    const before = digest(settings.path);
    await expectStoreError(() => open(), settings.path, 'untouched');
    expect(digest(settings.path)).toBe(before);
  });

  it('warns (naming the file and `chmod 600`) about a key file or store file readable by others, and still opens', async () => {
    await SqliteStore.open(settings, { env: noEnv }).close();
    const quiet: string[] = [];
    await SqliteStore.open(settings, {
      env: noEnv,
      logger: { warn: (_o: object, m: string) => quiet.push(m) },
    }).close();
    expect(quiet).toEqual([]);

    chmodSync(settings.keyFile, 0o644);
    chmodSync(settings.path, 0o640);
    const warnings: Array<{ fields: Record<string, unknown>; message: string }> = [];
    const store = SqliteStore.open(settings, {
      env: noEnv,
      logger: {
        warn: (fields: object, message: string) =>
          warnings.push({ fields: fields as Record<string, unknown>, message }),
      },
    });
    await store.putToken(record());
    expect((await store.getToken('alice@example.com'))?.refreshToken).toBe(REFRESH);
    await store.close();
    const text = warnings.map((w) => w.message).join('\n');
    expect(text).toContain(`chmod 600 ${settings.keyFile}`);
    expect(text).toContain(`chmod 600 ${settings.path}`);
    expect(warnings.map((w) => w.fields.file)).toEqual(
      expect.arrayContaining([settings.keyFile, settings.path]),
    );
    // Nothing was changed behind the admin's back.
    expect(statSync(settings.keyFile).mode & 0o777).toBe(0o644);
  });

  it('warns (naming `chmod 700`) about a data directory open to group or others', async () => {
    await SqliteStore.open(settings, { env: noEnv }).close();
    const dir = dirname(settings.path);
    chmodSync(dir, 0o755);
    const warnings: string[] = [];
    try {
      await SqliteStore.open(settings, {
        env: noEnv,
        logger: { warn: (_o: object, m: string) => warnings.push(m) },
      }).close();
    } finally {
      chmodSync(dir, 0o700);
    }
    expect(warnings.join('\n')).toContain(`The data directory ${dir} has mode 0755`);
    expect(warnings.join('\n')).toContain(`chmod 700 ${dir}`);
  });

  it('one row whose secret cannot be decrypted is reported for its account; every other row reads', async () => {
    const store = open();
    await store.putToken(record());
    await store.putToken(record({ accountId: 'bob@example.com', state: 'failing', lastError: 'http 503' }));
    await store.putToken(record({ accountId: 'carol@example.com', state: 'needs-consent' }));
    await store.updateToken('carol@example.com', (r) => {
      const next = { ...r! };
      delete next.refreshToken;
      return next;
    });
    await store.close();
    corruptRefreshToken(settings.path, 'alice@example.com');
    const reopened = open();
    const unreadable: Array<{ accountId: string; connection: string; reason: string }> = [];
    const records = await reopened.listTokens((row) => unreadable.push(row));
    expect(records.map((r) => r.accountId)).toEqual(['bob@example.com', 'carol@example.com']);
    expect(records[0]!.refreshToken).toBe(REFRESH);
    expect(unreadable).toEqual([
      {
        accountId: 'alice@example.com',
        connection: 'google',
        reason: expect.stringMatching(/cannot be decrypted/),
      },
    ]);
    expect(unreadable[0]!.reason).not.toContain('SECRET');
    // Without a handler the bad row is still only left out, never thrown.
    expect((await reopened.listTokens()).map((r) => r.accountId)).toEqual([
      'bob@example.com',
      'carol@example.com',
    ]);
    // Asked for directly, it is a precise store error naming the account and the fix.
    await expectStoreError(
      () => reopened.getToken('alice@example.com'),
      'alice@example.com',
      'xoauth-proxy consent',
    );

    const summaries = await reopened.listTokenSummaries();
    expect(
      summaries.map((s) => [
        s.accountId,
        s.state,
        s.hasRefreshToken,
        s.lastError,
        s.unreadable !== undefined,
      ]),
    ).toEqual([
      ['alice@example.com', 'active', true, undefined, true],
      ['bob@example.com', 'failing', true, 'http 503', false],
      ['carol@example.com', 'needs-consent', false, undefined, false],
    ]);
    expect(summaries[0]).toMatchObject({
      identity: 'alice@example.com',
      accessTokenExpiresAt: 1_900_000_000_000,
      unreadable: expect.stringMatching(/refresh token cannot be decrypted/),
    });
    expect(JSON.stringify(summaries)).not.toContain('SECRET');

    // A consent replaces the unreadable row; any other update leaves it as it is.
    expect(
      await reopened.updateToken(
        'alice@example.com',
        (current) => current && { ...current, state: 'failing' },
      ),
    ).toBeUndefined();
    await expectStoreError(() => reopened.getToken('alice@example.com'), 'cannot be decrypted');
    await reopened.updateToken('alice@example.com', (current) => {
      expect(current).toBeUndefined();
      return record({ refreshToken: 'rt-new' });
    });
    expect((await reopened.getToken('alice@example.com'))!.refreshToken).toBe('rt-new');
    await reopened.close();
  });

  it('stores app passwords', async () => {
    const store = open();
    await store.addAppPassword({ id: 'p1', accountId: 'a@x', label: 'phone', hash: 'h1', createdAt: 1 });
    await store.addAppPassword({ id: 'p2', accountId: 'a@x', label: 'laptop', hash: 'h2', createdAt: 2 });
    await store.addAppPassword({ id: 'p3', accountId: 'b@x', label: 'phone', hash: 'h3', createdAt: 3 });
    expect((await store.listAppPasswords('a@x')).map((p) => p.id)).toEqual(['p1', 'p2']);
    expect(await store.listAppPasswords()).toHaveLength(3);
    await store.touchAppPassword('p1', 99);
    expect((await store.listAppPasswords('a@x'))[0]).toEqual({
      id: 'p1',
      accountId: 'a@x',
      label: 'phone',
      hash: 'h1',
      createdAt: 1,
      lastUsedAt: 99,
    });
    expect(await store.removeAppPassword('a@x', 'phone')).toBe(true);
    expect(await store.removeAppPassword('a@x', 'phone')).toBe(false);
    expect(await store.removeAppPassword('b@x', 'p2')).toBe(false); // another account's id
    expect(await store.removeAppPassword('a@x', 'p2')).toBe(true);
    expect(await store.listAppPasswords('b@x')).toHaveLength(1);
    await store.close();
  });

  it('stores consent links and spends each once', async () => {
    const store = open();
    const link = { tokenHash: 'abc', accountId: 'a@x', username: 'a@x', createdAt: 1, expiresAt: 5 };
    await store.addConsentLink(link);
    expect(await store.getConsentLink('abc')).toEqual(link);
    expect(await store.useConsentLink('abc', 3)).toBe(true);
    expect(await store.useConsentLink('abc', 4)).toBe(false);
    expect(await store.getConsentLink('abc')).toEqual({ ...link, usedAt: 3 });
    expect(await store.getConsentLink('nope')).toBeUndefined();
    expect(await store.useConsentLink('nope', 4)).toBe(false);
    await store.close();
  });
});
