/**
 * What the upstream mail servers support, learned per connection, so that a front can advertise it
 * before login. Clients decide from the list they get before AUTH and rarely ask again afterwards;
 * after AUTH the proxy is a byte pipe, so an extension of the upstream's (SMTP CHUNKING, POP3 UIDL)
 * works through it as long as the client heard of it in time.
 *
 * Knowledge comes from probes (connect with verified TLS, EHLO or CAPA, QUIT) at start, on reload and
 * every few hours, and from the EHLO every SMTP login already sends (a POP3 login sends no CAPA, so
 * one through a connection still unknown starts a probe of it instead). A front never waits for any of
 * it: a session takes what is known when the client connects, and a connection nothing is known about
 * yet makes the front fall back to its fixed list.
 *
 * Which connections a listener reaches: every connection that a configured account (pattern accounts
 * included) names and that has a server for the listener's protocol. Accounts are not bound to
 * listeners, so all listeners of one protocol advertise the same. A connection without a server for
 * the protocol cannot be logged in to through that protocol and so does not narrow the list.
 */
import type { Logger } from 'pino';
import type { Config, ConnectionConfig, UpstreamServer } from '../../config/types.js';
import type { SessionRecord } from './types.js';

export type CapabilityProtocol = SessionRecord['protocol'];

/** What a front advertises besides its own items: the upstreams' common list, or its fixed one. */
export type Advertised = { kind: 'fallback' } | { kind: 'learned'; extensions: string[] };

export interface IntersectionRule {
  /** Upper-case keywords that are safe to advertise for the upstream: after login they pass through. */
  passThrough: ReadonlySet<string>;
  /** Keywords whose one numeric parameter is a limit (SMTP SIZE): the smallest wins; none or 0 is "no limit". */
  smallest?: ReadonlySet<string>;
}

interface Item {
  keyword: string;
  params: string;
}

function parseItem(line: string): Item | undefined {
  const words = line.trim().split(/\s+/);
  const keyword = words[0]?.toUpperCase() ?? '';
  if (keyword === '') return undefined;
  return { keyword, params: words.slice(1).join(' ') };
}

/** First occurrence of each keyword; later duplicates say nothing new. */
function itemsOf(lines: readonly string[]): Map<string, string> {
  const items = new Map<string, string>();
  for (const line of lines) {
    const item = parseItem(line);
    if (item && !items.has(item.keyword)) items.set(item.keyword, item.params);
  }
  return items;
}

/** A limit parameter as a number of bytes; Infinity for "no fixed limit"; undefined when it is no number. */
function limitOf(params: string): number | undefined {
  if (params === '') return Infinity;
  if (!/^\d+$/.test(params)) return undefined;
  const n = Number(params);
  return n === 0 ? Infinity : n;
}

/**
 * The extensions every one of `lists` has, limited to the rule's pass-through keywords, in the first
 * list's order. A keyword with parameters is kept only when all lists give the same ones (a client
 * must not rely on a parameter one upstream does not honour), except for limits, where the smallest
 * is the one all upstreams accept. No lists, or any list unknown (`undefined`): the fallback.
 */
export function intersectExtensions(
  lists: ReadonlyArray<readonly string[] | undefined>,
  rule: IntersectionRule,
): Advertised {
  if (lists.length === 0 || lists.some((l) => l === undefined)) return { kind: 'fallback' };
  const parsed = (lists as ReadonlyArray<readonly string[]>).map(itemsOf);
  const [first, ...rest] = parsed;
  if (first === undefined) return { kind: 'fallback' };
  const extensions: string[] = [];
  for (const [keyword, params] of first) {
    if (!rule.passThrough.has(keyword)) continue;
    const others = rest.map((items) => items.get(keyword));
    if (others.some((p) => p === undefined)) continue;
    if (rule.smallest?.has(keyword)) {
      const limits = [params, ...(others as string[])].map(limitOf);
      if (limits.some((l) => l === undefined)) continue;
      const least = Math.min(...(limits as number[]));
      extensions.push(least === Infinity ? keyword : `${keyword} ${least}`);
      continue;
    }
    if (others.some((p) => p?.toUpperCase() !== params.toUpperCase())) continue;
    extensions.push(params === '' ? keyword : `${keyword} ${params}`);
  }
  return { kind: 'learned', extensions };
}

