/**
 * One POP3 client connection: the only POP3 code that touches sockets and timers. It feeds bytes to
 * the pure front, carries out its actions (write, STLS, log in, relay, close) and writes the session's
 * one log line at the end.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { isProxyError } from '../../errors.js';
import { performLogin } from '../shared/login.js';
import { startRelay, type Relay } from '../shared/relay.js';
import { Secret } from '../shared/secret.js';
import { formatAddress, logSessionEnd } from '../shared/session-log.js';
import { upgradeToTls } from '../shared/starttls.js';
import type { ConnectionContext, ProxyDeps, ProxySession, SessionOutcome } from '../shared/types.js';
import { KEEPALIVE_DELAY_MS } from '../shared/upstream.js';
import { Pop3Front, type AsyncEvent } from './front.js';
import type { Pop3Limits } from './limits.js';
import type { CloseReason, Pop3Action } from './machine.js';
import { pop3UpstreamLogin, type Pop3Upstream } from './upstream.js';

/**
 * While a login runs, client bytes keep being read (so a hang-up is noticed) but not parsed; past this
 * much the socket is paused. A POP3 client waits for the answer to PASS, so this is never reached by
 * an honest one.
 */
const MAX_BUFFER_DURING_LOGIN = 64 * 1024;
/** After our last words, how long the client gets to read them before the socket is destroyed. */
const CLOSE_GRACE_MS = 5_000;

const OUTCOME: Record<CloseReason, SessionOutcome> = {
  quit: 'client-quit',
  'client-closed': 'client-closed',
  'idle-timeout': 'timeout',
  'line-too-long': 'limit',
  'too-many-commands': 'limit',
  'too-many-failures': 'limit',
  http: 'protocol-error',
  shutdown: 'shutdown',
};

export class Pop3Session implements ProxySession {
  readonly closed: Promise<void>;
  #resolveClosed!: () => void;
  #socket: Socket;
  readonly #context: ConnectionContext;
  readonly #deps: ProxyDeps;
  readonly #limits: Pop3Limits;
  readonly #logger: Logger;
  readonly #front: Pop3Front;
  readonly #started = Date.now();
  readonly #login = new AbortController();
  #idleTimer: NodeJS.Timeout | undefined;
  #relay: Relay | undefined;
  /** The authenticated upstream between its +OK and the start of the relay. */
  #upstream: Pop3Upstream | undefined;
  #loginFailed = false;
  #finished = false;
  #bytesFromClient = 0;
  #bytesToClient = 0;
  #outcome: SessionOutcome = 'client-closed';
  #reason: string | undefined;
  #username: string | undefined;
  #account: string | undefined;
  #upstreamLabel: string | undefined;

