/**
 * One client connection of any protocol: the only code that touches the client socket, its timers
 * and the login. It drives the protocol's pure front and performs the actions it returns:
 *
 *   bytes ─▶ front.receive ─▶ run(actions) ─▶ write / startTls / authenticate / startRelay / endWith
 *   TLS ready, login result, idle timeout, shutdown ─▶ front.resolve(event) ─▶ run(actions)
 *
 * A login may also end in a local upstream (a `MessageSender`, SMTP through Microsoft Graph): then
 * nothing is relayed, the front goes on answering the client, and each `deliver` it asks for is one
 * `sender.send`, whose outcome goes back to the front as `delivered`.
 *
 * It also keeps the bookkeeping for the session's one log line (bytes, user, account, upstream,
 * outcome, reason, messages) and writes it once both legs are closed; the same record feeds the metrics.
 * `createProtocolServer` puts a protocol behind the shared listener.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { ListenerConfig, ResolvedAccount } from '../../config/types.js';
import { isProxyError, ProxyError } from '../../errors.js';
import type { MessageSender, OutgoingMessage, SendOutcome } from '../../graph/types.js';
import type { AuthenticateAction, FrontAction, FrontEvent } from './front.js';
import { frontLimits, MAX_PENDING_OUTPUT_BYTES, type FrontLimits } from './limits.js';
import { ProxyListener } from './listener.js';
import { performLogin, type UpstreamLogin } from './login.js';
import { startRelay, type Relay } from './relay.js';
import { formatAddress, recordSessionEnd } from './session-log.js';
import { upgradeToTls } from './starttls.js';
import type {
  ConnectionContext,
  ProxyDeps,
  ProxyServer,
  ProxySession,
  SessionOutcome,
  SessionRecord,
} from './types.js';
import { KEEPALIVE_DELAY_MS, type UpstreamConnection } from './upstream.js';

/**
 * How long a send in flight may still take once the session is told to close for shutdown: within
 * the listener's own 5 s wait for its sessions, so that the client still reads the reply and the 421.
 */
export const SEND_SHUTDOWN_GRACE_MS = 3_000;

/** An authenticated upstream connection as a protocol's UpstreamLogin hands it back, to be relayed. */
export interface AuthenticatedUpstream {
  conn: UpstreamConnection;
  /** The upstream's post-login capability list as sent (IMAP), for the client's OK. */
  postLoginCapabilities?: string;
  /** The upstream's text after its success reply, passed on where the protocol allows. */
  loginText?: string;
  /** The upstream's extension list as its login dialogue saw it (SMTP: the EHLO keywords), if it asked. */
  extensions?: readonly string[];
}

/**
 * A login that needs no upstream connection: the front answers the client itself after the login and
 * hands each message to `sender` (SMTP through Microsoft Graph). `label` names it in the log line.
 */
export interface LocalUpstream {
  sender: MessageSender;
  label: string;
}

/** What a protocol's login may end in: a connection to relay to, or (SMTP) a local sender. */
export type SessionUpstream = AuthenticatedUpstream | LocalUpstream;

export function isLocalUpstream(upstream: SessionUpstream): upstream is LocalUpstream {
  return 'sender' in upstream;
}

/** The pure front a session drives (framer + machine), see ./front.ts. */
export interface SessionFront<A> {
  readonly reading: boolean;
  readonly authenticating: boolean;
  readonly buffered: number;
  start(): A[];
  receive(chunk: Buffer): A[];
  resolve(event: FrontEvent): A[];
  takeRemainder(): Buffer;
  /** The session has ended: let go of what the front holds on others' behalf (SMTP's message memory). */
  dispose?(): void;
}

