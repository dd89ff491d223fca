/**
 * One client connection of the IMAP front. Socket code only: it feeds bytes to the framer, frames to
 * the machine, performs the machine's actions (write, STARTTLS, login, relay, close), and writes the
 * session's one log line at the end.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { performLogin } from '../shared/login.js';
import { startRelay } from '../shared/relay.js';
import type { Secret } from '../shared/secret.js';
import { formatAddress, logSessionEnd } from '../shared/session-log.js';
import { upgradeToTls } from '../shared/starttls.js';
import type { ConnectionContext, ProxyDeps, ProxySession, SessionOutcome } from '../shared/types.js';
import { KEEPALIVE_DELAY_MS } from '../shared/upstream.js';
import { ImapFramer, type FramerEvent } from './framer.js';
import type { ImapLimits } from './limits.js';
import {
  initialState,
  isReading,
  step,
  type Action,
  type Event,
  type MachineConfig,
  type State,
} from './machine.js';
import { imapUpstreamLogin, type ImapUpstream } from './upstream-auth.js';

/** After our last words (BYE), how long the client gets to read them before the socket is destroyed. */
const CLOSE_GRACE_MS = 2_000;

export class ImapSession implements ProxySession {
  readonly closed: Promise<void>;
  #resolveClosed!: () => void;
  #socket: Socket;
  readonly #context: ConnectionContext;
  readonly #deps: ProxyDeps;
  readonly #limits: ImapLimits;
  readonly #config: MachineConfig;
  readonly #framer: ImapFramer;
  readonly #logger: Logger;
  readonly #started = Date.now();
  readonly #abort = new AbortController();
  #state: State;
  #idleTimer: NodeJS.Timeout | undefined;
  #upstream: ImapUpstream | undefined;
  #relay: ReturnType<typeof startRelay> | undefined;
  #bytesFromClient = 0;
  #bytesToClient = 0;
  #outcome: SessionOutcome | undefined;
  #reason: string | undefined;
  #username: string | undefined;
  #account: string | undefined;
  #upstreamLabel: string | undefined;
  #finished = false;
  #pumping = false;

  constructor(socket: Socket, context: ConnectionContext, deps: ProxyDeps, limits: ImapLimits) {
    this.#socket = socket;
    this.#context = context;
    this.#deps = deps;
    this.#limits = limits;
    this.#logger = deps.logger.child({ session: context.id });
    this.#config = {
      tls: context.listener.tls,
      maxCommandsBeforeLogin: limits.maxCommandsBeforeLogin,
      maxFailedLogins: limits.maxFailedLogins,
    };
    this.#framer = new ImapFramer(limits);
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    socket.setKeepAlive(true, KEEPALIVE_DELAY_MS);
    socket.setNoDelay(true);
    this.#attach(socket);
    const first = initialState(this.#config, context.secure);
    this.#state = first.state;
    this.#perform(first.actions);
    this.#armIdleTimer();
  }

  close(reason: 'shutdown'): void {
    if (this.#relay) {
      this.#outcome ??= reason;
      this.#relay.destroy();
      return;
    }
    this.#apply({ type: 'shutdown' });
    // A login in flight must not start a relay after shutdown.
    this.#abort.abort();
  }

