import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decryptSecret, DecryptError, encryptSecret } from '../../../src/store/cipher.js';
import { parseKey } from '../../../src/store/key.js';

const key = randomBytes(32);

describe('secret encryption', () => {
  it('round-trips and uses a fresh IV every time', () => {
    const a = encryptSecret(key, 'refresh-token-value', 'acct');
    const b = encryptSecret(key, 'refresh-token-value', 'acct');
    expect(a).not.toBe(b);
    expect(a).toMatch(/^v1\.[A-Za-z0-9_-]+$/);
    expect(decryptSecret(key, a, 'acct')).toBe('refresh-token-value');
  });

  it('refuses another key, another AAD (row or field swap) and tampering', () => {
    const sealed = encryptSecret(key, 'secret', 'refresh:alice');
    expect(() => decryptSecret(randomBytes(32), sealed, 'refresh:alice')).toThrow(DecryptError);
    expect(() => decryptSecret(key, sealed, 'refresh:bob')).toThrow(DecryptError);
    const raw = Buffer.from(sealed.slice(3), 'base64url');
    raw[raw.length - 1]! ^= 1;
    expect(() => decryptSecret(key, `v1.${raw.toString('base64url')}`, 'refresh:alice')).toThrow(
      DecryptError,
    );
    expect(() => decryptSecret(key, 'v2.abc', 'refresh:alice')).toThrow(DecryptError);
    expect(() => decryptSecret(key, 'v1.abc', 'refresh:alice')).toThrow(DecryptError);
  });

  it('parses base64 and base64url keys of exactly 32 bytes', () => {
    const k = randomBytes(32);
    expect(parseKey(`${k.toString('base64')}\n`, 'x')).toEqual(k);
    expect(parseKey(k.toString('base64url'), 'x')).toEqual(k);
    expect(() => parseKey(randomBytes(31).toString('base64'), 'x')).toThrow(/31 bytes/);
    expect(() => parseKey('', 'x')).toThrow(/malformed/);
    expect(() => parseKey('not base64!', 'x')).toThrow(/malformed/);
  });
});