/** Everything that makes a protocol different, as data and two factories. */
export interface Protocol<U extends SessionUpstream, Auth extends AuthenticateAction> {
  name: SessionRecord['protocol'];
  /** The client's TLS upgrade command, for log reasons. */
  tlsCommand: 'STARTTLS' | 'STLS';
  /** After our last words, how long the client gets to read them before the socket is destroyed. */
  closeGraceMs: number;
  /**
   * While a login runs, client bytes keep being read (so a hang-up is noticed) but not parsed; past this
   * many buffered bytes the socket is paused. 0: paused as soon as the login starts.
   */
  maxBufferDuringLogin: number;
  /** A failed login stays the session's outcome even if the client then quits. */
  failedLoginIsOutcome: boolean;
  /**
   * A client may shut down its sending side and still read the replies to what it sent (SMTP: a
   * script ends its input after DATA and QUIT): the login, send or relay in flight still answers.
   */
  halfClose?: boolean;
  /** What a client refused by the connection caps reads. */
  busyReply: string;
  /** `deps.capabilities` says what the upstreams are known to support right now. */
  front(context: ConnectionContext, limits: FrontLimits, deps: ProxyDeps): SessionFront<FrontAction<Auth>>;
  /** `deps.upstreamPool`, when there is one, serves the connect. */
  upstreamLogin(action: Auth, limits: FrontLimits, deps: ProxyDeps): UpstreamLogin<U>;
}

/**
 * A protocol as a ProxyServer: the shared listener, with one logger per listener whose binding
 * (`listener: "imap 127.0.0.1:1143"`) names protocol and address once. Session records carry
 * `protocol` and `session` themselves, so neither may be a binding (no key twice in a JSON line).
 */
export function createProtocolServer<U extends SessionUpstream, Auth extends AuthenticateAction>(
  protocol: Protocol<U, Auth>,
  listener: ListenerConfig,
  deps: ProxyDeps,
): ProxyServer {
  const logger = deps.logger.child({ listener: `${protocol.name} ${listener.host}:${listener.port}` });
  const sessionDeps: ProxyDeps = { ...deps, logger };
  const settings = deps.config.settings?.limits;
  const limits = frontLimits(settings);
  return new ProxyListener(
    listener,
    (socket, context) => new Session(socket, context, sessionDeps, protocol, limits),
    logger,
    {
      ...(settings ? { maxConnections: settings.maxConnections } : {}),
      ...(settings ? { maxConnectionsPerAddress: settings.maxConnectionsPerAddress } : {}),
      busyReply: `${protocol.busyReply}\r\n`,
      onRefused: (reason) => deps.metrics?.connectionRefused?.(protocol.name, reason),
      ...(protocol.halfClose ? { allowHalfOpen: true } : {}),
    },
  );
}

export class Session<U extends SessionUpstream, Auth extends AuthenticateAction> implements ProxySession {
  readonly closed: Promise<void>;
  #resolveClosed!: () => void;
  #socket: Socket;
  readonly #context: ConnectionContext;
  readonly #deps: ProxyDeps;
  readonly #protocol: Protocol<U, Auth>;
  readonly #limits: FrontLimits;
  readonly #front: SessionFront<FrontAction<Auth>>;
  /** Carries the session id; for lines other than the session's last. */
  readonly #logger: Logger;
  readonly #started = Date.now();
  readonly #login = new AbortController();
  #idleTimer: NodeJS.Timeout | undefined;
  /** The absolute pre-login deadline: the idle timer restarts on every byte, this one does not. */
  #deadlineTimer: NodeJS.Timeout | undefined;
  #relay: Relay | undefined;
  /** The authenticated upstream between its OK and the start of the relay. */
  #upstream: AuthenticatedUpstream | undefined;
  /** After a login that ended in a local sender: the sender, and the account (for consent hints). */
  #local: { upstream: LocalUpstream; account: ResolvedAccount } | undefined;
  /** The send in flight, if any: aborted when the client hangs up or the session ends. */
  #sending: AbortController | undefined;
  /** Replies queued past MAX_PENDING_OUTPUT_BYTES: the client's input waits for 'drain'. */
  #outputBlocked = false;
  /** The client shut down its sending side (half-open listeners): nothing more will come. */
  #clientEnded = false;
  #messagesSent = 0;
  #messagesRefused = 0;
  #loginFailed = false;
  #finished = false;
  #bytesFromClient = 0;
  #bytesToClient = 0;
  #outcome: SessionOutcome = 'client-closed';
  #reason: string | undefined;
  #username: string | undefined;
  #account: string | undefined;
  #upstreamLabel: string | undefined;

