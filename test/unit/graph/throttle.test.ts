import { describe, expect, it } from 'vitest';
import { GraphThrottle } from '../../../src/graph/throttle.js';

describe('GraphThrottle', () => {
  it('remembers a wait per mailbox, case-insensitively, and forgets it when it has passed', () => {
    let now = 1_000_000;
    const t = new GraphThrottle({ now: () => now });
    t.record('Ann@Example.com', 30);
    expect(t.remainingSeconds('ann@example.com')).toBe(30);
    expect(t.remainingSeconds('bob@example.com')).toBeUndefined();
    now += 29_500;
    expect(t.remainingSeconds('ANN@example.com')).toBe(1);
    now += 500;
    expect(t.remainingSeconds('ann@example.com')).toBeUndefined();
    expect(t.size).toBe(0);
  });

  it('keeps the longer of two waits', () => {
    const now = 0;
    const t = new GraphThrottle({ now: () => now });
    t.record('a@x', 60);
    t.record('a@x', 5);
    expect(t.remainingSeconds('a@x')).toBe(60);
    t.record('a@x', 120);
    expect(t.remainingSeconds('a@x')).toBe(120);
  });

  it('is bounded: past the cap the least recently throttled mailbox is forgotten', () => {
    const t = new GraphThrottle({ maxMailboxes: 3, now: () => 0 });
    for (const m of ['a', 'b', 'c', 'd']) t.record(`${m}@x`, 60);
    expect(t.size).toBe(3);
    expect(t.remainingSeconds('a@x')).toBeUndefined();
    expect(t.remainingSeconds('d@x')).toBe(60);
  });
});
