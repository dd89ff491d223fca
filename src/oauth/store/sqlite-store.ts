/**
 * The embedded token store: one SQLite file (WAL) that the daemon and CLI commands share. Every
 * read-modify-write runs in a `BEGIN IMMEDIATE` transaction, which takes the write lock up front, so
 * two processes never both read the old row and then both write; `busy_timeout` makes the loser wait
 * instead of failing. `synchronous=FULL`: a rotated refresh token that is lost on a power cut means
 * the user has to consent again, and writes here are rare.
 *
 * A file we cannot read or decrypt is reported and left exactly as it is: we never recreate it.
 * One row that cannot be decrypted (damaged, tampered) is reported for its account only: lists skip
 * it (listTokens) or mark it (listTokenSummaries), and a consent may replace it (updateToken).
 */
import { closeSync, existsSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { StoreSettings } from '../../config/types.js';
import { ProxyError } from '../../errors.js';
import type {
  AccountState,
  AppPasswordRecord,
  ConsentLinkRecord,
  TokenRecord,
  TokenStore,
  TokenSummary,
  UnreadableToken,
} from '../types.js';
import { decryptSecret, DecryptError, encryptSecret } from './cipher.js';
import { loadStoreKey, warnIfOpenMode, type StoreWarnings } from './key.js';

const SCHEMA_VERSION = 1;
const BUSY_TIMEOUT_MS = 10_000;
const KEY_CHECK_PLAINTEXT = 'xoauth-proxy key check';
const KEY_CHECK_AAD = 'meta:key-check';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
  account_id TEXT PRIMARY KEY,
  connection TEXT NOT NULL,
  refresh_token TEXT,
  access_token TEXT,
  access_expires_at INTEGER,
  scopes TEXT NOT NULL,
  identity TEXT,
  display_name TEXT,
  state TEXT NOT NULL,
  last_refresh_at INTEGER,
  last_error TEXT,
  updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS app_passwords (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL,
  label TEXT NOT NULL,
  hash TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  last_used_at INTEGER
);
CREATE INDEX IF NOT EXISTS app_passwords_account ON app_passwords(account_id);
CREATE TABLE IF NOT EXISTS consent_links (
  token_hash TEXT PRIMARY KEY,
  account_id TEXT NOT NULL,
  username TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  used_at INTEGER
);
`;

interface TokenRow {
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
  updated_at: number;
}

interface AppPasswordRow {
  id: string;
  account_id: string;
  label: string;
  hash: string;
  created_at: number;
  last_used_at: number | null;
}

interface ConsentLinkRow {
  token_hash: string;
  account_id: string;
  username: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
}

const STATES: ReadonlySet<string> = new Set<AccountState>(['active', 'needs-consent', 'failing']);

function secretAad(field: 'refresh' | 'access', accountId: string): string {
  return `xoauth-proxy:${field}:${accountId}`;
}

export class SqliteTokenStore implements TokenStore {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #key: Buffer;
  readonly #keySource: string;

  private constructor(path: string, db: Database.Database, key: Buffer, keySource: string) {
    this.path = path;
    this.#db = db;
    this.#key = key;
    this.#keySource = keySource;
  }

  static open(
    settings: StoreSettings,
    options: { env?: NodeJS.ProcessEnv; logger?: StoreWarnings } = {},
  ): SqliteTokenStore {
    const path = settings.path;
    const storeExists = existsSync(path) && statSync(path).size > 0;
    const { key, source } = loadStoreKey(settings.keyFile, options.env, {
      mayCreate: !storeExists,
      storePath: path,
      ...(options.logger ? { logger: options.logger } : {}),
    });
    if (storeExists) warnIfOpenMode(path, 'token store', options.logger);
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    warnIfOpenMode(dirname(path), 'data directory', options.logger);
    if (!existsSync(path)) {
      // Create it ourselves with 0600; SQLite gives its -wal/-shm files the main file's mode.
      try {
        closeSync(openSync(path, 'wx', 0o600));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw storeError(path, 'cannot create it', err);
      }
    }
    let db: Database.Database;
    try {
      db = new Database(path, { fileMustExist: true, timeout: BUSY_TIMEOUT_MS });
    } catch (err) {
      throw storeError(path, 'cannot open it', err);
    }
    try {
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version > SCHEMA_VERSION) {
        throw new ProxyError(
          'store',
          `The token store ${path} was written by a newer xoauth-proxy (schema ${version}, this one knows ` +
            `${SCHEMA_VERSION}). Upgrade xoauth-proxy; the file was left untouched.`,
        );
      }
      const store = new SqliteTokenStore(path, db, key, source);
      store.#migrateAndCheckKey();
      return store;
    } catch (err) {
      db.close();
      if (err instanceof ProxyError) throw err;
      throw storeError(path, 'cannot read it', err);
    }
  }

  #migrateAndCheckKey(): void {
    const db = this.#db;
    const checkKey = (): 'ok' | 'missing' => {
      const row = db.prepare('SELECT value FROM meta WHERE key = ?').get('key-check') as
        { value: string } | undefined;
      if (!row) return 'missing';
      try {
        if (decryptSecret(this.#key, row.value, KEY_CHECK_AAD) === KEY_CHECK_PLAINTEXT) return 'ok';
      } catch (err) {
        if (!(err instanceof DecryptError)) throw err;
      }
      throw this.#wrongKey();
    };
    // The usual case needs no write (and no write lock): schema current, key right.
    if ((db.pragma('user_version', { simple: true }) as number) === SCHEMA_VERSION && checkKey() === 'ok')
      return;
    db.transaction(() => {
      db.exec(SCHEMA);
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
      if (checkKey() === 'missing') {
        db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run(
          'key-check',
          encryptSecret(this.#key, KEY_CHECK_PLAINTEXT, KEY_CHECK_AAD),
        );
      }
    }).immediate();
  }

  #wrongKey(): ProxyError {
    return new ProxyError(
      'store',
      `The token store ${this.path} cannot be decrypted with the key from ${this.#keySource}: it was written ` +
        `with a different key. Use the original key (XOAUTH_PROXY_KEY or the key file next to the store). ` +
        `The store was left untouched; only if the key is lost for good, move the file away and consent again.`,
    );
  }

  #open(field: 'refresh' | 'access', accountId: string, sealed: string | null): string | undefined {
    if (sealed === null) return undefined;
    try {
      return decryptSecret(this.#key, sealed, secretAad(field, accountId));
    } catch (err) {
      if (err instanceof DecryptError) {
        throw new ProxyError(
          'store',
          `The ${field} token of ${accountId} in ${this.path} cannot be decrypted (${err.message}). ` +
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

  #toRecord(row: TokenRow): TokenRecord {
    const record: TokenRecord = {
      accountId: row.account_id,
      connection: row.connection,
      scopes: JSON.parse(row.scopes) as string[],
      state: (STATES.has(row.state) ? row.state : 'needs-consent') as AccountState,
      updatedAt: row.updated_at,
    };
    const refreshToken = this.#open('refresh', row.account_id, row.refresh_token);
    if (refreshToken !== undefined) record.refreshToken = refreshToken;
    const accessToken = this.#open('access', row.account_id, row.access_token);
    if (accessToken !== undefined) record.accessToken = accessToken;
    copyClearFields(row, record);
    return record;
  }

  /**
   * The record of one row, or why it cannot be read. Anything but a database error is the row's own
   * problem (a secret that does not decrypt, a damaged scopes column), so it stays with that row.
   */
  #readRow(row: TokenRow): TokenRecord | UnreadableToken {
    try {
      return this.#toRecord(row);
    } catch (err) {
      if ((err as { code?: string }).code?.startsWith('SQLITE_')) throw err;
      const reason =
        err instanceof ProxyError
          ? (err.detail ?? err.message)
          : `the stored row is damaged (${err instanceof Error ? err.message : String(err)})`;
      return { accountId: row.account_id, connection: row.connection, reason };
    }
  }

  #guard<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof ProxyError) throw err;
      if ((err as { code?: string }).code?.startsWith('SQLITE_')) throw storeError(this.path, what, err);
      throw err;
    }
  }

  getToken(accountId: string): TokenRecord | undefined {
    return this.#guard('cannot read it', () => {
      const row = this.#db.prepare('SELECT * FROM tokens WHERE account_id = ?').get(accountId) as
        TokenRow | undefined;
      return row ? this.#toRecord(row) : undefined;
    });
  }

  listTokens(onUnreadable?: (row: UnreadableToken) => void): TokenRecord[] {
    return this.#guard('cannot read it', () => {
      const records: TokenRecord[] = [];
      for (const row of this.#db.prepare('SELECT * FROM tokens ORDER BY account_id').all() as TokenRow[]) {
        const read = this.#readRow(row);
        if ('reason' in read) onUnreadable?.(read);
        else records.push(read);
      }
      return records;
    });
  }

  listTokenSummaries(): TokenSummary[] {
    // Each row's secrets are opened only to learn whether they still can be (a row that cannot is
    // `unreadable` in status, on /admin and in the metrics), and dropped at once: a summary holds none.
    return this.#guard('cannot read it', () =>
      (this.#db.prepare('SELECT * FROM tokens ORDER BY account_id').all() as TokenRow[]).map((row) => {
        const read = this.#readRow(row);
        const summary: TokenSummary = {
          accountId: row.account_id,
          connection: row.connection,
          scopes: 'reason' in read ? [] : read.scopes,
          state: (STATES.has(row.state) ? row.state : 'needs-consent') as AccountState,
          updatedAt: row.updated_at,
          hasRefreshToken: row.refresh_token !== null,
        };
        copyClearFields(row, summary);
        if ('reason' in read) summary.unreadable = read.reason;
        return summary;
      }),
    );
  }

  putToken(record: TokenRecord): void {
    this.#guard('cannot write it', () => this.#write(record));
  }

  #write(record: TokenRecord): void {
    this.#db
      .prepare(
        `INSERT OR REPLACE INTO tokens (account_id, connection, refresh_token, access_token, access_expires_at,
           scopes, identity, display_name, state, last_refresh_at, last_error, updated_at)
         VALUES (@account_id, @connection, @refresh_token, @access_token, @access_expires_at,
           @scopes, @identity, @display_name, @state, @last_refresh_at, @last_error, @updated_at)`,
      )
      .run({
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
        updated_at: record.updatedAt,
      } satisfies TokenRow);
  }

  updateToken(
    accountId: string,
    update: (current: TokenRecord | undefined) => TokenRecord | undefined,
  ): TokenRecord | undefined {
    return this.#guard('cannot write it', () =>
      this.#db
        .transaction(() => {
          const row = this.#db.prepare('SELECT * FROM tokens WHERE account_id = ?').get(accountId) as
            TokenRow | undefined;
          const read = row ? this.#readRow(row) : undefined;
          // An unreadable row is no grant any more: a consent's update may replace it, every other
          // update (which needs the current grant) leaves it as it is.
          const current = read === undefined || 'reason' in read ? undefined : read;
          const next = update(current);
          if (next === undefined) return current;
          if (next.accountId !== accountId)
            throw new Error(`updateToken(${accountId}) returned ${next.accountId}`);
          this.#write(next);
          return next;
        })
        .immediate(),
    );
  }

  /** Forgets an account's grant (not part of TokenStore; used by `xoauth-proxy` admin commands). */
  deleteToken(accountId: string): boolean {
    return this.#guard(
      'cannot write it',
      () => this.#db.prepare('DELETE FROM tokens WHERE account_id = ?').run(accountId).changes > 0,
    );
  }

  listAppPasswords(accountId?: string): AppPasswordRecord[] {
    return this.#guard('cannot read it', () => {
      const rows = (
        accountId === undefined
          ? this.#db.prepare('SELECT * FROM app_passwords ORDER BY account_id, created_at, id').all()
          : this.#db
              .prepare('SELECT * FROM app_passwords WHERE account_id = ? ORDER BY created_at, id')
              .all(accountId)
      ) as AppPasswordRow[];
      return rows.map((r) => {
        const rec: AppPasswordRecord = {
          id: r.id,
          accountId: r.account_id,
          label: r.label,
          hash: r.hash,
          createdAt: r.created_at,
        };
        if (r.last_used_at !== null) rec.lastUsedAt = r.last_used_at;
        return rec;
      });
    });
  }

  addAppPassword(record: AppPasswordRecord): void {
    this.#guard('cannot write it', () => {
      this.#db
        .prepare(
          `INSERT INTO app_passwords (id, account_id, label, hash, created_at, last_used_at)
           VALUES (?, ?, ?, ?, ?, ?)`,
        )
        .run(
          record.id,
          record.accountId,
          record.label,
          record.hash,
          record.createdAt,
          record.lastUsedAt ?? null,
        );
    });
  }

  removeAppPassword(accountId: string, idOrLabel: string): boolean {
    return this.#guard(
      'cannot write it',
      () =>
        this.#db
          .prepare('DELETE FROM app_passwords WHERE account_id = ? AND (id = ? OR label = ?)')
          .run(accountId, idOrLabel, idOrLabel).changes > 0,
    );
  }

  touchAppPassword(id: string, at: number): void {
    this.#guard('cannot write it', () => {
      this.#db.prepare('UPDATE app_passwords SET last_used_at = ? WHERE id = ?').run(at, id);
    });
  }

  addConsentLink(record: ConsentLinkRecord): void {
    this.#guard('cannot write it', () => {
      this.#db
        .prepare(
          `INSERT INTO consent_links (token_hash, account_id, username, created_at, expires_at, used_at)
           VALUES (?, ?, ?, ?, ?, ?)`,
        )
        .run(
          record.tokenHash,
          record.accountId,
          record.username,
          record.createdAt,
          record.expiresAt,
          record.usedAt ?? null,
        );
    });
  }

  getConsentLink(tokenHash: string): ConsentLinkRecord | undefined {
    return this.#guard('cannot read it', () => {
      const r = this.#db.prepare('SELECT * FROM consent_links WHERE token_hash = ?').get(tokenHash) as
        ConsentLinkRow | undefined;
      if (!r) return undefined;
      const rec: ConsentLinkRecord = {
        tokenHash: r.token_hash,
        accountId: r.account_id,
        username: r.username,
        createdAt: r.created_at,
        expiresAt: r.expires_at,
      };
      if (r.used_at !== null) rec.usedAt = r.used_at;
      return rec;
    });
  }

  useConsentLink(tokenHash: string, at: number): boolean {
    // One UPDATE with the "not yet used" condition: SQLite serialises writers, so exactly one wins.
    return this.#guard(
      'cannot write it',
      () =>
        this.#db
          .prepare('UPDATE consent_links SET used_at = ? WHERE token_hash = ? AND used_at IS NULL')
          .run(at, tokenHash).changes > 0,
    );
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }
}

type ClearColumns = Pick<
  TokenRow,
  'access_expires_at' | 'identity' | 'display_name' | 'last_refresh_at' | 'last_error'
>;
type ClearFields = Pick<
  TokenRecord,
  'accessTokenExpiresAt' | 'identity' | 'displayName' | 'lastRefreshAt' | 'lastError'
>;

/** The optional fields stored in clear text. */
function copyClearFields(row: ClearColumns, out: ClearFields): void {
  if (row.access_expires_at !== null) out.accessTokenExpiresAt = row.access_expires_at;
  if (row.identity !== null) out.identity = row.identity;
  if (row.display_name !== null) out.displayName = row.display_name;
  if (row.last_refresh_at !== null) out.lastRefreshAt = row.last_refresh_at;
  if (row.last_error !== null) out.lastError = row.last_error;
}

function storeError(path: string, what: string, cause: unknown): ProxyError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new ProxyError(
    'store',
    `The token store ${path}: ${what} (${reason}). The file was left untouched. Check its permissions and ` +
      `that it is an xoauth-proxy store; restore it from a backup, or move it away to start empty ` +
      `(every account then needs consent again).`,
    { cause },
  );
}