  readonly #onData = (chunk: Buffer): void => {
    this.#bytesFromClient += chunk.length;
    this.#framer.push(chunk);
    this.#armIdleTimer();
    this.#pump();
  };

  readonly #onClose = (): void => this.#onClientClosed();

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

  #onClientClosed(): void {
    if (this.#relay) return; // the relay reports its own end
    this.#outcome ??= 'client-closed';
    this.#abort.abort();
    this.#finish();
  }

  /** Hands complete frames to the machine while it is in a reading phase. */
  #pump(): void {
    if (this.#pumping) return; // re-entrancy: actions may call back into pump
    this.#pumping = true;
    try {
      while (isReading(this.#state.phase)) {
        const event = this.#framer.next();
        if (!event) break;
        this.#apply(this.#fromFramer(event));
      }
    } finally {
      this.#pumping = false;
    }
  }

  #fromFramer(event: FramerEvent): Event {
    switch (event.type) {
      case 'frame':
        return { type: 'frame', frame: event.frame };
      case 'continue':
        return { type: 'continue-literal' };
      case 'error':
        return { type: 'framing-error', kind: event.kind };
    }
  }

  #apply(event: Event): void {
    const result = step(this.#config, this.#state, event);
    this.#state = result.state;
    this.#perform(result.actions);
  }

  #perform(actions: Action[]): void {
    for (const action of actions) {
      switch (action.type) {
        case 'send':
          this.#write(action.text);
          break;
        case 'start-tls':
          this.#startTls();
          break;
        case 'login':
          void this.#login(action.username, action.password);
          break;
        case 'start-relay':
          this.#startRelay();
          break;
        case 'close':
          this.#outcome ??= action.outcome;
          if (action.reason) this.#reason ??= action.reason;
          this.#endClient();
          break;
      }
    }
  }

  #write(text: string): void {
    if (this.#socket.destroyed || this.#socket.writableEnded) return;
    const data = Buffer.from(text, 'utf8');
    this.#bytesToClient += data.length;
    this.#socket.write(data);
  }

  #armIdleTimer(): void {
    clearTimeout(this.#idleTimer);
    if (!isReading(this.#state.phase)) return;
    this.#idleTimer = setTimeout(
      () => this.#apply({ type: 'idle-timeout' }),
      this.#limits.preAuthIdleTimeoutMs,
    );
    this.#idleTimer.unref();
  }

  #startTls(): void {
    const secureContext = this.#context.secureContext;
    clearTimeout(this.#idleTimer);
    // Injection defence, part 1: whatever followed STARTTLS in our buffer is thrown away.
    this.#framer.takeRemainder();
    const plain = this.#socket;
    this.#detach(plain);
    if (!secureContext) {
      this.#apply({ type: 'tls-failed' });
      return;
    }
    upgradeToTls(plain, secureContext).then(
      ({ socket }) => {
        this.#socket = socket;
        this.#attach(socket);
        this.#apply({ type: 'tls-started' });
        this.#armIdleTimer();
        this.#pump();
      },
      (err: Error) => {
        this.#reason ??= err.message;
        this.#apply({ type: 'tls-failed' });
        this.#finish();
      },
    );
  }

  async #login(username: string, password: Secret): Promise<void> {
    clearTimeout(this.#idleTimer);
    // Bytes the client pipelines now stay in the socket (and then the framer) until we know the outcome.
    this.#socket.pause();
    this.#username = username;
    const result = await performLogin(
      this.#deps,
      { username, password, remoteAddress: this.#context.remoteAddress },
      imapUpstreamLogin(this.#limits.upstreamTimeoutMs),
      this.#abort.signal,
    );
    if (this.#finished || this.#abort.signal.aborted || this.#state.phase.kind !== 'authenticating') {
      if (result.ok) result.upstream.conn.close();
      return;
    }
    if (result.account) this.#account = result.account.id;
    if (result.ok) {
      this.#upstream = result.upstream;
      this.#upstreamLabel = result.upstream.conn.label;
      this.#apply({
        type: 'login-succeeded',
        ...(result.upstream.postLoginCapabilities
          ? { capabilities: result.upstream.postLoginCapabilities }
          : {}),
        ...(result.upstream.loginText ? { text: result.upstream.loginText } : {}),
      });
      return;
    }
    const error = result.error;
    this.#logger.info(
      { username, account: this.#account, code: error.code, err: error.message },
      'login failed',
    );
    let consentHint: string | undefined;
    if (error.code === 'needs-consent' && result.account) {
      try {
        consentHint = this.#deps.consentHint(result.account);
      } catch {
        consentHint = undefined;
      }
    }
    this.#reason = error.message;
    this.#apply({ type: 'login-failed', error, ...(consentHint ? { consentHint } : {}) });
    if (isReading(this.#state.phase)) {
      this.#socket.resume();
      this.#armIdleTimer();
      this.#pump();
    }
  }

  #startRelay(): void {
    const upstream = this.#upstream;
    if (!upstream) {
      this.#outcome = 'error';
      this.#endClient();
      return;
    }
    const { socket: upstreamSocket, pending } = upstream.conn.detach();
    // Part of what the client pipelined after its login command may already sit in the framer.
    const clientPending = this.#framer.takeRemainder();
    const client = this.#socket;
    this.#detach(client);
    const bytesBefore = { from: this.#bytesFromClient - clientPending.length, to: this.#bytesToClient };
    this.#relay = startRelay({ client, upstream: upstreamSocket, clientPending, upstreamPending: pending });
    void this.#relay.done.then((result) => {
      this.#bytesFromClient = bytesBefore.from + result.bytesFromClient;
      this.#bytesToClient = bytesBefore.to + result.bytesToClient;
      this.#outcome ??= 'relayed';
      if (result.error) this.#reason ??= `${result.endedBy}: ${result.error.message}`;
      else this.#reason ??= `closed by ${result.endedBy}`;
      this.#finish();
    });
  }

  /** Ends the client connection gently (our last line gets out), then for sure. */
  #endClient(): void {
    clearTimeout(this.#idleTimer);
    const socket = this.#socket;
    if (!socket.destroyed) {
      socket.end();
      setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
    }
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    clearTimeout(this.#idleTimer);
    this.#upstream?.conn.close();
    if (!this.#socket.destroyed) this.#socket.destroy();
    // Not the session child logger: the record carries `session` itself (no duplicate JSON keys).
    logSessionEnd(this.#deps.logger, {
      protocol: 'imap',
      session: this.#context.id,
      client: formatAddress(this.#context.remoteAddress, this.#context.remotePort),
      ...(this.#username !== undefined ? { username: this.#username } : {}),
      ...(this.#account !== undefined ? { account: this.#account } : {}),
      ...(this.#upstreamLabel !== undefined ? { upstream: this.#upstreamLabel } : {}),
      bytesFromClient: this.#bytesFromClient,
      bytesToClient: this.#bytesToClient,
      durationMs: Date.now() - this.#started,
      outcome: this.#outcome ?? 'error',
      ...(this.#reason !== undefined ? { reason: this.#reason } : {}),
    });
    this.#resolveClosed();
  }
}
