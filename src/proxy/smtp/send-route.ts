/**
 * Which way an SMTP login's messages leave the proxy: relayed to the connection's SMTP server, or
 * through Microsoft Graph with the proxy ending the SMTP transaction itself.
 *
 * `send: graph` always uses Graph. `send: auto` uses SMTP until Exchange Online refuses the mailbox's
 * SMTP login with `535 5.7.139` (SMTP AUTH switched off for the tenant or the mailbox); then Graph for
 * SWITCH_FOR_MS. The switch is kept with the grant in the store, so every instance (and `status`) knows
 * it, and in memory for a short while, so a login storm reads the store once. After the period SMTP is
 * tried again: an admin may have turned SMTP AUTH back on, and SMTP is the byte-exact path.
 */
import type { Logger } from 'pino';
import type { ResolvedAccount } from '../../config/types.js';
import type { GrantStore } from '../../store/types.js';

/** How long a mailbox refused SMTP AUTH keeps sending through Graph before SMTP is tried again. */
export const SWITCH_FOR_MS = 24 * 3600_000;
/** How long a route read from the store is trusted without reading again. */
const REMEMBER_MS = 30_000;

/** Exchange Online's answer when SMTP AUTH is disabled for the tenant or the mailbox. */
export function smtpAuthDisabled(reply: string): boolean {
  return /\b5\.7\.139\b/.test(reply);
}

export type SendRoute = 'smtp' | 'graph';

export interface SendRouterOptions {
  store: Pick<GrantStore, 'getToken' | 'updateToken'>;
  logger: Logger;
  now?: () => number;
  switchForMs?: number;
}

export class SendRouter {
  readonly #store: SendRouterOptions['store'];
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #switchForMs: number;
  /** account id -> the stored switch (0: none) and when it was read. */
  readonly #known = new Map<string, { until: number; readAt: number }>();

  constructor(options: SendRouterOptions) {
    this.#store = options.store;
    this.#log = options.logger;
    this.#now = options.now ?? Date.now;
    this.#switchForMs = options.switchForMs ?? SWITCH_FOR_MS;
  }

  /** The route of this account's next login. A store that cannot be read means SMTP (auto retries). */
  async route(account: ResolvedAccount): Promise<SendRoute> {
    const mode = account.connection.send ?? 'smtp';
    if (mode !== 'auto') return mode;
    const now = this.#now();
    let known = this.#known.get(account.id);
    if (!known || now - known.readAt > REMEMBER_MS) {
      try {
        const record = await this.#store.getToken(account.id);
        known = { until: record?.graphSendUntil ?? 0, readAt: now };
      } catch {
        known = { until: known?.until ?? 0, readAt: now };
      }
      this.#remember(account.id, known);
    }
    return known.until > now ? 'graph' : 'smtp';
  }

  /** Exchange refused SMTP AUTH for this mailbox: Graph from now on, for every instance. */
  async switchToGraph(account: ResolvedAccount, reply: string): Promise<void> {
    const now = this.#now();
    const until = now + this.#switchForMs;
    this.#remember(account.id, { until, readAt: now });
    this.#log.warn(
      { account: account.id, until: new Date(until).toISOString(), reply },
      'SMTP AUTH is disabled for this mailbox: sending through Microsoft Graph',
    );
    try {
      await this.#store.updateToken(account.id, (current) =>
        current ? { ...current, graphSendUntil: until, updatedAt: now } : undefined,
      );
    } catch (err) {
      // This instance still switches; others find out from their own first refusal.
      this.#log.warn(
        { account: account.id, err: err instanceof Error ? err.message : String(err) },
        'cannot record the switch to Graph in the store',
      );
    }
  }

  #remember(id: string, value: { until: number; readAt: number }): void {
    // Bounded: a long-running daemon with many auto accounts keeps only recent ones.
    if (this.#known.size >= 10_000 && !this.#known.has(id)) {
      const oldest = this.#known.keys().next().value;
      if (oldest !== undefined) this.#known.delete(oldest);
    }
    this.#known.delete(id);
    this.#known.set(id, value);
  }
}
