import { describe, expect, it } from 'vitest';
import { hashPassword, isPasswordHash, verifyPassword } from '../../../src/credentials/password.js';
import { isProxyError } from '../../../src/errors.js';

const FAST = { ln: 10, r: 8, p: 1 };

describe('password hashes', () => {
  it('hashes with the default cost and verifies', async () => {
    const hash = await hashPassword('correct horse');
    expect(hash).toMatch(/^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    expect(isPasswordHash(hash)).toBe(true);
    await expect(verifyPassword('correct horse', hash)).resolves.toBe(true);
    await expect(verifyPassword('correct horsE', hash)).resolves.toBe(false);
  });

  it('salts: the same password hashes differently each time', async () => {
    const [a, b] = await Promise.all([hashPassword('pw', FAST), hashPassword('pw', FAST)]);
    expect(a).not.toBe(b);
    await expect(verifyPassword('pw', a)).resolves.toBe(true);
    await expect(verifyPassword('pw', b)).resolves.toBe(true);
  });

  it('verifies with the parameters stored in the hash', async () => {
    const hash = await hashPassword('pw', FAST);
    expect(hash.startsWith('$scrypt$ln=10,r=8,p=1$')).toBe(true);
    await expect(verifyPassword('pw', hash)).resolves.toBe(true);
  });

  it('treats unicode normalization forms as the same password', async () => {
    const hash = await hashPassword('caf\u00e9', FAST);
    await expect(verifyPassword('cafe\u0301', hash)).resolves.toBe(true);
  });

  it.each([
    'hunter2',
    '',
    '$scrypt$ln=15,r=8,p=1$c2FsdHNhbHQ',
    '$scrypt$ln=15,r=8,p=1$$aGFzaGhhc2hoYXNoaGFzaA',
    '$scrypt$ln=9,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA',
    '$scrypt$ln=21,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA',
    '$scrypt$ln=15,r=0,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA',
    '$scrypt$ln=15,r=8,p=1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA',
    '$2b$10$abcdefghijklmnopqrstuv1234567890123456789012345678901',
    '$scrypt$ln=15,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA ',
  ])('rejects the malformed hash %j clearly', async (bad) => {
    expect(isPasswordHash(bad)).toBe(false);
    const err = await verifyPassword('pw', bad).catch((e: unknown) => e);
    expect(isProxyError(err, 'config')).toBe(true);
    expect((err as Error).message).toBe(
      'not a password hash (expected $scrypt$ln=<n>,r=<n>,p=<n>$<salt>$<hash>); create one with `xoauth-proxy hash-password`',
    );
  });

  it('accepts a well-formed hash of the right shape', () => {
    expect(isPasswordHash('$scrypt$ln=15,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA')).toBe(true);
  });

  it('refuses to create hashes with out-of-range parameters', async () => {
    await expect(hashPassword('pw', { ln: 4, r: 8, p: 1 })).rejects.toThrow(RangeError);
  });
});