  constructor(
    socket: Socket,
    context: ConnectionContext,
    deps: ProxyDeps,
    protocol: Protocol<U, Auth>,
    limits: FrontLimits,
  ) {
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    this.#socket = socket;
    this.#context = context;
    this.#deps = deps;
    this.#protocol = protocol;
    this.#limits = limits;
    this.#logger = deps.logger.child({ session: context.id });
    socket.setKeepAlive(true, KEEPALIVE_DELAY_MS);
    socket.setNoDelay(true);
    deps.metrics?.sessionStarted(protocol.name);
    this.#front = protocol.front(context, limits, deps);
    this.#attach(socket);
    this.#run(this.#front.start());
    this.#armIdleTimer();
    const deadlineMs = limits.loginDeadlineMs;
    this.#deadlineTimer = setTimeout(() => this.#onLoginDeadline(deadlineMs), deadlineMs);
    this.#deadlineTimer.unref();
  }

  #resolve(event: FrontEvent): void {
    this.#run(this.#front.resolve(event));
  }

  #run(actions: FrontAction<Auth>[]): void {
    for (const action of actions) {
      switch (action.type) {
        case 'send':
          this.#write(`${action.reply}\r\n`);
          break;
        case 'start-tls':
          this.#startTls();
          break;
        case 'authenticate':
          this.#authenticate(action);
          break;
        case 'start-relay':
          this.#startRelay();
          break;
        case 'close':
          this.#endWith(action.outcome, action.reason);
          break;
        case 'deliver':
          this.#deliver(action.message);
          break;
      }
    }
  }

  #onLoginDeadline(deadlineMs: number): void {
    if (this.#finished || this.#relay || this.#upstream || this.#local) return;
    this.#reason ??= `not logged in within ${deadlineMs} ms`;
    if (this.#front.reading) {
      // The protocol's own goodbye for a client that took too long (IMAP BYE, SMTP 421, POP3 -ERR).
      this.#resolve({ type: 'idle-timeout' });
      return;
    }
    // A TLS handshake or a login still under way: no reply fits, just end it.
    this.#outcome = 'timeout';
    this.#login.abort();
    this.#finish();
  }

  // ---- ProxySession --------------------------------------------------------------------------

  close(_reason: 'shutdown'): void {
    if (this.#finished) return;
    if (this.#relay) {
      this.#outcome = 'shutdown';
      this.#relay.destroy();
      return;
    }
    // A login in flight must not start a relay after shutdown.
    this.#login.abort();
    // A send in flight may finish (the front answers it, then says goodbye): a message Graph accepted
    // must not be reported as failed and sent twice. Past SEND_SHUTDOWN_GRACE_MS it is aborted.
    const sending = this.#sending;
    if (sending) setTimeout(() => sending.abort(), SEND_SHUTDOWN_GRACE_MS).unref();
    this.#resolve({ type: 'shutdown' });
  }

  // ---- the actions a front asks for ----------------------------------------------------------

  #write(text: string): void {
    const socket = this.#socket;
    if (socket.destroyed || socket.writableEnded) return;
    const data = Buffer.from(text, 'utf8');
    this.#bytesToClient += data.length;
    socket.write(data);
    // A client that pipelines commands (NOOP, RSET, ...) without reading the replies would make us
    // queue replies without end: past the bound its input waits until it has read them.
    if (!this.#outputBlocked && socket.writableLength > MAX_PENDING_OUTPUT_BYTES) {
      this.#outputBlocked = true;
      socket.pause();
      socket.once('drain', () => {
        this.#outputBlocked = false;
        if (socket === this.#socket && !this.#finished) this.#resumeReading();
      });
    }
  }

  /**
   * Reads the client again, unless something still holds it back: replies it has not read yet, or a
   * login or send under way with enough of its pipelined input already waiting.
   */
  #resumeReading(): void {
    if (this.#outputBlocked || this.#inputHeld()) return;
    this.#socket.resume();
  }

  /** A login or send under way, with as much pipelined input waiting as the protocol allows. */
  #inputHeld(): boolean {
    const waiting = this.#front.authenticating || this.#sending !== undefined;
    const limit = this.#protocol.maxBufferDuringLogin;
    return waiting && (limit === 0 || this.#front.buffered > limit);
  }

  /** The front closed the session: records why, then ends the client connection gently. */
  #endWith(outcome: SessionOutcome, reason?: string): void {
    // A failed login says more about the session than how it ended afterwards.
    const keepFailure = this.#protocol.failedLoginIsOutcome && this.#loginFailed;
    if (outcome === 'shutdown' || (!keepFailure && outcome !== 'client-closed')) this.#outcome = outcome;
    if (reason !== undefined) this.#reason ??= reason;
    this.#end();
  }

  /** Call in the same tick as writing the "go ahead" reply (`OK Begin TLS`, `220`, `+OK`). */
  #startTls(): void {
    clearTimeout(this.#idleTimer);
    const plain = this.#socket;
    this.#detach(plain);
    const secureContext = this.#context.secureContext;
    if (!secureContext) {
      // A front only offers the upgrade on a listener that has a certificate; this is a wiring bug.
      this.#reason = `${this.#protocol.tlsCommand} without a TLS context`;
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
        this.#resolve({ type: 'tls-ready' });
        this.#armIdleTimer();
        socket.resume();
      },
      (err: Error) => {
        // A shutdown during the handshake closes the socket, which fails it: that is still a shutdown.
        if (this.#outcome !== 'shutdown') this.#outcome = 'protocol-error';
        this.#reason = `${this.#protocol.tlsCommand} failed: ${err.message}`;
        this.#finish();
      },
    );
  }

  #authenticate(action: Auth): void {
    clearTimeout(this.#idleTimer);
    this.#username = action.username;
    if (this.#protocol.maxBufferDuringLogin === 0) this.#socket.pause();
    this.#runLogin(action).catch((err: unknown) => {
      // performLogin never throws; this is for a bug past it (e.g. in a front's reply code).
      this.#reason = err instanceof Error ? err.message : String(err);
      if (this.#finished || !this.#front.authenticating) return;
      this.#resumeReading();
      const message = err instanceof Error ? err.message : String(err);
      this.#resolve({ type: 'auth-failed', error: new ProxyError('upstream-unavailable', message) });
      this.#armIdleTimer();
      this.#endIfIdle();
    });
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
    clearTimeout(this.#deadlineTimer);
    this.#context.loggedIn?.();
    const { socket: upstreamSocket, pending } = upstream.conn.detach();
    const client = this.#socket;
    this.#detach(client);
    this.#outcome = 'relayed';
    this.#reason = undefined;
    // Whatever the client pipelined after its login command is the upstream's, in order.
    const clientPending = this.#front.takeRemainder();
    // #onData counted the client's pipelined bytes; the upstream's were read by the login dialogue.
    this.#bytesToClient += pending.length;
    const relay = startRelay({
      client,
      upstream: upstreamSocket,
      clientPending,
      upstreamPending: pending,
      clientEnded: this.#clientEnded,
    });
    this.#relay = relay;
    void relay.done.then((result) => {
      this.#bytesFromClient += result.bytesFromClient;
      this.#bytesToClient += result.bytesToClient;
      if (result.error) this.#reason = `${result.endedBy}: ${result.error.message}`;
      else if (this.#outcome === 'relayed') this.#reason = `closed by ${result.endedBy}`;
      this.#relay = undefined;
      this.#finish();
    });
  }

  /** A login that ended in a local sender: the front goes on with the client itself. */
  #loggedInLocally(upstream: LocalUpstream, account: ResolvedAccount): void {
    this.#loginFailed = false;
    this.#local = { upstream, account };
    this.#upstreamLabel = upstream.label;
    // Logged in: the login deadline is over. Unlike a relayed session it still counts against the
    // per-address cap: each of these may hold a whole message in memory (up to the SIZE limit), so
    // the cap is what bounds what one address can make the proxy hold. Through a graceful shutdown it
    // runs on like a relayed session.
    clearTimeout(this.#deadlineTimer);
    this.#context.loggedIn?.({ stillCounted: true });
    this.#outcome = 'delivered';
    this.#reason = undefined;
    this.#resolve({ type: 'auth-succeeded', local: true });
    if (!this.#finished) this.#resumeReading();
    this.#endIfIdle();
    this.#armIdleTimer();
  }

  /** One message to the local sender; the front reads nothing until its outcome is back. */
  #deliver(message: OutgoingMessage): void {
    const local = this.#local;
    if (!local || this.#sending) {
      // A front only delivers after a local login, one message at a time; this is a wiring bug.
      this.#outcome = 'error';
      this.#reason = 'deliver without a local sender';
      this.#end();
      return;
    }
    clearTimeout(this.#idleTimer);
    const sending = new AbortController();
    this.#sending = sending;
    let outcome: Promise<SendOutcome>;
    try {
      outcome = local.upstream.sender.send(message, sending.signal);
    } catch (err) {
      outcome = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    outcome
      .catch((err: unknown): SendOutcome => {
        // A sender never throws; should one, the client is told to try again, never that it worked.
        const text = err instanceof Error ? err.message : String(err);
        this.#logger.error({ err: text }, 'message sender threw');
        return { kind: 'temporary', reason: 'internal error' };
      })
      .then((result) => {
        this.#sending = undefined;
        if (this.#finished) return;
        if (result.kind === 'sent') this.#messagesSent += 1;
        else this.#messagesRefused += 1;
        const consentHint = result.kind === 'needs-consent' ? this.#consentHint(local.account) : undefined;
        this.#resolve(
          consentHint === undefined
            ? { type: 'delivered', outcome: result }
            : { type: 'delivered', outcome: result, consentHint },
        );
        if (!this.#finished) this.#resumeReading();
        this.#armIdleTimer();
        this.#endIfIdle();
      })
      .catch((err: unknown) => {
        // A bug past the sender (e.g. in a reply); the session must still end.
        this.#outcome = 'error';
        this.#reason = err instanceof Error ? err.message : String(err);
        this.#finish();
      });
  }

  #consentHint(account: ResolvedAccount): string | undefined {
    try {
      return this.#deps.consentHint(account);
    } catch {
      // The reply still says "needs consent", only without the pointer.
      return undefined;
    }
  }

  // ---- socket, timer, login, end -------------------------------------------------------------

  #attach(socket: Socket): void {
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('error', (err) => {
      this.#reason ??= err.message;
    });
    socket.on('close', this.#onClose);
  }

  /** Removes our reading handlers only (a TLSSocket's internal 'close' listener must stay). */
  #detach(socket: Socket): void {
    socket.off('data', this.#onData);
    socket.off('end', this.#onEnd);
    socket.off('close', this.#onClose);
  }

  readonly #onEnd = (): void => {
    this.#clientEnded = true;
    this.#endIfIdle();
  };

  /**
   * After the client's end of input: what it sent before has been answered (the front read every
   * frame it could), and nothing is under way whose reply it still waits for, so the session ends.
   * Without a half-open listener Node has already ended our side; this then only finishes it.
   */
  #endIfIdle(): void {
    if (!this.#clientEnded || this.#finished || this.#relay) return;
    if (this.#front.authenticating || this.#sending) return;
    if (this.#socket.writableEnded) return;
    this.#end();
  }

  readonly #onData = (chunk: Buffer): void => {
    this.#bytesFromClient += chunk.length;
    if (this.#front.reading) this.#armIdleTimer();
    this.#run(this.#front.receive(chunk));
    // While a login or a send runs, what the client pipelines waits in the framer, up to a bound.
    if (this.#inputHeld()) this.#socket.pause();
  };

  readonly #onClose = (): void => {
    this.#finish();
  };

  #armIdleTimer(): void {
    clearTimeout(this.#idleTimer);
    if (!this.#front.reading) return;
    this.#idleTimer = setTimeout(
      () => this.#resolve({ type: 'idle-timeout' }),
      this.#local ? this.#limits.postLoginIdleTimeoutMs : this.#limits.preAuthIdleTimeoutMs,
    );
    this.#idleTimer.unref();
  }

  async #runLogin(action: Auth): Promise<void> {
    const { username, password } = action;
    const upstreamLogin: UpstreamLogin<U> = this.#protocol.upstreamLogin(action, this.#limits, this.#deps);
    const result = await performLogin(
      this.#deps,
      { username, password, remoteAddress: this.#context.remoteAddress, protocol: this.#protocol.name },
      upstreamLogin,
      this.#login.signal,
    );
    if (result.account) this.#account = result.account.id;
    if (this.#finished || this.#login.signal.aborted || !this.#front.authenticating) {
      if (result.ok) upstreamLogin.close(result.upstream);
      return;
    }
    if (result.ok) {
      const upstream: SessionUpstream = result.upstream;
      if (isLocalUpstream(upstream)) {
        this.#loggedInLocally(upstream, result.account);
        return;
      }
      // A login shows that this connection works as configured; its dialogue's EHLO is fresh knowledge.
      this.#deps.capabilities?.loggedIn(this.#protocol.name, result.account.connection, upstream.extensions);
      this.#loginFailed = false;
      this.#upstream = upstream;
      this.#upstreamLabel = upstream.conn.label;
      const { postLoginCapabilities, loginText } = upstream;
      this.#resolve({
        type: 'auth-succeeded',
        ...(postLoginCapabilities ? { capabilities: postLoginCapabilities } : {}),
        ...(loginText ? { text: loginText } : {}),
      });
      return;
    }
    const error = result.error;
    this.#loginFailed = true;
    if (this.#protocol.failedLoginIsOutcome) this.#outcome = error.code;
    this.#reason = error.message;
    this.#logger.info(
      { username, account: this.#account, code: error.code, err: error.message },
      'login failed',
    );
    const consentHint =
      isProxyError(error, 'needs-consent') && result.account ? this.#consentHint(result.account) : undefined;
    this.#resolve(
      consentHint === undefined
        ? { type: 'auth-failed', error }
        : { type: 'auth-failed', error, consentHint },
    );
    if (!this.#finished) this.#resumeReading();
    this.#endIfIdle();
    this.#armIdleTimer();
  }

  /** Ends the client connection after what was written has been flushed. */
  #end(): void {
    clearTimeout(this.#idleTimer);
    const socket = this.#socket;
    if (socket.destroyed) {
      this.#finish();
      return;
    }
    // Stop feeding the front: bytes still arriving are read and thrown away (never buffered), and
    // 'close' stays attached so the session still finishes.
    socket.off('data', this.#onData);
    socket.resume();
    socket.end();
    // A client that never reads its last reply must not keep the session alive.
    setTimeout(() => socket.destroy(), this.#protocol.closeGraceMs).unref();
  }

  #finish(): void {
    if (this.#finished || this.#relay) return;
    this.#finished = true;
    this.#front.dispose?.();
    clearTimeout(this.#idleTimer);
    clearTimeout(this.#deadlineTimer);
    this.#login.abort();
    // A client that hung up mid-send: the sender stops (its outcome is no longer anybody's).
    this.#sending?.abort();
    this.#upstream?.conn.close();
    this.#upstream = undefined;
    this.#socket.destroy();
    // Not the session child logger: the record carries `session` itself (no duplicate JSON keys).
    recordSessionEnd(this.#deps.logger, this.#deps.metrics, {
      protocol: this.#protocol.name,
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
      ...(this.#local ? { messagesSent: this.#messagesSent, messagesRefused: this.#messagesRefused } : {}),
    });
    this.#resolveClosed();
  }
}
