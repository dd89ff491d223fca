/**
 * The account list behind `xoauth-proxy status` (and the admin page): every configured account, the
 * stored accounts a pattern entry matched, and stored grants no entry names any more. Never a token.
 */
import { findAccountEntry } from '../config/accounts.js';
import type { AccountConfig, Config, ConnectionConfig, SendMode } from '../config/types.js';
import { hasGraphConsent } from './grants/scopes.js';
import type { AccountState, GrantStore, TokenSummary } from '../store/types.js';

/** `unreadable`: the stored row cannot be decrypted; consent again (or restore the store) to fix it. */
export type AccountStatusState = AccountState | 'no-grant' | 'app-only' | 'service-account' | 'unreadable';

export interface AccountStatus {
  accountId: string;
  /** The config entry (username or pattern); undefined for a stored grant no entry matches. */
  entry: string | undefined;
  connection: string;
  state: AccountStatusState;
  identity?: string;
  displayName?: string;
  hasRefreshToken: boolean;
  /** Epoch ms. */
  accessTokenExpiresAt?: number;
  lastRefreshAt?: number;
  lastError?: string;
  scopes?: string[];
  /** Connections that send through Microsoft Graph (`send: graph` or `auto`): how this account sends. */
  sending?: SendingStatus;
}

export interface SendingStatus {
  mode: SendMode;
  /** What the next SMTP submission of this account uses. */
  via: 'smtp' | 'graph';
  /** `auto`: Exchange refused SMTP AUTH for this mailbox; Graph is used until then (epoch ms). */
  graphUntil?: number;
  /** false: the grant was consented without the Graph scopes, so the owner must consent again. */
  graphConsent?: boolean;
}

export function sendingStatus(
  connection: ConnectionConfig | undefined,
  record: TokenSummary | undefined,
  now: number,
): SendingStatus | undefined {
  const mode = connection?.send;
  if (!connection || mode === undefined || mode === 'smtp') return undefined;
  const until = record?.graphSendUntil;
  const switched = mode === 'auto' && until !== undefined && until > now;
  const out: SendingStatus = { mode, via: mode === 'graph' || switched ? 'graph' : 'smtp' };
  if (switched) out.graphUntil = until;
  if (record && record.unreadable === undefined && record.hasRefreshToken)
    out.graphConsent = hasGraphConsent(connection, record.scopes);
  return out;
}

function isPattern(text: string): boolean {
  return text.includes('*');
}

/** Every stored account without its secrets, an unreadable row included and marked. */
export function tokenSummaries(store: Pick<GrantStore, 'listTokenSummaries'>): Promise<TokenSummary[]> {
  return store.listTokenSummaries();
}

/** The state to show: `unreadable` wins over whatever state the damaged row still names. */
export function displayState(record: TokenSummary): AccountState | 'unreadable' {
  return record.unreadable !== undefined ? 'unreadable' : record.state;
}

function fromRecord(entry: string | undefined, record: TokenSummary): AccountStatus {
  const status: AccountStatus = {
    accountId: record.accountId,
    entry,
    connection: record.connection,
    state: displayState(record),
    hasRefreshToken: record.hasRefreshToken,
    scopes: record.scopes,
  };
  if (record.identity !== undefined) status.identity = record.identity;
  if (record.displayName !== undefined) status.displayName = record.displayName;
  if (record.accessTokenExpiresAt !== undefined) status.accessTokenExpiresAt = record.accessTokenExpiresAt;
  if (record.lastRefreshAt !== undefined) status.lastRefreshAt = record.lastRefreshAt;
  if (record.lastError !== undefined) status.lastError = record.lastError;
  if (record.unreadable !== undefined) {
    status.lastError =
      `${record.unreadable}: consent again (xoauth-proxy consent ${record.accountId}, or a consent ` +
      'link) or restore the store from a backup';
  }
  return status;
}

function fixedId(entry: AccountConfig): string | undefined {
  const mailbox = entry.email ?? entry.username;
  return isPattern(mailbox) ? undefined : mailbox.toLowerCase();
}

/** The config entry that serves a stored grant, if any still does (same connection). */
export function entryForStoredAccount(
  accounts: readonly AccountConfig[],
  accountId: string,
  connection: string,
): AccountConfig | undefined {
  const fixed = accounts.find((a) => a.connection === connection && fixedId(a) === accountId);
  if (fixed) return fixed;
  const entry = findAccountEntry(accounts, accountId);
  return entry && entry.connection === connection && fixedId(entry) === undefined ? entry : undefined;
}

export async function collectAccountStatus(
  config: Pick<Config, 'accounts' | 'connections'>,
  store: Pick<GrantStore, 'listTokenSummaries'>,
  now: number = Date.now(),
): Promise<AccountStatus[]> {
  // Summaries: no token leaves the store for a status list or a metrics scrape.
  const summaries = await tokenSummaries(store);
  const records = new Map(summaries.map((r) => [r.accountId, r]));
  const seen = new Set<string>();
  const out: AccountStatus[] = [];
  for (const entry of config.accounts) {
    const connection = config.connections.get(entry.connection);
    // Nothing is stored per mailbox for these: the state says which kind of grant serves them.
    const noConsent: AccountStatusState | undefined =
      connection?.grant === 'client_credentials'
        ? 'app-only'
        : connection?.grant === 'service_account'
          ? 'service-account'
          : undefined;
    const id = fixedId(entry);
    const ids =
      id !== undefined
        ? [id]
        : [...records.values()]
            // The stored ids this entry would serve: the lookup a login does (most specific pattern wins).
            .filter(
              (r) =>
                r.connection === entry.connection && findAccountEntry(config.accounts, r.accountId) === entry,
            )
            .map((r) => r.accountId);
    for (const accountId of ids) {
      if (seen.has(accountId)) continue;
      seen.add(accountId);
      const record = records.get(accountId);
      if (noConsent) {
        out.push({
          accountId,
          entry: entry.username,
          connection: entry.connection,
          state: noConsent,
          hasRefreshToken: false,
        });
      } else if (record) {
        out.push(fromRecord(entry.username, record));
      } else {
        out.push({
          accountId,
          entry: entry.username,
          connection: entry.connection,
          state: 'no-grant',
          hasRefreshToken: false,
        });
      }
    }
    if (ids.length === 0 && noConsent) {
      // A pattern on an app-only or service account connection: nothing stored per mailbox.
      out.push({
        accountId: entry.username,
        entry: entry.username,
        connection: entry.connection,
        state: noConsent,
        hasRefreshToken: false,
      });
    }
  }
  for (const record of records.values()) {
    if (!seen.has(record.accountId)) out.push(fromRecord(undefined, record));
  }
  for (const status of out) {
    const sending = sendingStatus(
      config.connections.get(status.connection),
      records.get(status.accountId),
      now,
    );
    if (sending) status.sending = sending;
  }
  return out;
}
