/**
 * A TCP or TLS listener that hands every connection to a protocol's session factory and keeps track
 * of the live sessions so that `close()` can end them. Protocol-agnostic: IMAP, SMTP and POP3 use it.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { Server as TlsServer, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { AddressList } from '../../config/address-list.js';
import type { ListenerConfig } from '../../config/types.js';
import { addressKey } from '../../credentials/login-limiter.js';
import { readProxyHeader } from './proxy-header-reader.js';
import { serverHandshake } from './starttls.js';
import { createLocalSecureContext, localTlsOptions } from './tls-context.js';
import type { CloseOptions, ProxyServer, ProxySession, RefusalReason, SessionFactory } from './types.js';

/** An implicit-TLS client that has not finished its handshake by then is dropped. */
const TLS_HANDSHAKE_TIMEOUT_MS = 30_000;
/** How long close() waits for sessions to wind down before it stops waiting. */
const CLOSE_GRACE_MS = 5_000;
/** A refused client gets this long to read the "too busy" reply. */
const REFUSAL_GRACE_MS = 2_000;
/** A client outside allowFrom is logged once per address in this time, however often it retries. */
const NOT_ALLOWED_LOG_EVERY_MS = 60_000;
/**
 * A trusted balancer writes its PROXY header at once; a connection that has not sent one by then is
 * dropped, so half-open connections cannot pile up before the caps see them.
 */
const PROXY_HEADER_TIMEOUT_MS = 5_000;
/** Addresses remembered for that; beyond it the oldest is forgotten (a scan must not grow memory). */
const NOT_ALLOWED_LOG_MAX = 1_000;

/** Caps on concurrent connections; both optional (no cap). */
export interface ListenerCaps {
  /** All live sessions of this listener, logged in or not. */
  maxConnections?: number;
  /** Sessions not yet logged in from one address (IPv6 grouped by /64). */
  maxConnectionsPerAddress?: number;
  /** The protocol's short "too busy" reply (with CRLF), written before a refused socket is closed. */
  busyReply?: string;
  /** Told of every connection closed before a session (for the metrics). */
  onRefused?: (reason: RefusalReason) => void;
  /**
   * Keep our sending side open after the client shut down its own (SMTP scripts end their input after
   * QUIT and still read the replies); the session then ends the connection itself.
   */
  allowHalfOpen?: boolean;
}

export class ProxyListener implements ProxyServer {
  readonly #config: ListenerConfig;
  readonly #factory: SessionFactory;
  readonly #logger: Logger;
  readonly #secureContext: SecureContext | undefined;
  readonly #sessions = new Set<ProxySession>();
  /** The subset of #sessions that logged in and relay: a graceful close lets these run on. */
  readonly #relaying = new Set<ProxySession>();
  readonly #caps: ListenerCaps;
  /** Sessions not yet logged in, per addressKey. */
  readonly #preAuth = new Map<string, number>();
  #server: Server | undefined;
  #closing = false;
  readonly #allowFrom: AddressList | undefined;
  /** When each refused address was last logged. */
  readonly #notAllowedLogged = new Map<string, number>();
  /** Who may send a PROXY header; absent: the listener does not speak the PROXY protocol. */
  readonly #trustedProxies: AddressList | undefined;
  /** Connections still in their PROXY header or the TLS handshake after it, so close() can end them. */
  readonly #arriving = new Set<Socket>();

  constructor(config: ListenerConfig, factory: SessionFactory, logger: Logger, caps: ListenerCaps = {}) {
    this.#config = config;
    this.#factory = factory;
    this.#logger = logger;
    this.#caps = caps;
    this.#allowFrom = config.allowFrom ? new AddressList(config.allowFrom) : undefined;
    this.#trustedProxies = config.proxyProtocol
      ? new AddressList(config.proxyProtocol.trustedProxies)
      : undefined;
    // Build the TLS context up front so a bad cert fails at start, not at the first STARTTLS.
    this.#secureContext = config.tls === 'none' ? undefined : createLocalSecureContext(config);
  }

