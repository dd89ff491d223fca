import { describe, expect, it } from 'vitest';
import { CredentialCache } from '../../../src/credentials/credential-cache.js';

describe('CredentialCache', () => {
  it('remembers a verified credential until the TTL passes', () => {
    let now = 1_000;
    const cache = new CredentialCache({ ttlMs: 60_000, now: () => now });
    expect(cache.has('a@x.com', 'pw', 'H')).toBe(false);
    cache.remember('a@x.com', 'pw', 'H');
    expect(cache.has('a@x.com', 'pw', 'H')).toBe(true);
    expect(cache.has('A@X.com', 'pw', 'H')).toBe(true);
    now += 59_999;
    expect(cache.has('a@x.com', 'pw', 'H')).toBe(true);
    now += 2;
    expect(cache.has('a@x.com', 'pw', 'H')).toBe(false);
  });

  it('is keyed on username, password and stored hash', () => {
    const cache = new CredentialCache({ ttlMs: 60_000 });
    cache.remember('a@x.com', 'pw', 'H1');
    expect(cache.has('a@x.com', 'pw', 'H2')).toBe(false);
    expect(cache.has('a@x.com', 'pw2', 'H1')).toBe(false);
    expect(cache.has('b@x.com', 'pw', 'H1')).toBe(false);
    // no ambiguity from concatenation
    cache.remember('a', 'b\0c', 'H');
    expect(cache.has('a\0b', 'c', 'H')).toBe(false);
  });

  it('is off with a TTL of 0', () => {
    const cache = new CredentialCache({ ttlMs: 0 });
    cache.remember('a@x.com', 'pw', 'H');
    expect(cache.has('a@x.com', 'pw', 'H')).toBe(false);
  });

  it('is bounded', () => {
    const cache = new CredentialCache({ ttlMs: 60_000, max: 2 });
    cache.remember('a', 'pw', 'H');
    cache.remember('b', 'pw', 'H');
    cache.remember('c', 'pw', 'H');
    expect(cache.has('a', 'pw', 'H')).toBe(false);
    expect(cache.has('c', 'pw', 'H')).toBe(true);
  });

  it('clear() forgets everything', () => {
    const cache = new CredentialCache({ ttlMs: 60_000 });
    cache.remember('a', 'pw', 'H');
    cache.clear();
    expect(cache.has('a', 'pw', 'H')).toBe(false);
  });
});
