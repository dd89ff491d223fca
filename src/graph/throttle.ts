/**
 * What Graph told us about throttling, per mailbox, shared by every session: after a 429 or 503 with
 * Retry-After, a new attempt for that mailbox before the time is up is answered 451 at once instead
 * of spending a request that Graph would refuse again (and that counts against the mailbox's quota).
 * Bounded: the least recently throttled mailboxes are forgotten first, and entries expire with their
 * time.
 */
import { LRUCache } from 'lru-cache';
import { THROTTLE_MAX_MAILBOXES } from './limits.js';

export interface GraphThrottleOptions {
  /** Mailboxes remembered at once (default THROTTLE_MAX_MAILBOXES). */
  maxMailboxes?: number;
  /** Clock in ms (tests). */
  now?: () => number;
}

export class GraphThrottle {
  private readonly notBefore: LRUCache<string, number>;
  private readonly now: () => number;

  constructor(options: GraphThrottleOptions = {}) {
    this.now = options.now ?? Date.now;
    this.notBefore = new LRUCache<string, number>({ max: options.maxMailboxes ?? THROTTLE_MAX_MAILBOXES });
  }

  /** Graph asked this mailbox to wait `seconds`; a later, longer wait wins over a shorter one. */
  record(mailbox: string, seconds: number): void {
    const key = mailbox.toLowerCase();
    const until = this.now() + seconds * 1000;
    const known = this.notBefore.peek(key);
    if (known !== undefined && known > until) return;
    this.notBefore.set(key, until);
  }

  /** Whole seconds this mailbox must still wait, or undefined when it may send now. */
  remainingSeconds(mailbox: string): number | undefined {
    const key = mailbox.toLowerCase();
    // peek: asking does not make a mailbox "recent"; only being throttled does.
    const until = this.notBefore.peek(key);
    if (until === undefined) return undefined;
    const left = until - this.now();
    if (left <= 0) {
      this.notBefore.delete(key);
      return undefined;
    }
    return Math.ceil(left / 1000);
  }

  /** Mailboxes currently remembered (expired ones included until asked about or evicted). */
  get size(): number {
    return this.notBefore.size;
  }
}
