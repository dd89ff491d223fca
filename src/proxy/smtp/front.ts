/**
 * Framer plus machine: the whole pre-authentication SMTP front without I/O. The session feeds it
 * socket bytes and async results and carries out the actions it returns; tests drive it directly.
 *
 * Lines are only taken from the framer while the machine waits for one. While a TLS handshake or a
 * login is under way the rest stays buffered, which is what keeps pipelined commands after AUTH in
 * order for the upstream and lets STARTTLS throw away what was sent before the handshake.
 */
import { SmtpLineFramer } from './framer.js';
import {
  initialState,
  step,
  type SmtpAction,
  type SmtpEvent,
  type SmtpFrontConfig,
  type SmtpState,
} from './machine.js';

const READING = new Set(['command', 'plain-response', 'login-username', 'login-password']);

export class SmtpFront {
  private readonly framer: SmtpLineFramer;
  private current: SmtpState;

  constructor(
    private readonly config: SmtpFrontConfig,
    maxLineLength: number,
  ) {
    this.framer = new SmtpLineFramer(maxLineLength);
    this.current = initialState(config);
  }

  get state(): SmtpState {
    return this.current;
  }

  /** True while the machine wants client lines (not during TLS setup or a login, not after). */
  get reading(): boolean {
    return READING.has(this.current.phase.name);
  }

  /** True while a login runs (client bytes wait, unparsed). */
  get authenticating(): boolean {
    return this.current.phase.name === 'authenticating';
  }

  /** Bytes received but not consumed as lines. */
  get buffered(): number {
    return this.framer.buffered;
  }

  start(): SmtpAction[] {
    return this.apply({ type: 'connected' });
  }

  receive(chunk: Buffer): SmtpAction[] {
    const phase = this.current.phase.name;
    if (phase === 'closed' || phase === 'relay') return [];
    this.framer.push(chunk);
    return this.pump();
  }

  /** Results of asynchronous work and timers; buffered lines are processed afterwards when allowed. */
  resolve(
    event: Exclude<SmtpEvent, { type: 'line' } | { type: 'line-too-long' } | { type: 'connected' }>,
  ): SmtpAction[] {
    const actions = this.apply(event);
    return actions.concat(this.pump());
  }

  /** Everything the client sent after the last line the machine read (for the relay). */
  takeRemainder(): Buffer {
    return this.framer.takeRemainder();
  }

  private pump(): SmtpAction[] {
    const actions: SmtpAction[] = [];
    while (this.reading) {
      const frame = this.framer.next();
      if (frame === undefined) break;
      const event: SmtpEvent =
        frame.type === 'line'
          ? { type: 'line', line: frame.line.toString('latin1') }
          : { type: 'line-too-long' };
      actions.push(...this.apply(event));
    }
    return actions;
  }

  private apply(event: SmtpEvent): SmtpAction[] {
    const { state, actions } = step(this.config, this.current, event);
    this.current = state;
    // RFC 3207 §5: bytes that followed STARTTLS in clear text must not be read as commands after the
    // handshake (the CVE-2011-0411 family of injection bugs).
    if (actions.some((a) => a.type === 'start-tls')) this.framer.takeRemainder();
    return actions;
  }
}
