/**
 * The lifecycle every protocol front shares: the only code that touches the client socket, its timer
 * and the login. A protocol session (imap/smtp/pop3 `session.ts`) extends this class, plugs in its pure
 * front (framer + machine), runs the front's actions, and maps the events below onto its own machine's.
 *
 *   bytes ─▶ front.receive ─▶ run(actions) ─▶ write / startTls / authenticate / startRelay / endWith
 *   TLS ready, login result, idle timeout, shutdown, hang-up ─▶ resolve(event) ─▶ run(actions)
 *
 * It also keeps the bookkeeping for the session's one log line (bytes, user, account, upstream,
 * outcome, reason) and writes it once both legs are closed; the same record feeds the metrics.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { isProxyError, ProxyError } from '../../errors.js';
import { performLogin, type UpstreamLogin } from './login.js';
import { startRelay, type Relay } from './relay.js';
import type { Secret } from './secret.js';
import { formatAddress, recordSessionEnd } from './session-log.js';
import { upgradeToTls } from './starttls.js';
import type { ConnectionContext, ProxyDeps, ProxySession, SessionOutcome, SessionRecord } from './types.js';
import { KEEPALIVE_DELAY_MS, type UpstreamConnection } from './upstream.js';

/** An authenticated upstream as a protocol's UpstreamLogin hands it back. */
export interface AuthenticatedUpstream {
  conn: UpstreamConnection;
}

/** What happens to a session from outside its byte stream; each protocol maps these onto its machine. */
export type SessionEvent<U extends AuthenticatedUpstream> =
  | { type: 'tls-ready' }
  | { type: 'auth-succeeded'; upstream: U }
  | { type: 'auth-failed'; error: ProxyError; consentHint?: string }
  | { type: 'idle-timeout' }
  /** The proxy is stopping and the session is not relaying yet. */
  | { type: 'shutdown' }
  /** The client hung up before the relay. */
  | { type: 'client-closed' };

/** The protocol differences the shared lifecycle needs to know about. */
export interface FrontSessionSpec {
  protocol: SessionRecord['protocol'];
  /** The client's TLS upgrade command, for log reasons. */
  tlsCommand: 'STARTTLS' | 'STLS';
  preAuthIdleTimeoutMs: number;
  /** After our last words, how long the client gets to read them before the socket is destroyed. */
  closeGraceMs: number;
  /**
   * While a login runs, client bytes keep being read (so a hang-up is noticed) but not parsed; past this
   * many buffered bytes the socket is paused. 0: paused as soon as the login starts.
   */
  maxBufferDuringLogin: number;
  /** A failed login stays the session's outcome even if the client then quits (SMTP, POP3). */
  failedLoginIsOutcome: boolean;
}

/** The pure front a session drives (framer + machine); `A` is the protocol's action type. */
export interface SessionFront<A> {
  /** True while the machine wants client commands (the idle timer runs only then). */
  readonly reading: boolean;
  /** True while the machine waits for a login's result. */
  readonly authenticating: boolean;
  /** Client bytes received but not yet consumed. */
  readonly buffered: number;
  /** The greeting. */
  start(): A[];
  receive(chunk: Buffer): A[];
  /** Everything the client sent after the last command the machine read (for the relay). */
  takeRemainder(): Buffer;
}

/** Without a config (tests): from connect to login at most this long. */
const DEFAULT_LOGIN_DEADLINE_MS = 5 * 60_000;

export abstract class FrontSession<U extends AuthenticatedUpstream, A> implements ProxySession {
  readonly closed: Promise<void>;
  #resolveClosed!: () => void;
  protected socket: Socket;
  protected readonly context: ConnectionContext;
  protected readonly deps: ProxyDeps;
  readonly #spec: FrontSessionSpec;
  /** Carries the session id; for lines other than the session's last. */
  readonly #logger: Logger;
  readonly #started = Date.now();
  readonly #login = new AbortController();
  #idleTimer: NodeJS.Timeout | undefined;
  /** The absolute pre-login deadline: the idle timer restarts on every byte, this one does not. */
  #deadlineTimer: NodeJS.Timeout | undefined;
  #relay: Relay | undefined;
  /** The authenticated upstream between its OK and the start of the relay. */
  #upstream: U | undefined;
  #loginFailed = false;
  #finished = false;
  #bytesFromClient = 0;
  #bytesToClient = 0;
  #outcome: SessionOutcome = 'client-closed';
  #reason: string | undefined;
  #username: string | undefined;
  #account: string | undefined;
  #upstreamLabel: string | undefined;

