import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

// fsync is what makes a new key durable; the test watches the calls through a pass-through mock.
vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  return { ...real, fsyncSync: vi.fn(real.fsyncSync) };
});

const { loadStoreKey } = await import('../../../src/store/key.js');

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'xoauth-key-'));
  vi.mocked(fs.fsyncSync).mockClear();
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('store key file', () => {
  it('syncs the new key file and its directory before the key is used', () => {
    const keyFile = join(dir, 'sub', 'store.key');
    const { created, key } = loadStoreKey(keyFile, {});
    expect(created).toBe(true);
    expect(Buffer.from(readFileSync(keyFile, 'utf8').trim(), 'base64').equals(key)).toBe(true);
    // One fsync for the file's contents, one for the directory entry that names it.
    expect(vi.mocked(fs.fsyncSync).mock.calls.length).toBeGreaterThanOrEqual(2);
  });

  it('an empty key file is an error that says what happened, and no new key replaces it', () => {
    const keyFile = join(dir, 'store.key');
    writeFileSync(keyFile, '', { mode: 0o600 });
    expect(() => loadStoreKey(keyFile, {})).toThrow(/key file .* is empty.*No new key was made/s);
    expect(readFileSync(keyFile, 'utf8')).toBe('');
  });
});
