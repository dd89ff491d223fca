/**
 * Slows down password guessing: failures are counted per client address and per username. After
 * `freeFailures` each further failure is answered after a delay that doubles up to `maxDelayMs`; after
 * `lockAfter` failures within `windowMs` the key is locked for `lockMs` and attempts fail without the
 * password even being checked. A success resets the username's counter (not the address's, so one good
 * account does not launder guesses at others). Memory is bounded: least recently seen keys are dropped.
 */
import { isIPv6 } from 'node:net';
import { LRUCache } from 'lru-cache';
import type { LoginLimiterSettings } from '../config/types.js';

export interface LimiterKeys {
  remoteAddress: string;
  username: string;
}

interface KeyState {
  /** Failure times within the window, oldest first (at most lockAfter entries). */
  failures: number[];
  lockedUntil: number;
}

export interface LockStatus {
  locked: boolean;
  /** How long until the longest lock ends (0 when not locked). */
  retryAfterMs: number;
}

/** IPv4-mapped addresses count as IPv4; IPv6 clients are grouped by /64, since one host owns a /64. */
export function addressKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return `ip:${mapped[1]}`;
  if (isIPv6(address)) {
    const [head = ''] = address.toLowerCase().split('%');
    const [left = '', right] = head.split('::');
    const groups = left === '' ? [] : left.split(':');
    if (right !== undefined) {
      const tail = right === '' ? [] : right.split(':');
      while (groups.length + tail.length < 8) groups.push('0');
      groups.push(...tail);
    }
    return `ip:${groups
      .slice(0, 4)
      .map((g) => g.replace(/^0+(?=.)/, ''))
      .join(':')}::/64`;
  }
  return `ip:${address}`;
}

export class LoginLimiter {
  private readonly states: LRUCache<string, KeyState>;
  private readonly now: () => number;

  constructor(
    private readonly settings: LoginLimiterSettings,
    options: { now?: () => number; maxKeys?: number } = {},
  ) {
    this.now = options.now ?? Date.now;
    this.states = new LRUCache<string, KeyState>({ max: options.maxKeys ?? 50_000 });
  }

  private keysOf(keys: LimiterKeys): string[] {
    return [addressKey(keys.remoteAddress), `user:${keys.username.trim().toLowerCase()}`];
  }

  /** Is the address or the username locked right now? */
  status(keys: LimiterKeys): LockStatus {
    const now = this.now();
    let retryAfterMs = 0;
    for (const key of this.keysOf(keys)) {
      const state = this.states.get(key);
      if (state && state.lockedUntil > now) retryAfterMs = Math.max(retryAfterMs, state.lockedUntil - now);
    }
    return { locked: retryAfterMs > 0, retryAfterMs };
  }

  /** Records a failure; returns how long to wait before answering. */
  fail(keys: LimiterKeys): number {
    const now = this.now();
    const s = this.settings;
    let delay = 0;
    for (const key of this.keysOf(keys)) {
      const state = this.states.get(key) ?? { failures: [], lockedUntil: 0 };
      state.failures = state.failures.filter((t) => t > now - s.windowMs);
      state.failures.push(now);
      const count = state.failures.length;
      if (count > s.freeFailures) {
        delay = Math.max(
          delay,
          Math.min(s.maxDelayMs, s.baseDelayMs * 2 ** Math.min(30, count - s.freeFailures - 1)),
        );
      }
      if (count >= s.lockAfter) {
        state.lockedUntil = now + s.lockMs;
        state.failures = [];
      }
      this.states.set(key, state);
    }
    return delay;
  }

  /** A successful login: forget the username's failures. */
  succeed(keys: LimiterKeys): void {
    const [, userKey] = this.keysOf(keys);
    if (userKey !== undefined) this.states.delete(userKey);
  }

  /** Number of failures currently counted for a key (for tests and status pages). */
  failures(keys: LimiterKeys): { address: number; username: number } {
    const now = this.now();
    const [a, u] = this.keysOf(keys).map(
      (k) => this.states.get(k)?.failures.filter((t) => t > now - this.settings.windowMs).length ?? 0,
    );
    return { address: a ?? 0, username: u ?? 0 };
  }
}
