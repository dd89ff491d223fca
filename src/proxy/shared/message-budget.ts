/**
 * The message content all SMTP sessions of the process hold at once, in Graph mode (where the proxy,
 * not the upstream, receives the message). Each session holds at most one message, up to the SIZE
 * limit, but many sessions could each park a message just short of its end; the budget turns the
 * one that would pass it away with `452 4.3.1` (try again later) instead of letting memory run out.
 *
 * A session's share is set to exactly what it holds after every step of its front (`resetTo`), so
 * content that was refused, sent or abandoned never stays counted; within a step the framer reserves
 * piece by piece, so one large chunk cannot overshoot.
 */
export class MessageBudget {
  #held = 0;

  constructor(readonly maxBytes: number) {}

  /** Bytes of message content held now, across all sessions. */
  get held(): number {
    return this.#held;
  }

  share(): BudgetShare {
    return new BudgetShare(this);
  }

  /** @internal for BudgetShare */
  tryAdd(n: number): boolean {
    if (this.#held + n > this.maxBytes) return false;
    this.#held += n;
    return true;
  }

  /** @internal for BudgetShare */
  adjust(delta: number): void {
    this.#held = Math.max(0, this.#held + delta);
  }
}

/** One session's part of the budget. */
export class BudgetShare {
  #mine = 0;

  constructor(private readonly budget: MessageBudget) {}

  get held(): number {
    return this.#mine;
  }

  /** Room for `n` more bytes of content, or false (the message is then refused). */
  reserve(n: number): boolean {
    if (!this.budget.tryAdd(n)) return false;
    this.#mine += n;
    return true;
  }

  /** What the session really holds now (0 when it ends). */
  resetTo(n: number): void {
    this.budget.adjust(n - this.#mine);
    this.#mine = n;
  }
}
