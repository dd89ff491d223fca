/**
 * A TCP or TLS listener that hands every connection to a protocol's session factory and keeps track
 * of the live sessions so that `close()` can end them. Protocol-agnostic: IMAP, SMTP and POP3 use it.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { Server as TlsServer, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { ListenerConfig } from '../../config/types.js';
import { createLocalSecureContext, localTlsOptions } from './tls-context.js';
import type { ProxyServer, ProxySession, SessionFactory } from './types.js';

/** An implicit-TLS client that has not finished its handshake by then is dropped. */
const TLS_HANDSHAKE_TIMEOUT_MS = 30_000;
/** How long close() waits for sessions to wind down before it stops waiting. */
const CLOSE_GRACE_MS = 5_000;

export class ProxyListener implements ProxyServer {
  readonly #config: ListenerConfig;
  readonly #factory: SessionFactory;
  readonly #logger: Logger;
  readonly #secureContext: SecureContext | undefined;
  readonly #sessions = new Set<ProxySession>();
  #server: Server | undefined;
  #closing = false;

  constructor(config: ListenerConfig, factory: SessionFactory, logger: Logger) {
    this.#config = config;
    this.#factory = factory;
    this.#logger = logger;
    // Build the TLS context up front so a bad cert fails at start, not at the first STARTTLS.
    this.#secureContext = config.tls === 'none' ? undefined : createLocalSecureContext(config);
  }

  /** Live sessions (pre-auth and relayed). */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  listen(): Promise<{ host: string; port: number }> {
    if (this.#server) throw new Error('listen() called twice');
    const server =
      this.#config.tls === 'implicit'
        ? new TlsServer({ ...localTlsOptions(this.#config), handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS })
        : createServer();
    server.on(this.#config.tls === 'implicit' ? 'secureConnection' : 'connection', (socket: Socket) =>
      this.#accept(socket),
    );
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

  async close(): Promise<void> {
    this.#closing = true;
    const server = this.#server;
    const stopped = new Promise<void>((resolve) => {
      if (!server || !server.listening) resolve();
      else server.close(() => resolve());
    });
    const sessions = [...this.#sessions];
    for (const session of sessions) session.close('shutdown');
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, CLOSE_GRACE_MS);
      timer.unref();
    });
    await Promise.race([Promise.all([stopped, ...sessions.map((s) => s.closed)]), grace]);
    clearTimeout(timer);
  }

  #accept(socket: Socket): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    // An error before the session attaches its own handlers must not crash the process.
    socket.on('error', () => undefined);
    const context = {
      listener: this.#config,
      secure: this.#config.tls === 'implicit',
      secureContext: this.#secureContext,
      remoteAddress: socket.remoteAddress ?? 'unknown',
      remotePort: socket.remotePort ?? 0,
      id: randomBytes(4).toString('hex'),
    };
    let session: ProxySession;
    try {
      session = this.#factory(socket, context);
    } catch (err) {
      this.#logger.error({ err }, 'session factory failed');
      socket.destroy();
      return;
    }
    this.#sessions.add(session);
    void session.closed.finally(() => this.#sessions.delete(session));
  }
}
