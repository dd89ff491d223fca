/**
 * The SMTP front without I/O: framer plus machine, driven by the shared Front. Lines are decoded as
 * latin1 so that no byte is lost before the parser sees it; message content stays a Buffer.
 */
import { Front, type FrontEvent } from '../shared/front.js';
import type { BudgetShare } from '../shared/message-budget.js';
import { SmtpFramer, type Expect, type Frame } from './framer.js';
import {
  smtpMachine,
  type SmtpAction,
  type SmtpEvent,
  type SmtpFrontConfig,
  type SmtpState,
} from './machine.js';

function toEvent(frame: Frame): SmtpEvent {
  switch (frame.type) {
    case 'line':
      return { type: 'line', line: frame.line.toString('latin1') };
    case 'too-long':
      return { type: 'line-too-long' };
    case 'data':
      return { type: 'data', body: frame.body, tooLarge: frame.tooLarge, overBudget: frame.overBudget };
    case 'bdat':
      return { type: 'bdat-chunk', chunk: frame.chunk, size: frame.size, overBudget: frame.overBudget };
  }
}

export class SmtpFront extends Front<SmtpState, SmtpEvent, SmtpAction, Frame, Expect> {
  readonly #framer: SmtpFramer;
  readonly #budget: BudgetShare | undefined;
  /** Bytes of the message with the sender (between `deliver` and `delivered`). */
  #delivering = 0;

  /** `budget`: this session's share of the process's message memory (Graph mode). */
  constructor(config: SmtpFrontConfig, maxLineLength: number, budget?: BudgetShare) {
    const framer = new SmtpFramer(maxLineLength, budget);
    super(smtpMachine(config), framer, toEvent);
    this.#framer = framer;
    this.#budget = budget;
  }

  override receive(chunk: Buffer): SmtpAction[] {
    return this.#settle(super.receive(chunk));
  }

  override resolve(event: FrontEvent): SmtpAction[] {
    if (event.type === 'delivered') this.#delivering = 0;
    return this.#settle(super.resolve(event));
  }

  /** The session has ended: nothing of its message is held any more. */
  dispose(): void {
    this.#delivering = 0;
    this.#budget?.resetTo(0);
  }

  /** The share becomes what this session holds now: the frame under way, BDAT chunks, a message out. */
  #settle(actions: SmtpAction[]): SmtpAction[] {
    for (const action of actions)
      if (action.type === 'deliver') this.#delivering = action.message.data.length;
    if (this.#budget) {
      const phase = this.state.phase;
      const transaction = 'transaction' in phase ? phase.transaction : undefined;
      this.#budget.resetTo(this.#framer.keptBytes + (transaction?.size ?? 0) + this.#delivering);
    }
    return actions;
  }
}
