/**
 * Limits of consents in progress (kept in the store, keyed by the OAuth `state`: the PKCE verifier
 * never leaves the server, and the record is bound to the browser that started it; short-lived,
 * bounded in size, single use), and the bounded, expiring map that holds what stays in one process:
 * device-code sessions, whose poller runs where the button was pressed.
 */
export const PENDING_CONSENT_TTL_MS = 15 * 60_000;
/** Consents in progress kept at most (across all instances sharing a store). */
export const MAX_PENDING_CONSENTS = 1000;
const MAX_ENTRIES = 1000;

/**
 * A Map with a deadline per entry and a size cap (oldest out first). `onDrop` hears every entry that
 * leaves without being asked for (pushed out by the cap, or found expired), so a value that holds a
 * resource (a device-code poller) can release it.
 */
export class ExpiringMap<V extends { expiresAt: number }> {
  private readonly entries = new Map<string, V>();

  constructor(
    private readonly now: () => number,
    private readonly max = MAX_ENTRIES,
    private readonly onDrop?: (key: string, value: V) => void,
  ) {}

  set(key: string, value: V): void {
    this.prune();
    this.entries.delete(key);
    this.entries.set(key, value);
    while (this.entries.size > this.max) {
      const oldest = this.entries.entries().next().value;
      if (oldest === undefined) break;
      this.drop(oldest[0], oldest[1]);
    }
  }

  get(key: string): V | undefined {
    const v = this.entries.get(key);
    if (!v) return undefined;
    if (this.now() >= v.expiresAt) {
      this.drop(key, v);
      return undefined;
    }
    return v;
  }

  /** Get and remove: a state is only ever good for one callback. */
  take(key: string): V | undefined {
    const v = this.get(key);
    this.entries.delete(key);
    return v;
  }

  /** Removes an entry on purpose (onDrop is not called). */
  delete(key: string): boolean {
    return this.entries.delete(key);
  }

  /** Live entries as a snapshot, oldest first (expired ones are dropped on the way). */
  live(): Array<[string, V]> {
    this.prune();
    return [...this.entries];
  }

  values(): IterableIterator<V> {
    return this.entries.values();
  }

  get size(): number {
    return this.entries.size;
  }

  private prune(): void {
    const t = this.now();
    for (const [k, v] of this.entries) if (t >= v.expiresAt) this.drop(k, v);
  }

  private drop(key: string, value: V): void {
    this.entries.delete(key);
    this.onDrop?.(key, value);
  }
}
