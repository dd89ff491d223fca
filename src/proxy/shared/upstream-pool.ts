/**
 * Warm upstream connections: connected, TLS-verified and greeted (IMAP: capabilities read; SMTP:
 * EHLO, STARTTLS, EHLO done; POP3: greeting, STLS) before a login needs them, so a login through the
 * proxy pays only the AUTHENTICATE round trip where a client connecting itself pays five or six.
 *
 * Polite by construction, because the pre-auth connections belong to someone else's server:
 * - Each warm connection is used once, by one login, and is checked first: the upstream must not have
 *   closed it, sent anything, or kept it longer than `maxIdleMs` (servers cut pre-auth connections
 *   after a minute or so; see docs/performance.md for the default).
 * - The pool grows only with the login rate: after a login, a key keeps as many warm connections as it
 *   had logins in the `maxIdleMs` before that one (capped at `maxPerHost`). One login every 30 s with a
 *   20 s idle age keeps none (the warm one would expire unused); ten a minute keep three or four.
 *   Nothing is opened except right after a login, so without logins a key drains to zero within
 *   `maxIdleMs`.
 * - A connect that fails (warm or for a login) closes the key's warm connections and stops refills for
 *   a backoff that doubles up to five minutes; the next successful connect ends it.
 *
 * Keyed by everything that makes two logins' pre-auth dialogues identical: protocol, host, port, TLS
 * mode, the connection's extra CA (the verification differs with it; SNI is the host) and, for SMTP,
 * the client's EHLO name (passed on upstream for its Received: header, so a warm connection can only
 * serve a client that says the same name).
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { UpstreamServer } from '../../config/types.js';
import type { UpstreamConnection } from './upstream.js';

export interface UpstreamPoolSettings {
  /** false: every login connects anew, and the pool never opens a connection. */
  enabled: boolean;
  /** Most warm connections per key (protocol, host, port, TLS, CA, SMTP EHLO name). */
  maxPerHost: number;
  /** A warm connection older than this is closed unused. */
  maxIdleMs: number;
}

/** What identifies one pre-auth dialogue. */
export interface PoolKey {
  protocol: 'imap' | 'smtp' | 'pop3';
  server: UpstreamServer;
  ca?: string | undefined;
  /** SMTP: the EHLO name the dialogue sends. */
  heloName?: string;
}

/** A protocol's greeted upstream, before its AUTHENTICATE. */
export interface Warmable {
  conn: UpstreamConnection;
}

/** A warm connection is not handed out this close to its idle age (the server may be about to cut it). */
const EXPIRY_MARGIN_MS = 1_000;
const FIRST_BACKOFF_MS = 5_000;
const MAX_BACKOFF_MS = 5 * 60_000;
/** Distinct keys at most (SMTP EHLO names come from clients); past this, logins just connect. */
const MAX_KEYS = 256;

interface WarmEntry {
  value: Warmable;
  since: number;
  /** Stops watching the idle connection (its listeners and expiry timer). */
  unwatch(): void;
}

interface HostState {
  idle: WarmEntry[];
  connecting: number;
  /** Login times within the last `maxIdleMs`, oldest first. */
  logins: number[];
  backoff: { until: number; delayMs: number } | undefined;
}

export interface PoolStats {
  idle: number;
  connecting: number;
  /** Whether refills are suspended after a failed connect. */
  backingOff: boolean;
}

export class UpstreamPool {
  #settings: UpstreamPoolSettings;
  readonly #logger: Logger | undefined;
  readonly #now: () => number;
  readonly #hosts = new Map<string, HostState>();
  readonly #stop = new AbortController();
  #hits = 0;
  #misses = 0;

  constructor(options: { settings: UpstreamPoolSettings; logger?: Logger; now?: () => number }) {
    this.#settings = options.settings;
    this.#logger = options.logger;
    this.#now = options.now ?? Date.now;
  }

  /** New limits (reload). Turning the pool off closes every warm connection now. */
  configure(settings: UpstreamPoolSettings): void {
    this.#settings = settings;
    if (!settings.enabled) this.#clear();
  }

