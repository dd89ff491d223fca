import { describe, expect, it } from 'vitest';
import { MAX_RETRY_AFTER_SECONDS } from '../../../src/graph/limits.js';
import { parseRetryAfter } from '../../../src/graph/retry-after.js';

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-12-06T12:00:00Z');

  it('reads delay-seconds', () => {
    expect(parseRetryAfter('30', now)).toBe(30);
    expect(parseRetryAfter(' 7 ', now)).toBe(7);
  });

  it('reads an HTTP-date, rounding up to whole seconds', () => {
    expect(parseRetryAfter('Sun, 06 Dec 2026 12:00:45 GMT', now)).toBe(45);
    expect(parseRetryAfter(new Date(now + 1500).toUTCString(), now + 600)).toBe(1);
  });

  it('waits at least a second: 0 or a date in the past', () => {
    expect(parseRetryAfter('0', now)).toBe(1);
    expect(parseRetryAfter('Sun, 06 Dec 2026 11:00:00 GMT', now)).toBe(1);
  });

  it('caps absurd waits', () => {
    expect(parseRetryAfter('999999', now)).toBe(MAX_RETRY_AFTER_SECONDS);
    expect(parseRetryAfter('Fri, 01 Jan 2100 00:00:00 GMT', now)).toBe(MAX_RETRY_AFTER_SECONDS);
  });

  it('ignores what it cannot read', () => {
    for (const v of [null, undefined, '', 'soon', '-5', '1.5', '12abc'])
      expect(parseRetryAfter(v, now)).toBeUndefined();
  });
});
