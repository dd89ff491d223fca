/**
 * One SMTP client connection: the only SMTP code that touches sockets and timers. It feeds bytes to
 * the pure front, carries out its actions (write, STARTTLS, log in, relay, close) and writes the
 * session's one log line at the end.
 */
import type { Socket } from 'node:net';
import type { ProxyDeps } from '../shared/types.js';
import { isProxyError } from '../../errors.js';
import { performLogin } from '../shared/login.js';
import { startRelay, type Relay } from '../shared/relay.js';
import { Secret } from '../shared/secret.js';
import { formatAddress, logSessionEnd } from '../shared/session-log.js';
import { upgradeToTls } from '../shared/starttls.js';
import { KEEPALIVE_DELAY_MS } from '../shared/upstream.js';
import type { ConnectionContext, ProxySession, SessionOutcome } from '../shared/types.js';
import { SmtpFront } from './front.js';
import type { CloseReason, SmtpAction } from './machine.js';
import { smtpUpstreamLogin } from './upstream.js';

/**
 * While a login runs, client bytes keep being read (so a hang-up is noticed) but not parsed; past this
 * much the socket is paused. RFC 2920 clients stop at DATA and wait for 354, so this is never reached
 * by an honest client.
 */
const MAX_BUFFER_DURING_LOGIN = 64 * 1024;

const OUTCOME: Record<CloseReason, SessionOutcome> = {
  quit: 'client-quit',
  'client-closed': 'client-closed',
  'idle-timeout': 'timeout',
  'line-too-long': 'limit',
  'too-many-commands': 'limit',
  'too-many-failures': 'limit',
  http: 'protocol-error',
};

export interface SmtpSessionOptions {
  /** Our name in the greeting and EHLO reply. */
  serverName: string;
}

export class SmtpSession implements ProxySession {
  readonly closed: Promise<void>;
  #resolveClosed!: () => void;
  #socket: Socket;
  readonly #context: ConnectionContext;
  readonly #deps: ProxyDeps;
  readonly #front: SmtpFront;
  readonly #started = Date.now();
  readonly #login = new AbortController();
  #idleTimer: NodeJS.Timeout | undefined;
  #relay: Relay | undefined;
  /** The authenticated upstream between its 235 and the start of the relay. */
  #pendingUpstream: { socket: Socket; pending: Buffer } | undefined;
  #loginFailed = false;
  #finished = false;
  #bytesFromClient = 0;
  #bytesToClient = 0;
  #outcome: SessionOutcome = 'client-closed';
  #reason: string | undefined;
  #username: string | undefined;
  #account: string | undefined;
  #upstream: string | undefined;

