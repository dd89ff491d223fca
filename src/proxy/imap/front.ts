/**
 * Framer plus machine: the whole pre-authentication IMAP front without I/O. The session feeds it
 * socket bytes and async results and carries out the actions it returns; tests can drive it directly.
 *
 * Frames are only taken from the framer while the machine waits for one. While a TLS handshake or a
 * login is under way the rest stays buffered, which is what keeps commands pipelined after LOGIN in
 * order for the upstream and lets STARTTLS throw away what was sent before the handshake.
 */
import { ImapFramer, type FramerEvent, type FramerLimits } from './framer.js';
import {
  initialState,
  isReading,
  step,
  type Action,
  type Event,
  type MachineConfig,
  type State,
} from './machine.js';

/** The events that do not come from the client's bytes. */
export type AsyncEvent = Exclude<
  Event,
  { type: 'frame' } | { type: 'continue-literal' } | { type: 'framing-error' }
>;

export class ImapFront {
  readonly #framer: ImapFramer;
  readonly #config: MachineConfig;
  readonly #greeting: Action[];
  #state: State;

  constructor(config: MachineConfig, limits: FramerLimits, secure: boolean) {
    this.#config = config;
    this.#framer = new ImapFramer(limits);
    const first = initialState(config, secure);
    this.#state = first.state;
    this.#greeting = first.actions;
  }

  get state(): State {
    return this.#state;
  }

  /** True while the machine wants client frames (not during TLS setup or a login, not after). */
  get reading(): boolean {
    return isReading(this.#state.phase);
  }

  /** True while a login runs (client bytes wait, unparsed). */
  get authenticating(): boolean {
    return this.#state.phase.kind === 'authenticating';
  }

  /** Bytes received but not consumed as frames. */
  get buffered(): number {
    return this.#framer.buffered;
  }

  /** The greeting. */
  start(): Action[] {
    return this.#greeting;
  }

  receive(chunk: Buffer): Action[] {
    // After BYE nothing the client says matters, and once relaying its bytes are the relay's: keeping
    // them would let a half-open client grow our memory without bound.
    const phase = this.#state.phase.kind;
    if (phase === 'closed' || phase === 'relaying') return [];
    this.#framer.push(chunk);
    return this.#pump();
  }

  /** Results of asynchronous work and timers; buffered frames are processed afterwards when allowed. */
  resolve(event: AsyncEvent): Action[] {
    return this.#apply(event).concat(this.#pump());
  }

  /** Everything the client sent after the last frame the machine read (for the relay). */
  takeRemainder(): Buffer {
    return this.#framer.takeRemainder();
  }

  #pump(): Action[] {
    const actions: Action[] = [];
    while (this.reading) {
      const event = this.#framer.next();
      if (!event) break;
      actions.push(...this.#apply(fromFramer(event)));
    }
    return actions;
  }

  #apply(event: Event): Action[] {
    const { state, actions } = step(this.#config, this.#state, event);
    this.#state = state;
    // Injection defence, part 1 (RFC 3501 §6.2.1): whatever followed STARTTLS in our buffer is
    // thrown away; upgradeToTls drops what is still in the socket.
    if (actions.some((a) => a.type === 'start-tls')) this.#framer.takeRemainder();
    // What was pipelined after the command that closed the session is never read: let it go.
    if (state.phase.kind === 'closed') this.#framer.takeRemainder();
    return actions;
  }
}

function fromFramer(event: FramerEvent): Event {
  switch (event.type) {
    case 'frame':
      return { type: 'frame', frame: event.frame };
    case 'continue':
      return { type: 'continue-literal' };
    case 'error':
      return { type: 'framing-error', kind: event.kind };
  }
}
