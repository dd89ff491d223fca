import { describe, expect, it } from 'vitest';
import { LoginLimiter, addressKey } from '../../../src/credentials/login-limiter.js';
import { DEFAULTS } from '../../../src/config/defaults.js';
import type { LoginLimiterSettings } from '../../../src/config/types.js';

const SETTINGS: LoginLimiterSettings = {
  freeFailures: 2,
  baseDelayMs: 1_000,
  maxDelayMs: 5_000,
  lockAfter: 6,
  addressLockAfter: 12,
  lockMs: 60_000,
  windowMs: 120_000,
};

function setup(settings = SETTINGS) {
  const clock = { now: 0 };
  const limiter = new LoginLimiter(settings, { now: () => clock.now });
  return { clock, limiter };
}

const A = { remoteAddress: '192.0.2.1', username: 'alice@example.com' };

describe('LoginLimiter', () => {
  it('free failures cost nothing, then the delay doubles up to the cap', () => {
    const { limiter } = setup({ ...SETTINGS, lockAfter: 100 });
    const delays = Array.from({ length: 7 }, () => limiter.fail(A));
    expect(delays).toEqual([0, 0, 1_000, 2_000, 4_000, 5_000, 5_000]);
  });

  it('locks after lockAfter failures, then unlocks when the lock expires', () => {
    const { clock, limiter } = setup();
    for (let i = 0; i < 5; i++) limiter.fail(A);
    expect(limiter.status(A)).toEqual({ locked: false, retryAfterMs: 0 });
    limiter.fail(A);
    expect(limiter.status(A)).toEqual({ locked: true, retryAfterMs: 60_000 });
    clock.now += 59_999;
    expect(limiter.status(A).locked).toBe(true);
    clock.now += 1;
    expect(limiter.status(A).locked).toBe(false);
    // after a lock the pair's count starts again
    limiter.fail(A);
    expect(limiter.failures(A).pair).toBe(1);
  });

  it('locks per address after addressLockAfter failures, whatever the usernames', () => {
    const { limiter } = setup();
    for (let i = 0; i < 11; i++) limiter.fail({ ...A, username: `u${i}@example.com` });
    expect(limiter.status({ ...A, username: 'new@example.com' }).locked).toBe(false);
    limiter.fail({ ...A, username: 'u11@example.com' });
    expect(limiter.status({ ...A, username: 'new@example.com' }).locked).toBe(true);
    expect(limiter.status({ remoteAddress: '192.0.2.2', username: 'new@example.com' }).locked).toBe(false);
  });

  it('never locks a username by itself: guesses from many addresses only delay, up to maxDelay', () => {
    const { limiter } = setup();
    const delays: number[] = [];
    for (let i = 0; i < 200; i++) delays.push(limiter.fail({ ...A, remoteAddress: `198.51.100.${i}` }));
    expect(Math.max(...delays)).toBe(SETTINGS.maxDelayMs);
    expect(limiter.status({ remoteAddress: '203.0.113.9', username: 'ALICE@example.com' })).toEqual({
      locked: false,
      retryAfterMs: 0,
    });
    // the counter of a never-locked key stays small in memory
    expect(
      limiter.failures({ remoteAddress: '203.0.113.9', username: 'alice@example.com' }).username,
    ).toBeLessThan(100);
  });

  it('the default delays stay within Dovecot-like seconds, and locks come from the pair', () => {
    const limiter = new LoginLimiter(DEFAULTS.settings.loginLimiter, { now: () => 0 });
    const delays = Array.from({ length: 9 }, () => limiter.fail(A));
    expect(Math.max(...delays)).toBeLessThanOrEqual(2_000);
    expect(limiter.status(A).locked).toBe(false);
    limiter.fail(A);
    expect(limiter.status(A).locked).toBe(true);
    expect(limiter.status({ ...A, remoteAddress: '192.0.2.77' }).locked).toBe(false);
  });

  it('forgets failures older than the window', () => {
    const { clock, limiter } = setup();
    for (let i = 0; i < 5; i++) limiter.fail(A);
    expect(limiter.failures(A)).toEqual({ address: 5, username: 5, pair: 5 });
    clock.now += 120_001;
    expect(limiter.failures(A)).toEqual({ address: 0, username: 0, pair: 0 });
    expect(limiter.fail(A)).toBe(0);
    expect(limiter.status(A).locked).toBe(false);
  });

  it('a success resets the username and pair counters but not the address counter', () => {
    const { limiter } = setup();
    for (let i = 0; i < 4; i++) limiter.fail(A);
    limiter.succeed(A);
    expect(limiter.failures(A)).toEqual({ address: 4, username: 0, pair: 0 });
    // the address still carries its failures: the next one is delayed
    expect(limiter.fail({ ...A, username: 'bob@example.com' })).toBe(4_000);
  });

  it('keeps memory bounded', () => {
    const limiter = new LoginLimiter(SETTINGS, { maxKeys: 10 });
    for (let i = 0; i < 1000; i++)
      limiter.fail({ remoteAddress: `10.0.${i >> 8}.${i & 255}`, username: `u${i}` });
    expect(limiter.failures({ remoteAddress: '10.0.0.0', username: 'u0' })).toEqual({
      address: 0,
      username: 0,
      pair: 0,
    });
  });

  it('groups addresses sensibly', () => {
    expect(addressKey('192.0.2.1')).toBe('ip:192.0.2.1');
    expect(addressKey('::ffff:192.0.2.1')).toBe('ip:192.0.2.1');
    expect(addressKey('2001:db8:1:2:3:4:5:6')).toBe('ip:2001:db8:1:2::/64');
    expect(addressKey('2001:db8:1:2::7')).toBe('ip:2001:db8:1:2::/64');
    expect(addressKey('2001:0db8::1')).toBe('ip:2001:db8:0:0::/64');
    expect(addressKey('::1')).toBe('ip:0:0:0:0::/64');
  });
});
