/**
 * Slows down and stops password guessing without letting anyone lock a user out. Failures are counted
 * for three keys: the client address, the username, and the pair of both. After `freeFailures` each
 * further failure on any key is answered after a delay that doubles up to `maxDelayMs` (a few seconds:
 * a mail client that waits longer reports a dead server, not a wrong password). Only the pair
 * (after `lockAfter` failures within `windowMs`) and the address (after `addressLockAfter`) are
 * locked for `lockMs`; a locked attempt fails without the password being checked. The username alone
 * is never locked: that would let anyone keep a user's mail programs out by guessing from elsewhere,
 * and a right password is never delayed, so the user logs in at once from an address without locks.
 * A success resets the counters of the username and of the pair, not the address's (one good account
 * must not launder guesses at others).
 * Memory is bounded: least recently seen keys are dropped.
 */
import { isIPv6 } from 'node:net';
import { LRUCache } from 'lru-cache';
import type { LoginLimiterSettings } from '../config/types.js';

export interface LimiterKeys {
  remoteAddress: string;
  username: string;
}

interface KeyState {
  /** Failure times within the window, oldest first (bounded, see `fail`). */
  failures: number[];
  lockedUntil: number;
}

type KeyKind = 'address' | 'username' | 'pair';

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

  private keysOf(keys: LimiterKeys): Record<KeyKind, string> {
    const address = addressKey(keys.remoteAddress);
    const username = `user:${keys.username.trim().toLowerCase()}`;
    // JSON keeps the two parts apart whatever characters the username holds.
    return { address, username, pair: `pair:${JSON.stringify([address, username])}` };
  }

  /** Failures after which a key is locked; the username alone never is. */
  private lockAfter(kind: KeyKind): number {
    if (kind === 'pair') return this.settings.lockAfter;
    if (kind === 'address') return this.settings.addressLockAfter;
    return Number.POSITIVE_INFINITY;
  }

  /** Is the address, or this username from this address, locked right now? */
  status(keys: LimiterKeys): LockStatus {
    const now = this.now();
    const k = this.keysOf(keys);
    let retryAfterMs = 0;
    for (const key of [k.address, k.pair]) {
      const state = this.states.get(key);
      if (state && state.lockedUntil > now) retryAfterMs = Math.max(retryAfterMs, state.lockedUntil - now);
    }
    return { locked: retryAfterMs > 0, retryAfterMs };
  }

  /** Records a failure; returns how long to wait before answering (at most maxDelayMs). */
  fail(keys: LimiterKeys): number {
    const now = this.now();
    const s = this.settings;
    let delay = 0;
    for (const [kind, key] of Object.entries(this.keysOf(keys)) as [KeyKind, string][]) {
      const state = this.states.get(key) ?? { failures: [], lockedUntil: 0 };
      state.failures = state.failures.filter((t) => t > now - s.windowMs);
      state.failures.push(now);
      // The username is never locked, so nothing empties its list: past the point where the delay stops
      // growing, older failures change nothing and are dropped (locked keys empty theirs at the lock).
      const keep = s.freeFailures + 32;
      if (kind === 'username' && state.failures.length > keep)
        state.failures.splice(0, state.failures.length - keep);
      const count = state.failures.length;
      if (count > s.freeFailures) {
        delay = Math.max(
          delay,
          Math.min(s.maxDelayMs, s.baseDelayMs * 2 ** Math.min(30, count - s.freeFailures - 1)),
        );
      }
      if (count >= this.lockAfter(kind)) {
        state.lockedUntil = now + s.lockMs;
        state.failures = [];
      }
      this.states.set(key, state);
    }
    return delay;
  }

  /** A successful login: forget the username's failures (from everywhere and from this address). */
  succeed(keys: LimiterKeys): void {
    const k = this.keysOf(keys);
    this.states.delete(k.username);
    this.states.delete(k.pair);
  }

  /** Number of failures currently counted for each key (for tests and status pages). */
  failures(keys: LimiterKeys): { address: number; username: number; pair: number } {
    const now = this.now();
    const k = this.keysOf(keys);
    const count = (key: string): number =>
      this.states.get(key)?.failures.filter((t) => t > now - this.settings.windowMs).length ?? 0;
    return { address: count(k.address), username: count(k.username), pair: count(k.pair) };
  }
}
