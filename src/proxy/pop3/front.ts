/**
 * Framer plus machine: the whole pre-authentication POP3 front without I/O. The session feeds it
 * socket bytes and async results and carries out the actions it returns; tests drive it directly.
 *
 * Lines are only taken from the framer while the machine waits for one. While a TLS handshake or a
 * login is under way the rest stays buffered, which is what keeps commands pipelined after PASS in
 * order for the upstream and lets STLS throw away what was sent before the handshake.
 */
import { Pop3LineFramer } from './framer.js';
import {
  initialState,
  isReading,
  step,
  type Pop3Action,
  type Pop3Event,
  type Pop3FrontConfig,
  type Pop3State,
} from './machine.js';

export type AsyncEvent = Exclude<
  Pop3Event,
  { type: 'line' } | { type: 'line-too-long' } | { type: 'connected' }
>;

export class Pop3Front {
  readonly #framer: Pop3LineFramer;
  readonly #config: Pop3FrontConfig;
  #state: Pop3State;

  constructor(config: Pop3FrontConfig, maxLineLength: number) {
    this.#config = config;
    this.#framer = new Pop3LineFramer(maxLineLength);
    this.#state = initialState(config);
  }

  get state(): Pop3State {
    return this.#state;
  }

  /** True while the machine wants client lines (not during TLS setup or a login, not after). */
  get reading(): boolean {
    return isReading(this.#state.phase);
  }

  /** True while a login runs (client bytes wait, unparsed). */
  get authenticating(): boolean {
    return this.#state.phase.name === 'authenticating';
  }

  /** Bytes received but not consumed as lines. */
  get buffered(): number {
    return this.#framer.buffered;
  }

  start(): Pop3Action[] {
    return this.#apply({ type: 'connected' });
  }

  receive(chunk: Buffer): Pop3Action[] {
    const phase = this.#state.phase.name;
    if (phase === 'closed' || phase === 'relay') return [];
    this.#framer.push(chunk);
    return this.#pump();
  }

  /** Results of asynchronous work and timers; buffered lines are processed afterwards when allowed. */
  resolve(event: AsyncEvent): Pop3Action[] {
    const actions = this.#apply(event);
    return actions.concat(this.#pump());
  }

  /** Everything the client sent after the last line the machine read (for the relay). */
  takeRemainder(): Buffer {
    return this.#framer.takeRemainder();
  }

  #pump(): Pop3Action[] {
    const actions: Pop3Action[] = [];
    while (this.reading) {
      const frame = this.#framer.next();
      if (frame === undefined) break;
      // UTF-8: passwords are compared with a hash of their UTF-8 bytes.
      const event: Pop3Event =
        frame.type === 'line'
          ? { type: 'line', line: frame.line.toString('utf8') }
          : { type: 'line-too-long' };
      actions.push(...this.#apply(event));
    }
    return actions;
  }

  #apply(event: Pop3Event): Pop3Action[] {
    const { state, actions } = step(this.#config, this.#state, event);
    this.#state = state;
    // RFC 2595 §3.1 / CVE-2011-0411: bytes that followed STLS in clear text must not be read as
    // commands after the handshake.
    if (actions.some((a) => a.type === 'start-tls')) this.#framer.takeRemainder();
    return actions;
  }
}