  /**
   * An upstream for one login: a warm one for `key` if there is a usable one, else `prepare(signal)`
   * (what the login would have done anyway). Either way the key may refill in the background.
   * `prepare` must build the same dialogue for the same key: the value is handed back as its type.
   */
  async acquire<U extends Warmable>(
    key: PoolKey,
    prepare: (signal: AbortSignal) => Promise<U>,
    signal: AbortSignal,
  ): Promise<U> {
    if (!this.#settings.enabled || this.#stop.signal.aborted) return prepare(signal);
    const name = keyName(key);
    const host = this.#host(name);
    if (!host) return prepare(signal);
    const now = this.#now();
    host.logins = host.logins.filter((t) => now - t < this.#settings.maxIdleMs);
    const recent = host.logins.length;
    host.logins.push(now);
    const warm = this.#take(host, now);
    if (warm) {
      this.#hits += 1;
      this.#refill(name, host, recent, prepare);
      return warm as U;
    }
    this.#misses += 1;
    this.#refill(name, host, recent, prepare);
    try {
      const value = await prepare(signal);
      host.backoff = undefined;
      return value;
    } catch (err) {
      if (!signal.aborted) this.#failing(name, host);
      throw err;
    }
  }

  /** Counts for tests, the bench and log lines. */
  stats(key?: PoolKey): PoolStats & { hits: number; misses: number } {
    const hosts = key
      ? [this.#hosts.get(keyName(key))].filter((h) => h !== undefined)
      : [...this.#hosts.values()];
    const now = this.#now();
    return {
      idle: hosts.reduce((n, h) => n + h.idle.length, 0),
      connecting: hosts.reduce((n, h) => n + h.connecting, 0),
      backingOff: hosts.some((h) => h.backoff !== undefined && now < h.backoff.until),
      hits: this.#hits,
      misses: this.#misses,
    };
  }

  /** Shutdown: closes every warm connection, aborts the connects in flight, opens nothing again. */
  close(): void {
    this.#stop.abort();
    this.#clear();
  }

  #clear(): void {
    for (const host of this.#hosts.values()) this.#closeIdle(host);
    this.#hosts.clear();
  }

  #host(name: string): HostState | undefined {
    let host = this.#hosts.get(name);
    if (host) return host;
    if (this.#hosts.size >= MAX_KEYS) this.#forgetQuiet();
    if (this.#hosts.size >= MAX_KEYS) return undefined;
    host = { idle: [], connecting: 0, logins: [], backoff: undefined };
    this.#hosts.set(name, host);
    return host;
  }

  /** Drops keys with nothing warm, nothing in flight, no recent login and no backoff to remember. */
  #forgetQuiet(): void {
    const now = this.#now();
    for (const [name, host] of this.#hosts) {
      const quiet = host.idle.length === 0 && host.connecting === 0;
      const recent = host.logins.some((t) => now - t < this.#settings.maxIdleMs);
      const backingOff = host.backoff !== undefined && now < host.backoff.until;
      if (quiet && !recent && !backingOff) this.#hosts.delete(name);
    }
  }

  /** The oldest usable warm connection (it is the nearest to its idle age); unusable ones are closed. */
  #take(host: HostState, now: number): Warmable | undefined {
    while (host.idle.length > 0) {
      const entry = host.idle.shift() as WarmEntry;
      entry.unwatch();
      const fresh = now - entry.since < this.#settings.maxIdleMs - EXPIRY_MARGIN_MS;
      if (fresh && entry.value.conn.untouched) return entry.value;
      entry.value.conn.close();
    }
    return undefined;
  }

  #refill<U extends Warmable>(
    name: string,
    host: HostState,
    target: number,
    prepare: (signal: AbortSignal) => Promise<U>,
  ): void {
    const now = this.#now();
    if (host.backoff && now < host.backoff.until) return;
    const wanted = Math.min(target, this.#settings.maxPerHost) - host.idle.length - host.connecting;
    for (let i = 0; i < wanted; i++) {
      host.connecting += 1;
      prepare(this.#stop.signal).then(
        (value) => {
          host.connecting -= 1;
          host.backoff = undefined;
          const room = this.#settings.maxPerHost - host.idle.length;
          if (
            !this.#settings.enabled ||
            this.#stop.signal.aborted ||
            room <= 0 ||
            this.#hosts.get(name) !== host
          ) {
            value.conn.close();
            return;
          }
          this.#keep(host, value);
        },
        (err: unknown) => {
          host.connecting -= 1;
          if (this.#stop.signal.aborted) return;
          this.#logger?.debug(
            { upstream: name, err: (err as Error).message },
            'warm upstream connect failed',
          );
          this.#failing(name, host);
        },
      );
    }
  }

  /** Parks a warm connection, watching for the server closing or talking, and for its idle age. */
  #keep(host: HostState, value: Warmable): void {
    const socket = value.conn.socket;
    const entry: WarmEntry = {
      value,
      since: this.#now(),
      unwatch: () => {
        socket.off('close', drop);
        socket.off('data', drop);
        clearTimeout(timer);
      },
    };
    // Before login a server speaks only to say goodbye (`* BYE`, `421`): never hand such a one out.
    const drop = (): void => {
      const i = host.idle.indexOf(entry);
      if (i >= 0) host.idle.splice(i, 1);
      entry.unwatch();
      value.conn.close();
    };
    const timer = setTimeout(drop, Math.max(0, this.#settings.maxIdleMs - EXPIRY_MARGIN_MS));
    timer.unref();
    socket.once('close', drop);
    socket.once('data', drop);
    host.idle.push(entry);
  }

  #failing(name: string, host: HostState): void {
    const delayMs = Math.min(host.backoff ? host.backoff.delayMs * 2 : FIRST_BACKOFF_MS, MAX_BACKOFF_MS);
    host.backoff = { until: this.#now() + delayMs, delayMs };
    this.#closeIdle(host);
    this.#logger?.debug(
      { upstream: name, backoffMs: delayMs },
      'upstream connect failed: no warm connections',
    );
  }

  #closeIdle(host: HostState): void {
    for (const entry of host.idle.splice(0)) {
      entry.unwatch();
      entry.value.conn.close();
    }
  }
}

function keyName(key: PoolKey): string {
  const { server } = key;
  const ca = key.ca ? createHash('sha256').update(key.ca).digest('hex').slice(0, 16) : '-';
  const helo = key.protocol === 'smtp' ? ` ehlo=${key.heloName ?? ''}` : '';
  return `${key.protocol} ${server.host}:${server.port} ${server.tls} ca=${ca}${helo}`;
}
