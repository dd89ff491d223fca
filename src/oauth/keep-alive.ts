/**
 * The keep-alive: when to refresh, apart from how (the token manager). It refreshes every stored
 * grant not refreshed within keepAliveIntervalMs, one at a time, so that a revoked grant shows in
 * `status` before a user notices and rolling refresh tokens do not age out. Failing accounts are
 * retried here too (after their backoff), which is how they recover unattended.
 */
import type { Logger } from 'pino';
import { grantHasNoConsent } from '../config/accounts.js';
import type { Config, ResolvedAccount } from '../config/types.js';
import type { GrantStore, TokenRecord } from '../store/types.js';
import { entryForStoredAccount } from './account-status.js';
import type { AccessToken } from './types.js';

export interface KeepAliveTokens {
  getAccessToken(account: ResolvedAccount, options: { forceRefresh: true }): Promise<AccessToken>;
  /** `failing`: a run of failed attempts is on; `due`: its backoff no longer holds this token back. */
  keepAliveDue(accountId: string, refreshToken: string): { due: boolean; failing: boolean };
}

export interface KeepAliveOptions {
  config: Pick<Config, 'settings' | 'accounts' | 'connections'>;
  store: Pick<GrantStore, 'listTokens'>;
  logger: Logger;
  now: () => number;
  tokens: KeepAliveTokens;
  /** Saves rotated refresh tokens the store refused earlier; first thing on every pass. */
  flush: () => Promise<void>;
}

export class KeepAlive {
  readonly #o: KeepAliveOptions;
  /** Accounts whose stored row could not be read, each logged once until it reads again. */
  readonly #unreadable = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;

  constructor(options: KeepAliveOptions) {
    this.#o = options;
  }

  /** Starts the timer (unref'd: it never keeps the process alive on its own). */
  start(): void {
    if (this.#timer) return;
    const interval = this.#o.config.settings.keepAliveIntervalMs;
    const every = Math.min(Math.max(interval / 4, 1000), 15 * 60_000);
    this.#timer = setInterval(() => {
      if (!this.#running) this.#running = this.run().finally(() => (this.#running = undefined));
    }, every);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  async run(): Promise<void> {
    const { config, logger: log, now, tokens } = this.#o;
    const interval = config.settings.keepAliveIntervalMs;
    await this.#o.flush();
    let records: TokenRecord[];
    const unreadable = new Set<string>();
    try {
      // A row that cannot be read is reported for its account; every other account is refreshed.
      records = await this.#o.store.listTokens((row) => {
        unreadable.add(row.accountId);
        if (this.#unreadable.has(row.accountId)) return;
        this.#unreadable.add(row.accountId);
        log.error(
          { account: row.accountId, connection: row.connection, reason: row.reason },
          'keep-alive: the stored grant of this account cannot be read (status shows it as unreadable); ' +
            'consent again or restore the store from a backup',
        );
      });
    } catch (err) {
      log.error({ err: errorText(err) }, 'keep-alive: cannot read the token store');
      return;
    }
    for (const id of this.#unreadable) if (!unreadable.has(id)) this.#unreadable.delete(id);
    for (const record of records) {
      if (!record.refreshToken || record.state === 'needs-consent') continue;
      const pacing = tokens.keepAliveDue(record.accountId, record.refreshToken);
      // A run of transient failures (still `active`) is retried here too, so it ends unattended.
      const due =
        now() - (record.lastRefreshAt ?? 0) >= interval || record.state === 'failing' || pacing.failing;
      if (!due || !pacing.due) continue;
      const connection = config.connections.get(record.connection);
      if (!connection || grantHasNoConsent(connection)) continue;
      // A grant no config entry serves any more is left alone (status lists it as "not in config").
      if (!entryForStoredAccount(config.accounts, record.accountId, record.connection)) continue;
      const account: ResolvedAccount = {
        id: record.accountId,
        username: record.accountId,
        email: record.accountId,
        connection,
        entry: record.accountId,
      };
      try {
        await tokens.getAccessToken(account, { forceRefresh: true });
        log.debug({ account: record.accountId }, 'keep-alive refresh done');
      } catch (err) {
        log.warn({ account: record.accountId, err: errorText(err) }, 'keep-alive refresh failed');
      }
    }
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