  constructor(socket: Socket, context: ConnectionContext, deps: ProxyDeps, spec: FrontSessionSpec) {
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    this.socket = socket;
    this.context = context;
    this.deps = deps;
    this.#spec = spec;
    this.#logger = deps.logger.child({ session: context.id });
    socket.setKeepAlive(true, KEEPALIVE_DELAY_MS);
    socket.setNoDelay(true);
    deps.metrics?.sessionStarted(spec.protocol);
  }

  // ---- what a protocol plugs in --------------------------------------------------------------

  protected abstract readonly front: SessionFront<A>;
  /** Carries out the front's actions (with write, startTls, authenticate, startRelay, endWith). */
  protected abstract run(actions: A[]): void;
  /** Feeds an outside event to the front and runs its actions. */
  protected abstract resolve(event: SessionEvent<U>): void;

  /** Call once at the end of the subclass constructor, when the front exists. */
  protected begin(): void {
    this.#attach(this.socket);
    this.run(this.front.start());
    this.#armIdleTimer();
    const deadlineMs = this.deps.config.settings?.limits?.loginDeadlineMs ?? DEFAULT_LOGIN_DEADLINE_MS;
    this.#deadlineTimer = setTimeout(() => this.#onLoginDeadline(deadlineMs), deadlineMs);
    this.#deadlineTimer.unref();
  }

  #onLoginDeadline(deadlineMs: number): void {
    if (this.#finished || this.#relay || this.#upstream) return;
    this.#reason ??= `not logged in within ${deadlineMs} ms`;
    if (this.front.reading) {
      // The protocol's own goodbye for a client that took too long (IMAP BYE, SMTP 421, POP3 -ERR).
      this.resolve({ type: 'idle-timeout' });
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
    this.resolve({ type: 'shutdown' });
  }

  // ---- the actions a front asks for ----------------------------------------------------------

  protected write(text: string): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    const data = Buffer.from(text, 'utf8');
    this.#bytesToClient += data.length;
    this.socket.write(data);
  }

  /** The front closed the session: records why, then ends the client connection gently. */
  protected endWith(outcome: SessionOutcome, reason?: string): void {
    // A failed login says more about the session than how it ended afterwards.
    const keepFailure = this.#spec.failedLoginIsOutcome && this.#loginFailed;
    if (outcome === 'shutdown' || (!keepFailure && outcome !== 'client-closed')) this.#outcome = outcome;
    if (reason !== undefined) this.#reason ??= reason;
    this.#end();
  }