/** What the fronts need: the known lists of every reachable connection, and where logins report. */
export interface CapabilitySource {
  /** One entry per reachable connection: its known list, or undefined while nothing is known. */
  lists(protocol: CapabilityProtocol): Array<readonly string[] | undefined>;
  /**
   * A login through `connection` succeeded; `lines` is the list its dialogue saw, if it saw one.
   * Without one, a connection still unknown is probed in the background.
   */
  loggedIn(protocol: CapabilityProtocol, connection: ConnectionConfig, lines?: readonly string[]): void;
}

/** Connects to `server`, asks for its list (EHLO keywords, CAPA lines), says goodbye. */
export type CapabilityProbe = (
  connection: ConnectionConfig,
  server: UpstreamServer,
  signal: AbortSignal,
) => Promise<string[]>;

export interface UpstreamCapabilitiesOptions {
  /** The live configuration (a reload changes it in place). */
  config: Config;
  probes: Partial<Record<CapabilityProtocol, CapabilityProbe>>;
  logger: Logger;
  /** How often every reachable connection is probed again. */
  refreshIntervalMs?: number;
  /**
   * SMTP: the keywords the proxy's own mail transaction offers (connections that send through Graph).
   * A `send: graph` connection is known to support exactly these; a `send: auto` one may end either
   * way, so it counts with both its upstream's list and these.
   */
  localSmtp?: () => readonly string[];
}

/** Upstream lists change rarely (a provider rolls out an extension); a few hours is fresh enough. */
export const DEFAULT_REFRESH_INTERVAL_MS = 6 * 3600_000;

interface Knowledge {
  lines: readonly string[];
  learnedAt: number;
}

/** The in-memory cache of upstream lists, one per protocol and connection (and its server). */
export class UpstreamCapabilities implements CapabilitySource {
  readonly #config: Config;
  readonly #probes: Partial<Record<CapabilityProtocol, CapabilityProbe>>;
  readonly #logger: Logger;
  readonly #intervalMs: number;
  readonly #localSmtp: (() => readonly string[]) | undefined;
  /** Known lists by key (see `key`); absent: nothing known yet. */
  readonly #known = new Map<string, Knowledge>();
  readonly #inFlight = new Map<string, Promise<void>>();
  #timer: NodeJS.Timeout | undefined;
  #abort = new AbortController();

  constructor(options: UpstreamCapabilitiesOptions) {
    this.#config = options.config;
    this.#probes = options.probes;
    this.#logger = options.logger;
    this.#intervalMs = options.refreshIntervalMs ?? DEFAULT_REFRESH_INTERVAL_MS;
    this.#localSmtp = options.localSmtp;
  }

