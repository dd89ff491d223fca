import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore } from '../../../src/store/index.js';

const run = promisify(execFile);
const WRITER = fileURLToPath(new URL('./fixtures/store-writer.ts', import.meta.url));

function child(path: string, keyFile: string, ...args: string[]) {
  const env = { ...process.env };
  delete env.XOAUTH_PROXY_KEY;
  return run(process.execPath, ['--import', 'tsx', WRITER, path, keyFile, ...args], { env, timeout: 60_000 });
}

let dir: string;
let settings: { path: string; keyFile: string };
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'xoauth-store-proc-'));
  settings = { path: join(dir, 'tokens.db'), keyFile: join(dir, 'store.key') };
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('token store across processes', () => {
  it('a store written by one process is read by another', async () => {
    await child(settings.path, settings.keyFile, 'put', 'alice@example.com', 'rt-from-child');
    const store = await openStore(settings, { env: {} });
    expect(await store.getToken('alice@example.com')).toMatchObject({
      refreshToken: 'rt-from-child',
      state: 'active',
    });
    await store.putToken({ ...(await store.getToken('alice@example.com'))!, refreshToken: 'rt-from-parent' });
    const { stdout } = await child(settings.path, settings.keyFile, 'get', 'alice@example.com');
    expect(JSON.parse(stdout)).toMatchObject({ refreshToken: 'rt-from-parent' });
    await store.close();
  });

  it('two processes starting a fresh store at once agree on one key', async () => {
    await Promise.all([
      child(settings.path, settings.keyFile, 'put', 'a@example.com', 'rt-a'),
      child(settings.path, settings.keyFile, 'put', 'b@example.com', 'rt-b'),
      child(settings.path, settings.keyFile, 'put', 'c@example.com', 'rt-c'),
    ]);
    const store = await openStore(settings, { env: {} });
    expect((await store.listTokens()).map((r) => r.refreshToken)).toEqual(['rt-a', 'rt-b', 'rt-c']);
    await store.close();
  });

  it('concurrent read-modify-write from two processes and this one loses no update', async () => {
    const store = await openStore(settings, { env: {} });
    await store.putToken({
      accountId: 'n@example.com',
      connection: 'c',
      scopes: [],
      state: 'active',
      lastRefreshAt: 0,
      updatedAt: 0,
    });
    const perChild = 150;
    const children = [
      child(settings.path, settings.keyFile, 'increment', 'n@example.com', String(perChild)),
      child(settings.path, settings.keyFile, 'increment', 'n@example.com', String(perChild)),
    ];
    // Interleave our own writes while the children run.
    let ours = 0;
    const done = Promise.all(children);
    let settled = false;
    void done.finally(() => (settled = true));
    while (!settled && ours < 500) {
      await store.updateToken('n@example.com', (cur) => ({
        ...cur!,
        lastRefreshAt: (cur!.lastRefreshAt ?? 0) + 1,
      }));
      ours++;
      await new Promise((r) => setTimeout(r, 2));
    }
    await done;
    expect((await store.getToken('n@example.com'))?.lastRefreshAt).toBe(2 * perChild + ours);
    await store.close();
  });
});