  constructor(socket: Socket, context: ConnectionContext, deps: ProxyDeps, limits: Pop3Limits) {
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    this.#socket = socket;
    this.#context = context;
    this.#deps = deps;
    this.#limits = limits;
    this.#logger = deps.logger.child({ session: context.id });
    this.#front = new Pop3Front(
      {
        tls: context.listener.tls,
        maxCommandsBeforeLogin: limits.maxCommandsBeforeLogin,
        maxFailedLogins: limits.maxFailedLogins,
      },
      limits.maxLineLength,
    );
    socket.setKeepAlive(true, KEEPALIVE_DELAY_MS);
    socket.setNoDelay(true);
    this.#attach(socket);
    this.#armIdleTimer();
    this.#run(this.#front.start());
  }

  close(_reason: 'shutdown'): void {
    if (this.#finished) return;
    if (this.#relay) {
      this.#outcome = 'shutdown';
      this.#relay.destroy();
      return;
    }
    // A login in flight must not start a relay after shutdown.
    this.#login.abort();
    this.#resolve({ type: 'shutdown' });
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
    this.#resolve({ type: 'client-closed' });
    this.#finish();
  };

  #resolve(event: AsyncEvent): void {
    this.#run(this.#front.resolve(event));
  }

  #armIdleTimer(): void {
    clearTimeout(this.#idleTimer);
    this.#idleTimer = setTimeout(
      () => this.#resolve({ type: 'idle-timeout' }),
      this.#limits.preAuthIdleTimeoutMs,
    );
    this.#idleTimer.unref();
  }

  #write(reply: string): void {
    if (this.#socket.destroyed || this.#socket.writableEnded) return;
    const data = Buffer.from(`${reply}\r\n`, 'utf8');
    this.#bytesToClient += data.length;
    this.#socket.write(data);
  }

  #run(actions: Pop3Action[]): void {
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
          void this.#authenticate(action.username, new Secret(action.password));
          break;
        case 'start-relay':
          this.#startRelay();
          break;
        case 'close':
          // A failed login says more about the session than how it ended afterwards.
          if (!this.#loginFailed && action.reason !== 'client-closed') this.#outcome = OUTCOME[action.reason];
          if (action.reason === 'shutdown') this.#outcome = 'shutdown';
          this.#end();
          break;
      }
    }
  }

  #startTls(): void {
    const secureContext = this.#context.secureContext;
    clearTimeout(this.#idleTimer);
    const plain = this.#socket;
    this.#detach(plain);
    if (!secureContext) {
      // The front only offers STLS on a listener that has a certificate; this is a wiring bug.
      this.#reason = 'STLS without a TLS context';
      this.#outcome = 'error';
      this.#finish();
      return;
    }
    upgradeToTls(plain, secureContext).then(
      ({ socket }) => {
        if (this.#finished) {
          socket.destroy();
          return;
        }
        this.#socket = socket;
        this.#attach(socket);
        this.#armIdleTimer();
        this.#resolve({ type: 'tls-ready' });
        socket.resume();
      },
      (err: Error) => {
        // A shutdown during the handshake closes the socket, which fails it: that is still a shutdown.
        if (this.#outcome !== 'shutdown') this.#outcome = 'protocol-error';
        this.#reason = `STLS failed: ${err.message}`;
        this.#finish();
      },
    );
  }

  async #authenticate(username: string, password: Secret): Promise<void> {
    const protocol = pop3UpstreamLogin(this.#limits.upstreamTimeoutMs);
    const result = await performLogin(
      this.#deps,
      { username, password, remoteAddress: this.#context.remoteAddress },
      protocol,
      this.#login.signal,
    );
    if (result.account) this.#account = result.account.id;
    if (this.#finished || this.#login.signal.aborted || this.#front.state.phase.name !== 'authenticating') {
      if (result.ok) protocol.close(result.upstream);
      return;
    }
    if (result.ok) {
      this.#loginFailed = false;
      this.#upstream = result.upstream;
      this.#upstreamLabel = result.upstream.conn.label;
      const text = result.upstream.loginText;
      this.#resolve(text === undefined ? { type: 'auth-succeeded' } : { type: 'auth-succeeded', text });
      return;
    }
    const error = result.error;
    this.#loginFailed = true;
    this.#outcome = error.code;
    this.#reason = error.message;
    this.#logger.info(
      { username, account: this.#account, code: error.code, err: error.message },
      'login failed',
    );
    let consentHint: string | undefined;
    if (isProxyError(error, 'needs-consent') && result.account) {
      try {
        consentHint = this.#deps.consentHint(result.account);
      } catch {
        consentHint = undefined;
      }
    }
    this.#socket.resume();
    this.#armIdleTimer();
    this.#resolve(
      consentHint === undefined
        ? { type: 'auth-failed', error }
        : { type: 'auth-failed', error, consentHint },
    );
  }

  #startRelay(): void {
    const upstream = this.#upstream;
    this.#upstream = undefined;
    if (!upstream) {
      this.#outcome = 'error';
      this.#end();
      return;
    }
    clearTimeout(this.#idleTimer);
    const { socket: upstreamSocket, pending } = upstream.conn.detach();
    const client = this.#socket;
    this.#detach(client);
    this.#outcome = 'relayed';
    this.#reason = undefined;
    // Whatever the client pipelined after PASS / AUTH is the upstream's, in order.
    const clientPending = this.#front.takeRemainder();
    const relay = startRelay({ client, upstream: upstreamSocket, clientPending, upstreamPending: pending });
    this.#relay = relay;
    void relay.done.then((result) => {
      // The relay counts the pipelined bytes it forwards first; #onData counted them already.
      this.#bytesFromClient += result.bytesFromClient - clientPending.length;
      this.#bytesToClient += result.bytesToClient;
      if (result.error) this.#reason = `${result.endedBy}: ${result.error.message}`;
      else if (this.#outcome === 'relayed') this.#reason = `closed by ${result.endedBy}`;
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
    setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
  }

  #finish(): void {
    if (this.#finished || this.#relay) return;
    this.#finished = true;
    clearTimeout(this.#idleTimer);
    this.#login.abort();
    this.#upstream?.conn.close();
    this.#upstream = undefined;
    this.#socket.destroy();
    logSessionEnd(this.#logger, {
      protocol: 'pop3',
      session: this.#context.id,
      client: formatAddress(this.#context.remoteAddress, this.#context.remotePort),
      ...(this.#username !== undefined ? { username: this.#username } : {}),
      ...(this.#account !== undefined ? { account: this.#account } : {}),
      ...(this.#upstreamLabel !== undefined ? { upstream: this.#upstreamLabel } : {}),
      bytesFromClient: this.#bytesFromClient,
      bytesToClient: this.#bytesToClient,
      durationMs: Date.now() - this.#started,
      outcome: this.#outcome,
      ...(this.#reason !== undefined ? { reason: this.#reason } : {}),
    });
    this.#resolveClosed();
  }
}