  /** The connections a listener of `protocol` reaches, each once, with its server for that protocol. */
  reachable(protocol: CapabilityProtocol): Array<{ connection: ConnectionConfig; server: UpstreamServer }> {
    const seen = new Map<string, { connection: ConnectionConfig; server: UpstreamServer }>();
    for (const account of this.#config.accounts) {
      const connection = this.#config.connections.get(account.connection);
      const server = connection?.[protocol];
      // A `send: graph` connection's SMTP server is never used, so never probed either.
      if (protocol === 'smtp' && connection?.send === 'graph' && this.#localSmtp) continue;
      if (connection && server && !seen.has(connection.name))
        seen.set(connection.name, { connection, server });
    }
    return [...seen.values()];
  }

  lists(protocol: CapabilityProtocol): Array<readonly string[] | undefined> {
    const lists: Array<readonly string[] | undefined> = this.reachable(protocol).map(
      ({ connection, server }) => this.#known.get(key(protocol, connection, server))?.lines,
    );
    const local = this.#localSmtp?.();
    if (protocol !== 'smtp' || !local) return lists;
    const sendsLocally = this.#config.accounts.some((a) => {
      const send = this.#config.connections.get(a.connection)?.send;
      return send === 'graph' || send === 'auto';
    });
    return sendsLocally ? [...lists, local] : lists;
  }

  /** The list learned for one connection, if any (for tests and the log). */
  known(protocol: CapabilityProtocol, connection: ConnectionConfig): readonly string[] | undefined {
    const server = connection[protocol];
    if (!server) return undefined;
    return this.#known.get(key(protocol, connection, server))?.lines;
  }

  learn(protocol: CapabilityProtocol, connection: ConnectionConfig, lines: readonly string[]): void {
    const server = connection[protocol];
    if (!server) return;
    this.#known.set(key(protocol, connection, server), { lines: [...lines], learnedAt: Date.now() });
  }

  loggedIn(protocol: CapabilityProtocol, connection: ConnectionConfig, lines?: readonly string[]): void {
    if (lines !== undefined) {
      this.learn(protocol, connection, lines);
      return;
    }
    const server = connection[protocol];
    if (!server) return;
    const k = key(protocol, connection, server);
    if (this.#known.has(k) || this.#inFlight.has(k)) return;
    void this.#probe(protocol, connection, server);
  }

  /** Probes every reachable connection of every protocol with a listener; never rejects. */
  async refresh(): Promise<void> {
    const work: Array<Promise<void>> = [];
    const live = new Set<string>();
    for (const protocol of Object.keys(this.#probes) as CapabilityProtocol[]) {
      if (this.#config.listen[protocol].length === 0) continue;
      for (const { connection, server } of this.reachable(protocol)) {
        live.add(key(protocol, connection, server));
        work.push(this.#probe(protocol, connection, server));
      }
    }
    // Connections a reload removed or pointed elsewhere are forgotten.
    for (const k of this.#known.keys()) if (!live.has(k)) this.#known.delete(k);
    await Promise.all(work);
  }

  /** The first probes now (not awaited), then one round every interval. */
  start(): void {
    void this.refresh();
    this.#timer = setInterval(() => void this.refresh(), this.#intervalMs);
    this.#timer.unref();
  }

  /** Stops the timer and aborts probes in flight. */
  stop(): void {
    clearInterval(this.#timer);
    this.#abort.abort();
    this.#abort = new AbortController();
  }

  #probe(protocol: CapabilityProtocol, connection: ConnectionConfig, server: UpstreamServer): Promise<void> {
    const probe = this.#probes[protocol];
    if (!probe) return Promise.resolve();
    const k = key(protocol, connection, server);
    const running = this.#inFlight.get(k);
    if (running) return running;
    const signal = this.#abort.signal;
    const done = probe(connection, server, signal).then(
      (lines) => {
        if (signal.aborted) return;
        this.#known.set(k, { lines, learnedAt: Date.now() });
        this.#logger.debug(
          { protocol, connection: connection.name, capabilities: lines },
          'upstream capabilities',
        );
      },
      (err: unknown) => {
        // What was known stays: an upstream briefly down has not lost its extensions.
        if (signal.aborted) return;
        this.#logger.warn(
          { protocol, connection: connection.name, err: err instanceof Error ? err.message : String(err) },
          'cannot learn the upstream capabilities; the fixed list is advertised until it is known',
        );
      },
    );
    const tracked = done.finally(() => this.#inFlight.delete(k));
    this.#inFlight.set(k, tracked);
    return tracked;
  }
}

function key(protocol: CapabilityProtocol, connection: ConnectionConfig, server: UpstreamServer): string {
  return `${protocol} ${connection.name} ${server.tls} ${server.host}:${server.port}`;
}
