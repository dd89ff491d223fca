/**
 * The vocabulary every protocol speaks before login, and the pure front that drives a protocol's
 * framer and machine with it. A protocol is its framer, parser, machine, replies and upstream
 * dialogue; the session (./session.ts) performs the actions below and feeds the events back.
 *
 * Frames are only taken from the framer while the machine waits for one. While a TLS handshake or a
 * login is under way the rest stays buffered: that keeps commands pipelined after a login in order
 * for the upstream, and lets the TLS upgrade throw away what was sent in clear text before it.
 */
import type { TlsMode } from '../../config/types.js';
import type { ProxyError } from '../../errors.js';
import type { OutgoingMessage, SendOutcome } from '../../graph/types.js';
import type { Secret } from './secret.js';
import type { SessionOutcome } from './types.js';

/** The machine asks for a login; a protocol may add what its upstream dialogue needs (SMTP: EHLO name). */
export interface AuthenticateAction {
  type: 'authenticate';
  username: string;
  password: Secret;
}

/** What a machine asks the session to do. */
export type FrontAction<Auth extends AuthenticateAction = AuthenticateAction> =
  /** One reply as the client reads it, without its final CRLF (the session adds it). */
  | { type: 'send'; reply: string }
  /** Send nothing more in clear text; upgrade the socket. */
  | { type: 'start-tls' }
  | Auth
  /** The success reply has been queued; from now on bytes flow untouched, pipelined ones first. */
  | { type: 'start-relay' }
  /** End the session after what was sent; `reason` is for the log line. */
  | { type: 'close'; outcome: SessionOutcome; reason?: string }
  /**
   * SMTP only (a login that ran locally, see `LocalUpstream` in ./session.ts): hand one message to the
   * session's sender. The machine reads nothing more until `delivered` comes back.
   */
  | { type: 'deliver'; message: OutgoingMessage };

/** What happens to a session outside its byte stream. */
export type FrontEvent =
  | { type: 'tls-ready' }
  /**
   * `capabilities`: the upstream's post-login capability list; `text`: its success text. `local`: no
   * upstream connection to relay to; the machine goes on with the client itself (SMTP in Graph mode).
   */
  | { type: 'auth-succeeded'; capabilities?: string; text?: string; local?: boolean }
  | { type: 'auth-failed'; error: ProxyError; consentHint?: string }
  | { type: 'idle-timeout' }
  /** The proxy is stopping and the session is not relaying yet. */
  | { type: 'shutdown' }
  /**
   * SMTP only: how the `deliver` action ended. `consentHint`: where the mailbox owner grants access,
   * added by the session to a `needs-consent` outcome as to a failed login.
   */
  | { type: 'delivered'; outcome: SendOutcome; consentHint?: string };

export interface Transition<S, A> {
  state: S;
  actions: A[];
}

/** Every machine's state has a phase with a name; these names mean the same in all protocols. */
export interface MachineState {
  phase: { name: string };
}

/**
 * A pull framer: bytes in, frames out, the unread rest on demand. `X`: what kind of frame the machine
 * expects next, for protocols whose framing changes with the dialogue (SMTP: a command line, a DATA
 * body, a BDAT chunk); line-only framers ignore it.
 */
export interface Framer<F, X = never> {
  push(chunk: Buffer): void;
  next(expect?: X): F | undefined;
  readonly buffered: number;
  /** Every byte not yet handed out as a frame; the framer is empty after. */
  takeRemainder(): Buffer;
}

/** A protocol's pure machine, with its configuration already applied. */
export interface Machine<S extends MachineState, E, A, X = never> {
  initial(): Transition<S, A>;
  step(state: S, event: E | FrontEvent): Transition<S, A>;
  /** True in the phases in which the machine wants the client's next frame. */
  reading(state: S): boolean;
  /** The kind of frame wanted next (see Framer); absent: the framer's only kind. */
  expect?(state: S): X;
}

/** Framer plus machine without I/O: what a session drives and what unit tests drive directly. */
export class Front<S extends MachineState, E, A extends { type: string }, F, X = never> {
  readonly #machine: Machine<S, E, A, X>;
  readonly #framer: Framer<F, X>;
  readonly #toEvent: (frame: F) => E;
  readonly #greeting: A[];
  #state: S;

  constructor(machine: Machine<S, E, A, X>, framer: Framer<F, X>, toEvent: (frame: F) => E) {
    this.#machine = machine;
    this.#framer = framer;
    this.#toEvent = toEvent;
    const first = machine.initial();
    this.#state = first.state;
    this.#greeting = first.actions;
  }

  get state(): S {
    return this.#state;
  }

  /** True while the machine wants client frames (not during TLS setup or a login, not after). */
  get reading(): boolean {
    return this.#machine.reading(this.#state);
  }

  /** True while a login runs (client bytes wait, unparsed). */
  get authenticating(): boolean {
    return this.#state.phase.name === 'authenticating';
  }

  /** Bytes received but not consumed as frames. */
  get buffered(): number {
    return this.#framer.buffered;
  }

  /** The greeting. */
  start(): A[] {
    return this.#greeting;
  }

  receive(chunk: Buffer): A[] {
    // After the goodbye nothing the client says matters, and once relaying its bytes are the relay's:
    // keeping them would let a half-open client grow our memory without bound.
    const phase = this.#state.phase.name;
    if (phase === 'closed' || phase === 'relay') return [];
    this.#framer.push(chunk);
    return this.#pump();
  }

  /** Results of asynchronous work and timers; buffered frames are processed afterwards when allowed. */
  resolve(event: FrontEvent): A[] {
    return this.#apply(event).concat(this.#pump());
  }

  /** Everything the client sent after the last frame the machine read (for the relay). */
  takeRemainder(): Buffer {
    return this.#framer.takeRemainder();
  }

  #pump(): A[] {
    const actions: A[] = [];
    while (this.reading) {
      const frame = this.#framer.next(this.#machine.expect?.(this.#state));
      if (frame === undefined) break;
      actions.push(...this.#apply(this.#toEvent(frame)));
    }
    return actions;
  }

  #apply(event: E | FrontEvent): A[] {
    const { state, actions } = this.#machine.step(this.#state, event);
    this.#state = state;
    // A client could hide commands behind its TLS request so that they are read as if they had come
    // over TLS; whatever followed it in our buffer is dropped (the TLS upgrade drops the socket's).
    // What was pipelined after the command that closed the session is never read either.
    if (state.phase.name === 'closed' || actions.some((a) => a.type === 'start-tls')) {
      this.#framer.takeRemainder();
    }
    return actions;
  }
}

/** Log reasons for the limits every protocol enforces before login. */
export const TOO_MANY_COMMANDS = 'commands before login';
export const TOO_MANY_FAILURES = 'too many failed logins';
export const HTTP_REQUEST = 'HTTP request';

/**
 * The failed-login count after one more failure. A temporary failure (token endpoint or mail server
 * down) is not the client's fault: counting it would disconnect honest clients during an outage.
 */
export function countFailure(failures: number, error: ProxyError): number {
  return error.transient ? failures : failures + 1;
}

/**
 * Whether a login is accepted (and offered) now: a STARTTLS listener refuses every login until the
 * client has upgraded; a plain (`none`) listener is loopback-only by design.
 */
export function loginAllowed(tls: TlsMode, secure: boolean): boolean {
  return tls !== 'starttls' || secure;
}

/** Whether the client may still ask for TLS (STARTTLS, STLS). */
export function tlsOffered(tls: TlsMode, secure: boolean): boolean {
  return tls === 'starttls' && !secure;
}