  /** Live sessions (pre-auth and relayed). */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  listen(): Promise<{ host: string; port: number }> {
    if (this.#server) throw new Error('listen() called twice');
    // Behind a balancer the PROXY header comes before the TLS handshake, so the listener takes the
    // bare TCP connection and starts TLS itself once the header is read.
    const tlsServer = this.#config.tls === 'implicit' && !this.#trustedProxies;
    const allowHalfOpen = this.#caps.allowHalfOpen === true;
    const server = tlsServer
      ? new TlsServer({
          ...localTlsOptions(this.#config),
          handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
          allowHalfOpen,
        })
      : createServer({ allowHalfOpen });
    if (this.#trustedProxies) {
      server.on('connection', (socket: Socket) => void this.#arrive(socket));
    } else {
      // allowFrom is checked on the bare TCP connection: a stranger gets no TLS handshake and no greeting.
      if (this.#allowFrom) server.on('connection', (socket: Socket) => this.#screen(socket));
      server.on(tlsServer ? 'secureConnection' : 'connection', (socket: Socket) => {
        if (!socket.destroyed) this.#accept(socket, peerOf(socket));
      });
    }
    // A failed client handshake is the client's problem; log it quietly and carry on.
    server.on('tlsClientError', (err: Error) =>
      this.#logger.debug({ err: err.message }, 'client TLS handshake failed'),
    );
    this.#server = server;
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      server.once('error', onError);
      server.listen(this.#config.port, this.#config.host, () => {
        server.off('error', onError);
        server.on('error', (err) => this.#logger.error({ err }, 'listener error'));
        const address = server.address();
        if (address === null || typeof address === 'string') {
          reject(new Error('listener has no TCP address'));
          return;
        }
        resolve({ host: address.address, port: address.port });
      });
    });
  }

  async close(options: CloseOptions = {}): Promise<void> {
    this.#closing = true;
    const server = this.#server;
    const stopped = new Promise<void>((resolve) => {
      if (!server || !server.listening) resolve();
      else server.close(() => resolve());
    });
    const graceMs = options.graceMs ?? 0;
    // Nobody is relaying through a session that has not logged in yet: it ends now, with its goodbye.
    for (const session of [...this.#sessions]) {
      if (graceMs <= 0 || !this.#relaying.has(session)) session.close('shutdown');
    }
    if (graceMs > 0 && this.#relaying.size > 0) {
      const relaying = [...this.#relaying];
      this.#logger.info({ sessions: relaying.length, graceMs }, 'waiting for relayed sessions to end');
      await raceTimeout(Promise.all(relaying.map((s) => s.closed)), graceMs);
      const left = [...this.#sessions];
      if (left.length > 0)
        this.#logger.info({ sessions: left.length }, 'shutdown grace over; closing sessions');
    }
    for (const socket of this.#arriving) socket.destroy();
    const sessions = [...this.#sessions];
    for (const session of sessions) session.close('shutdown');
    await raceTimeout(Promise.all([stopped, ...sessions.map((s) => s.closed)]), CLOSE_GRACE_MS);
  }

  /**
   * A connection to a PROXY protocol listener: only a trusted balancer may connect, and its header
   * names the client that allowFrom, the caps, the login limiter and the logs then see.
   */
  async #arrive(socket: Socket): Promise<void> {
    socket.on('error', () => undefined);
    const balancer = peerOf(socket);
    if (!this.#trustedProxies?.has(balancer.address)) {
      this.#dropNotAllowed(socket, balancer.address, 'not in trustedProxies');
      return;
    }
    this.#arriving.add(socket);
    try {
      const header = await readProxyHeader(socket, PROXY_HEADER_TIMEOUT_MS);
      if (header.type === 'closed') {
        this.#logger.debug({ proxy: balancer.address }, 'connection closed before its PROXY header');
        socket.destroy();
        return;
      }
      if (header.type === 'error') {
        this.#logger.warn({ proxy: balancer.address, reason: header.reason }, 'bad PROXY protocol header');
        socket.destroy();
        return;
      }
      const client = header.type === 'proxied' ? { address: header.address, port: header.port } : balancer;
      if (this.#allowFrom && !this.#allowFrom.has(client.address)) {
        this.#dropNotAllowed(socket, client.address, 'not in allowFrom');
        return;
      }
      let clientSocket: Socket = socket;
      if (this.#config.tls === 'implicit' && this.#secureContext) {
        try {
          clientSocket = await serverHandshake(socket, this.#secureContext, TLS_HANDSHAKE_TIMEOUT_MS);
        } catch (err) {
          this.#logger.debug(
            { client: client.address, err: (err as Error).message },
            'client TLS handshake failed',
          );
          return;
        }
      }
      if (!clientSocket.destroyed) this.#accept(clientSocket, client);
    } finally {
      this.#arriving.delete(socket);
    }
  }

  #accept(socket: Socket, client: Peer): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    // An error before the session attaches its own handlers must not crash the process.
    socket.on('error', () => undefined);
    const remoteAddress = client.address;
    const key = addressKey(remoteAddress);
    const { maxConnections, maxConnectionsPerAddress } = this.#caps;
    if (maxConnections !== undefined && this.#sessions.size >= maxConnections) {
      this.#refuse(socket, remoteAddress, 'too many connections');
      return;
    }
    const preAuth = this.#preAuth.get(key) ?? 0;
    if (maxConnectionsPerAddress !== undefined && preAuth >= maxConnectionsPerAddress) {
      this.#refuse(socket, remoteAddress, 'too many connections not logged in from this address');
      return;
    }
    this.#preAuth.set(key, preAuth + 1);
    let counted = true;
    const release = (): void => {
      if (!counted) return;
      counted = false;
      const left = (this.#preAuth.get(key) ?? 1) - 1;
      if (left > 0) this.#preAuth.set(key, left);
      else this.#preAuth.delete(key);
    };
    const context = {
      listener: this.#config,
      secure: this.#config.tls === 'implicit',
      secureContext: this.#secureContext,
      remoteAddress,
      remotePort: client.port,
      id: randomBytes(4).toString('hex'),
      loggedIn: (options?: { stillCounted?: boolean }) => {
        if (options?.stillCounted !== true) release();
        if (session && this.#sessions.has(session)) this.#relaying.add(session);
      },
    };
    let session: ProxySession | undefined;
    try {
      session = this.#factory(socket, context);
    } catch (err) {
      this.#logger.error({ err }, 'session factory failed');
      release();
      socket.destroy();
      return;
    }
    const live = session;
    this.#sessions.add(live);
    void live.closed.finally(() => {
      this.#sessions.delete(live);
      this.#relaying.delete(live);
      release();
    });
  }

  /** Closes a connection from outside allowFrom at once, before anything is written or read. */
  #screen(socket: Socket): void {
    const address = socket.remoteAddress ?? '';
    if (this.#allowFrom?.has(address)) return;
    this.#dropNotAllowed(socket, address, 'not in allowFrom');
  }

  /** Closes without a word, counts it, and logs it once a minute per address however often it retries. */
  #dropNotAllowed(socket: Socket, address: string, why: 'not in allowFrom' | 'not in trustedProxies'): void {
    socket.on('error', () => undefined);
    socket.destroy();
    this.#caps.onRefused?.('not-allowed');
    const now = Date.now();
    const last = this.#notAllowedLogged.get(address);
    if (last !== undefined && now - last < NOT_ALLOWED_LOG_EVERY_MS) return;
    this.#notAllowedLogged.delete(address);
    this.#notAllowedLogged.set(address, now);
    if (this.#notAllowedLogged.size > NOT_ALLOWED_LOG_MAX) {
      const oldest = this.#notAllowedLogged.keys().next().value;
      if (oldest !== undefined) this.#notAllowedLogged.delete(oldest);
    }
    this.#logger.warn(
      { client: address },
      `connection refused: address ${why} (logged once a minute per address)`,
    );
  }

  /** Says the protocol's "too busy" and closes, without a session (no greeting, no log line per client). */
  #refuse(socket: Socket, client: string, why: string): void {
    this.#caps.onRefused?.('busy');
    this.#logger.warn({ client, why }, 'connection refused');
    if (this.#caps.busyReply) socket.end(this.#caps.busyReply);
    else socket.end();
    setTimeout(() => socket.destroy(), REFUSAL_GRACE_MS).unref();
  }
}

/** A client's address and port, as the socket or a PROXY header gives them. */
interface Peer {
  address: string;
  port: number;
}

function peerOf(socket: Socket): Peer {
  return { address: socket.remoteAddress ?? 'unknown', port: socket.remotePort ?? 0 };
}

/** Waits for `promise`, or for `ms` at most; never rejects (session `closed` promises never do). */
async function raceTimeout(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
    timer.unref();
  });
  await Promise.race([promise.then(() => undefined), timeout]);
  clearTimeout(timer);
}
