/**
 * One grant as a table row, for every store: the same columns, the same AES-256-GCM sealing of the
 * two secrets (bound to the field and the account, so a sealed value copied to another row or
 * column does not open), and the same rules for a row that cannot be read. A copy from one store to
 * another moves the sealed values as they are; no store ever holds a token in clear.
 */
import { hkdfSync } from 'node:crypto';
import { ProxyError } from '../errors.js';
import { decryptSecret, DecryptError, encryptSecret } from './cipher.js';
import type {
  AccountState,
  CompletedConsentRecord,
  PendingConsentRecord,
  TokenRecord,
  TokenSummary,
  UnreadableToken,
} from './types.js';

/** A consent in progress or finished, as a row: what is secret or personal is in `body`, sealed. */
export interface ConsentStateRow {
  state: string;
  link_hash: string | null;
  account_id: string;
  expires_at: number;
  created_at: number;
  body: string;
}

interface PendingBody {
  kind: 'pending';
  username: string;
  codeVerifier: string;
  redirectUri: string;
  browser: string;
}
interface CompletedBody {
  kind: 'completed';
  email: string;
}

export interface TokenRow {
  account_id: string;
  connection: string;
  refresh_token: string | null;
  access_token: string | null;
  access_expires_at: number | null;
  scopes: string;
  identity: string | null;
  display_name: string | null;
  state: string;
  last_refresh_at: number | null;
  last_error: string | null;
  in_doubt_until: number | null;
  graph_send_until: number | null;
  updated_at: number;
}

export const TOKEN_COLUMNS = [
  'account_id',
  'connection',
  'refresh_token',
  'access_token',
  'access_expires_at',
  'scopes',
  'identity',
  'display_name',
  'state',
  'last_refresh_at',
  'last_error',
  'in_doubt_until',
  'graph_send_until',
  'updated_at',
] as const satisfies readonly (keyof TokenRow)[];

const KEY_CHECK_PLAINTEXT = 'xoauth-proxy key check';
const KEY_CHECK_AAD = 'meta:key-check';
const STATES: ReadonlySet<string> = new Set<AccountState>(['active', 'needs-consent', 'failing']);

function secretAad(field: 'refresh' | 'access', accountId: string): string {
  return `xoauth-proxy:${field}:${accountId}`;
}

export class RowCodec {
  readonly #key: Buffer;
  /** Where the rows live, for messages. */
  readonly #location: string;

  constructor(key: Buffer, location: string) {
    this.#key = key;
    this.#location = location;
  }