  constructor(socket: Socket, context: ConnectionContext, deps: ProxyDeps, options: SmtpSessionOptions) {
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    this.#socket = socket;
    this.#context = context;
    this.#deps = deps;
    const limits = deps.config.settings.limits;
    this.#front = new SmtpFront(
      {
        serverName: options.serverName,
        tls: context.listener.tls,
        maxMessageSize: limits.smtpMaxMessageSize,
        maxCommandsBeforeLogin: limits.maxCommandsBeforeLogin,
        maxFailedLogins: limits.maxFailedLoginsPerConnection,
      },
      limits.maxLineLength,
    );
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_DELAY_MS);
    this.#attach(socket);
    this.#armIdleTimer();
    this.#run(this.#front.start());
  }

  close(_reason: 'shutdown'): void {
    if (this.#finished) return;
    this.#outcome = 'shutdown';
    if (this.#relay) {
      this.#relay.destroy();
      return;
    }
    this.#login.abort();
    // Mid-handshake the socket carries TLS records; a plain-text reply would only garble them.
    if (this.#front.state.phase.name !== 'starting-tls') this.#write('421 4.3.2 Service shutting down');
    this.#end();
  }

  #attach(socket: Socket): void {
    socket.on('data', this.#onData);
    socket.on('error', (err) => {
      this.#reason ??= err.message;
    });
    socket.on('close', this.#onClose);
  }

  #detach(socket: Socket): void {
    socket.off('data', this.#onData);
    socket.off('close', this.#onClose);
  }

  readonly #onData = (chunk: Buffer): void => {
    this.#bytesFromClient += chunk.length;
    if (this.#front.reading) this.#armIdleTimer();
    this.#run(this.#front.receive(chunk));
    if (this.#front.state.phase.name === 'authenticating' && this.#front.buffered > MAX_BUFFER_DURING_LOGIN) {
      this.#socket.pause();
    }
  };

  readonly #onClose = (): void => {
    this.#login.abort();
    this.#run(this.#front.resolve({ type: 'client-closed' }));
    this.#finish();
  };

  #armIdleTimer(): void {
    clearTimeout(this.#idleTimer);
    const ms = this.#deps.config.settings.limits.preAuthIdleTimeoutMs;
    this.#idleTimer = setTimeout(() => this.#run(this.#front.resolve({ type: 'idle-timeout' })), ms);
    this.#idleTimer.unref();
  }

  #write(reply: string): void {
    if (!this.#socket.writable) return;
    const data = `${reply}\r\n`;
    this.#bytesToClient += Buffer.byteLength(data);
    this.#socket.write(data);
  }

  #run(actions: SmtpAction[]): void {
    for (const action of actions) {
      switch (action.type) {
        case 'send':
          this.#write(action.reply);
          break;
        case 'start-tls':
          this.#startTls();
          break;
        case 'authenticate':
          clearTimeout(this.#idleTimer);
          this.#username = action.username;
          this.#authenticate(action.username, new Secret(action.password), action.heloName).catch(
            (err: unknown) => {
              // performLogin never throws; this is for a bug past it (e.g. in consentHint).
              this.#reason = err instanceof Error ? err.message : String(err);
              if (this.#finished || this.#front.state.phase.name !== 'authenticating') return;
              this.#socket.resume();
              this.#armIdleTimer();
              this.#run(this.#front.resolve({ type: 'auth-failed', error: err }));
            },
          );
          break;
        case 'start-relay':
          this.#startRelay();
          break;
        case 'close':
          // A failed login says more about the session than how it ended afterwards.
          if (!this.#loginFailed && action.reason !== 'client-closed') this.#outcome = OUTCOME[action.reason];
          this.#end();
          break;
      }
    }
  }

  #startTls(): void {
    const secureContext = this.#context.secureContext;
    if (!secureContext) {
      // The front only offers STARTTLS on a listener that has a certificate; this is a wiring bug.
      this.#reason = 'STARTTLS without a TLS context';
      this.#outcome = 'error';
      this.#end();
      return;
    }
    clearTimeout(this.#idleTimer);
    const plain = this.#socket;
    this.#detach(plain);
    upgradeToTls(plain, secureContext).then(
      ({ socket }) => {
        this.#socket = socket;
        this.#attach(socket);
        this.#armIdleTimer();
        this.#run(this.#front.resolve({ type: 'tls-ready' }));
        socket.resume();
      },
      (err: Error) => {
        this.#outcome = 'protocol-error';
        this.#reason = `STARTTLS failed: ${err.message}`;
        this.#finish();
      },
    );
  }

  async #authenticate(username: string, password: Secret, heloName: string): Promise<void> {
    const limits = this.#deps.config.settings.limits;
    const protocol = smtpUpstreamLogin({ heloName, timeoutMs: limits.upstreamConnectTimeoutMs });
    const result = await performLogin(
      this.#deps,
      { username, password, remoteAddress: this.#context.remoteAddress },
      protocol,
      this.#login.signal,
    );
    if (result.account) this.#account = result.account.id;
    if (this.#finished || this.#login.signal.aborted) {
      if (result.ok) protocol.close(result.upstream);
      return;
    }
    if (result.ok) {
      this.#loginFailed = false;
      this.#upstream = result.upstream.conn.label;
      this.#pendingUpstream = result.upstream.conn.detach();
      this.#run(this.#front.resolve({ type: 'auth-succeeded' }));
      return;
    }
    const error = result.error;
    this.#loginFailed = true;
    this.#outcome = error.code;
    this.#reason = error.message;
    const consentHint =
      isProxyError(error, 'needs-consent') && result.account
        ? this.#deps.consentHint(result.account)
        : undefined;
    this.#socket.resume();
    this.#armIdleTimer();
    this.#run(
      this.#front.resolve(
        consentHint === undefined
          ? { type: 'auth-failed', error }
          : { type: 'auth-failed', error, consentHint },
      ),
    );
  }

  #startRelay(): void {
    const upstream = this.#pendingUpstream;
    if (!upstream) return;
    this.#pendingUpstream = undefined;
    clearTimeout(this.#idleTimer);
    const client = this.#socket;
    this.#detach(client);
    this.#outcome = 'relayed';
    this.#reason = undefined;
    const clientPending = this.#front.takeRemainder();
    const relay = startRelay({
      client,
      upstream: upstream.socket,
      clientPending,
      upstreamPending: upstream.pending,
    });
    this.#relay = relay;
    void relay.done.then((result) => {
      // The relay counts the pipelined bytes it forwards first; #onData counted them already.
      this.#bytesFromClient += result.bytesFromClient - clientPending.length;
      this.#bytesToClient += result.bytesToClient;
      if (result.error && this.#outcome === 'relayed') this.#reason = result.error.message;
      this.#relay = undefined;
      this.#finish();
    });
  }

  /** Ends the client connection after what was written has been flushed. */
  #end(): void {
    clearTimeout(this.#idleTimer);
    const socket = this.#socket;
    if (socket.destroyed) {
      this.#finish();
      return;
    }
    socket.end();
    // A client that never reads its last reply must not keep the session alive.
    setTimeout(() => socket.destroy(), 5_000).unref();
  }

  #finish(): void {
    if (this.#finished || this.#relay) return;
    this.#finished = true;
    clearTimeout(this.#idleTimer);
    this.#login.abort();
    if (this.#pendingUpstream) {
      this.#pendingUpstream.socket.destroy();
      this.#pendingUpstream = undefined;
    }
    this.#socket.destroy();
    logSessionEnd(this.#deps.logger, {
      protocol: 'smtp',
      session: this.#context.id,
      client: formatAddress(this.#context.remoteAddress, this.#context.remotePort),
      ...(this.#username !== undefined ? { username: this.#username } : {}),
      ...(this.#account !== undefined ? { account: this.#account } : {}),
      ...(this.#upstream !== undefined ? { upstream: this.#upstream } : {}),
      bytesFromClient: this.#bytesFromClient,
      bytesToClient: this.#bytesToClient,
      durationMs: Date.now() - this.#started,
      outcome: this.#outcome,
      ...(this.#reason !== undefined ? { reason: this.#reason } : {}),
    });
    this.#resolveClosed();
  }
}