  /** Call in the same tick as writing the "go ahead" reply (`OK Begin TLS`, `220`, `+OK`). */
  protected startTls(): void {
    clearTimeout(this.#idleTimer);
    const plain = this.socket;
    this.#detach(plain);
    const secureContext = this.context.secureContext;
    if (!secureContext) {
      // A front only offers the upgrade on a listener that has a certificate; this is a wiring bug.
      this.#reason = `${this.#spec.tlsCommand} without a TLS context`;
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
        this.socket = socket;
        this.#attach(socket);
        this.resolve({ type: 'tls-ready' });
        this.#armIdleTimer();
        socket.resume();
      },
      (err: Error) => {
        // A shutdown during the handshake closes the socket, which fails it: that is still a shutdown.
        if (this.#outcome !== 'shutdown') this.#outcome = 'protocol-error';
        this.#reason = `${this.#spec.tlsCommand} failed: ${err.message}`;
        this.#finish();
      },
    );
  }

  protected authenticate(username: string, password: Secret, upstreamLogin: UpstreamLogin<U>): void {
    clearTimeout(this.#idleTimer);
    this.#username = username;
    if (this.#spec.maxBufferDuringLogin === 0) this.socket.pause();
    this.#runLogin(username, password, upstreamLogin).catch((err: unknown) => {
      // performLogin never throws; this is for a bug past it (e.g. in a front's reply code).
      this.#reason = err instanceof Error ? err.message : String(err);
      if (this.#finished || !this.front.authenticating) return;
      this.socket.resume();
      const message = err instanceof Error ? err.message : String(err);
      this.resolve({ type: 'auth-failed', error: new ProxyError('upstream-unavailable', message) });
      this.#armIdleTimer();
    });
  }

  protected startRelay(): void {
    const upstream = this.#upstream;
    this.#upstream = undefined;
    if (!upstream) {
      this.#outcome = 'error';
      this.#end();
      return;
    }
    clearTimeout(this.#idleTimer);
    clearTimeout(this.#deadlineTimer);
    this.context.loggedIn?.();
    const { socket: upstreamSocket, pending } = upstream.conn.detach();
    const client = this.socket;
    this.#detach(client);
    this.#outcome = 'relayed';
    this.#reason = undefined;
    // Whatever the client pipelined after its login command is the upstream's, in order.
    const clientPending = this.front.takeRemainder();
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

  // ---- socket, timer, login, end -------------------------------------------------------------

  #attach(socket: Socket): void {
    socket.on('data', this.#onData);
    socket.on('error', (err) => {
      this.#reason ??= err.message;
    });
    socket.on('close', this.#onClose);
  }

  /** Removes our reading handlers only (a TLSSocket's internal 'close' listener must stay). */
  #detach(socket: Socket): void {
    socket.off('data', this.#onData);
    socket.off('close', this.#onClose);
  }

  readonly #onData = (chunk: Buffer): void => {
    this.#bytesFromClient += chunk.length;
    if (this.front.reading) this.#armIdleTimer();
    this.run(this.front.receive(chunk));
    if (this.front.authenticating && this.front.buffered > this.#spec.maxBufferDuringLogin) {
      this.socket.pause();
    }
  };

  readonly #onClose = (): void => {
    this.#login.abort();
    this.resolve({ type: 'client-closed' });
    this.#finish();
  };

  #armIdleTimer(): void {
    clearTimeout(this.#idleTimer);
    if (!this.front.reading) return;
    this.#idleTimer = setTimeout(
      () => this.resolve({ type: 'idle-timeout' }),
      this.#spec.preAuthIdleTimeoutMs,
    );
    this.#idleTimer.unref();
  }

  async #runLogin(username: string, password: Secret, upstreamLogin: UpstreamLogin<U>): Promise<void> {
    const result = await performLogin(
      this.deps,
      { username, password, remoteAddress: this.context.remoteAddress, protocol: this.#spec.protocol },
      upstreamLogin,
      this.#login.signal,
    );
    if (result.account) this.#account = result.account.id;
    if (this.#finished || this.#login.signal.aborted || !this.front.authenticating) {
      if (result.ok) upstreamLogin.close(result.upstream);
      return;
    }
    if (result.ok) {
      this.#loginFailed = false;
      this.#upstream = result.upstream;
      this.#upstreamLabel = result.upstream.conn.label;
      this.resolve({ type: 'auth-succeeded', upstream: result.upstream });
      return;
    }
    const error = result.error;
    this.#loginFailed = true;
    if (this.#spec.failedLoginIsOutcome) this.#outcome = error.code;
    this.#reason = error.message;
    this.#logger.info(
      { username, account: this.#account, code: error.code, err: error.message },
      'login failed',
    );
    let consentHint: string | undefined;
    if (isProxyError(error, 'needs-consent') && result.account) {
      try {
        consentHint = this.deps.consentHint(result.account);
      } catch {
        // The reply still says "needs consent", only without the pointer.
        consentHint = undefined;
      }
    }
    this.socket.resume();
    this.resolve(
      consentHint === undefined
        ? { type: 'auth-failed', error }
        : { type: 'auth-failed', error, consentHint },
    );
    this.#armIdleTimer();
  }

  /** Ends the client connection after what was written has been flushed. */
  #end(): void {
    clearTimeout(this.#idleTimer);
    const socket = this.socket;
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
    setTimeout(() => socket.destroy(), this.#spec.closeGraceMs).unref();
  }

  #finish(): void {
    if (this.#finished || this.#relay) return;
    this.#finished = true;
    clearTimeout(this.#idleTimer);
    clearTimeout(this.#deadlineTimer);
    this.#login.abort();
    this.#upstream?.conn.close();
    this.#upstream = undefined;
    this.socket.destroy();
    // Not the session child logger: the record carries `session` itself (no duplicate JSON keys).
    recordSessionEnd(this.deps.logger, this.deps.metrics, {
      protocol: this.#spec.protocol,
      session: this.context.id,
      client: formatAddress(this.context.remoteAddress, this.context.remotePort),
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