  /** The sealed value a new store keeps, to tell later whether it is opened with the same key. */
  keyCheck(): string {
    return encryptSecret(this.#key, KEY_CHECK_PLAINTEXT, KEY_CHECK_AAD);
  }

  keyCheckMatches(sealed: string): boolean {
    try {
      return decryptSecret(this.#key, sealed, KEY_CHECK_AAD) === KEY_CHECK_PLAINTEXT;
    } catch (err) {
      if (err instanceof DecryptError) return false;
      throw err;
    }
  }

  deriveKey(purpose: string): Buffer {
    return Buffer.from(hkdfSync('sha256', this.#key, Buffer.alloc(0), `xoauth-proxy:${purpose}`, 32));
  }

  pendingConsentRow(record: PendingConsentRecord, createdAt: number): ConsentStateRow {
    const body: PendingBody = {
      kind: 'pending',
      username: record.username,
      codeVerifier: record.codeVerifier,
      redirectUri: record.redirectUri,
      browser: record.browser,
    };
    return this.#consentRow(
      record.state,
      record.linkHash,
      record.accountId,
      record.expiresAt,
      createdAt,
      body,
    );
  }

  completedConsentRow(record: CompletedConsentRecord, createdAt: number): ConsentStateRow {
    const body: CompletedBody = { kind: 'completed', email: record.email };
    return this.#consentRow(record.state, null, record.accountId, record.expiresAt, createdAt, body);
  }

  /** A row back as a pending consent; undefined when it is not one or does not open (then it is useless). */
  pendingConsent(row: ConsentStateRow): PendingConsentRecord | undefined {
    const body = this.#consentBody(row);
    if (body?.kind !== 'pending' || row.link_hash === null) return undefined;
    const { username, codeVerifier, redirectUri, browser } = body;
    return {
      state: row.state,
      linkHash: row.link_hash,
      accountId: row.account_id,
      username,
      codeVerifier,
      redirectUri,
      browser,
      expiresAt: Number(row.expires_at),
    };
  }

  completedConsent(row: ConsentStateRow): CompletedConsentRecord | undefined {
    const body = this.#consentBody(row);
    if (body?.kind !== 'completed') return undefined;
    return {
      state: row.state,
      accountId: row.account_id,
      email: body.email,
      expiresAt: Number(row.expires_at),
    };
  }

  #consentRow(
    state: string,
    linkHash: string | null,
    accountId: string,
    expiresAt: number,
    createdAt: number,
    body: PendingBody | CompletedBody,
  ): ConsentStateRow {
    return {
      state,
      link_hash: linkHash,
      account_id: accountId,
      expires_at: expiresAt,
      created_at: createdAt,
      body: encryptSecret(this.#key, JSON.stringify(body), `xoauth-proxy:consent-state:${state}`),
    };
  }

  #consentBody(row: ConsentStateRow): PendingBody | CompletedBody | undefined {
    try {
      return JSON.parse(decryptSecret(this.#key, row.body, `xoauth-proxy:consent-state:${row.state}`)) as
        PendingBody | CompletedBody;
    } catch {
      // A state that does not open is as good as unknown: the owner presses the button again.
      return undefined;
    }
  }

  /** Whether a row's refresh token opens with this key (a copy checks every row it moved). */
  refreshTokenOpens(row: TokenRow): boolean {
    try {
      this.#open('refresh', row.account_id, row.refresh_token);
      return true;
    } catch (err) {
      if (err instanceof ProxyError) return false;
      throw err;
    }
  }

  #open(field: 'refresh' | 'access', accountId: string, sealed: string | null): string | undefined {
    if (sealed === null) return undefined;
    try {
      return decryptSecret(this.#key, sealed, secretAad(field, accountId));
    } catch (err) {
      if (err instanceof DecryptError) {
        throw new ProxyError(
          'store',
          `The ${field} token of ${accountId} in ${this.#location} cannot be decrypted (${err.message}). ` +
            `Run \`xoauth-proxy consent ${accountId}\` to replace it; the rest of the store is unaffected.`,
          { detail: `the stored ${field} token cannot be decrypted (${err.message})` },
        );
      }
      throw err;
    }
  }

  #seal(field: 'refresh' | 'access', accountId: string, value: string | undefined): string | null {
    return value === undefined ? null : encryptSecret(this.#key, value, secretAad(field, accountId));
  }

  toRow(record: TokenRecord): TokenRow {
    return {
      account_id: record.accountId,
      connection: record.connection,
      refresh_token: this.#seal('refresh', record.accountId, record.refreshToken),
      access_token: this.#seal('access', record.accountId, record.accessToken),
      access_expires_at: record.accessTokenExpiresAt ?? null,
      scopes: JSON.stringify(record.scopes),
      identity: record.identity ?? null,
      display_name: record.displayName ?? null,
      state: record.state,
      last_refresh_at: record.lastRefreshAt ?? null,
      last_error: record.lastError ?? null,
      in_doubt_until: record.inDoubtUntil ?? null,
      graph_send_until: record.graphSendUntil ?? null,
      updated_at: record.updatedAt,
    };
  }

  /** Throws ProxyError 'store' when a secret does not decrypt. */
  toRecord(row: TokenRow): TokenRecord {
    const record: TokenRecord = {
      accountId: row.account_id,
      connection: row.connection,
      scopes: JSON.parse(row.scopes) as string[],
      state: stateOf(row),
      updatedAt: Number(row.updated_at),
    };
    const refreshToken = this.#open('refresh', row.account_id, row.refresh_token);
    if (refreshToken !== undefined) record.refreshToken = refreshToken;
    const accessToken = this.#open('access', row.account_id, row.access_token);
    if (accessToken !== undefined) record.accessToken = accessToken;
    copyClearFields(row, record);
    return record;
  }

  /**
   * The record of one row, or why it cannot be read. Anything thrown while decoding is the row's own
   * problem (a secret that does not decrypt, a damaged scopes column), so it stays with that row.
   */
  readRow(row: TokenRow): TokenRecord | UnreadableToken {
    try {
      return this.toRecord(row);
    } catch (err) {
      const reason =
        err instanceof ProxyError
          ? (err.detail ?? err.message)
          : `the stored row is damaged (${err instanceof Error ? err.message : String(err)})`;
      return { accountId: row.account_id, connection: row.connection, reason };
    }
  }

  /**
   * The row without its secrets. They are opened only to learn whether they still can be (a row that
   * cannot is `unreadable` in status, on /admin and in the metrics), and dropped at once.
   */
  summary(row: TokenRow): TokenSummary {
    const read = this.readRow(row);
    const summary: TokenSummary = {
      accountId: row.account_id,
      connection: row.connection,
      scopes: 'reason' in read ? [] : read.scopes,
      state: stateOf(row),
      updatedAt: Number(row.updated_at),
      hasRefreshToken: row.refresh_token !== null,
    };
    copyClearFields(row, summary);
    if ('reason' in read) summary.unreadable = read.reason;
    return summary;
  }
}

function stateOf(row: TokenRow): AccountState {
  return (STATES.has(row.state) ? row.state : 'needs-consent') as AccountState;
}

type ClearColumns = Pick<
  TokenRow,
  | 'access_expires_at'
  | 'identity'
  | 'display_name'
  | 'last_refresh_at'
  | 'last_error'
  | 'in_doubt_until'
  | 'graph_send_until'
>;
type ClearFields = Pick<
  TokenRecord,
  | 'accessTokenExpiresAt'
  | 'identity'
  | 'displayName'
  | 'lastRefreshAt'
  | 'lastError'
  | 'inDoubtUntil'
  | 'graphSendUntil'
>;

/** The optional fields stored in clear text (numbers as numbers: PostgreSQL's BIGINT comes as text). */
function copyClearFields(row: ClearColumns, out: ClearFields): void {
  if (row.access_expires_at !== null) out.accessTokenExpiresAt = Number(row.access_expires_at);
  if (row.identity !== null) out.identity = row.identity;
  if (row.display_name !== null) out.displayName = row.display_name;
  if (row.last_refresh_at !== null) out.lastRefreshAt = Number(row.last_refresh_at);
  if (row.last_error !== null) out.lastError = row.last_error;
  // Absent in rows written before the column existed.
  if (row.in_doubt_until !== null && row.in_doubt_until !== undefined)
    out.inDoubtUntil = Number(row.in_doubt_until);
  if (row.graph_send_until !== null && row.graph_send_until !== undefined)
    out.graphSendUntil = Number(row.graph_send_until);
}
