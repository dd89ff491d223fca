/**
 * The shared store: one PostgreSQL database for several proxy instances. The same rows and the same
 * sealing as the embedded store (codec.ts): the database never sees a token in clear, and every
 * instance needs the same key. What sharing adds:
 * - every read-modify-write of a grant holds a transaction-scoped advisory lock on that account, so
 *   two instances never both read the old row and both write (also for a row that does not exist yet);
 * - refresh leases are rows timed by the database's clock (`clock_timestamp()`), so instances with
 *   skewed clocks still agree when a lease has run out;
 * - every change of a grant is announced with NOTIFY on one channel; a LISTEN connection per instance
 *   tells the waiters of a refresh that the winner committed;
 * - the schema is created and migrated by the program under a session advisory lock, so N instances
 *   starting at once agree; a database written by a newer version is refused, never downgraded.
 * Every query has a timeout: a database that stops answering is an error after `store.timeout`, not
 * a login that hangs.
 */
import { existsSync } from 'node:fs';
import pg from 'pg';
import type { PostgresStoreSettings } from '../config/types.js';
import { KEY_ENV, loadStoreKey, type StoreWarnings } from './key.js';
import { ProxyError } from '../errors.js';
import { RowCodec, TOKEN_COLUMNS, type ConsentStateRow, type TokenRow } from './codec.js';
import type {
  AppPasswordRecord,
  CompletedConsentRecord,
  ConsentLinkRecord,
  LeaseResult,
  PendingConsentRecord,
  Store,
  TokenRecord,
  TokenSummary,
  UnreadableToken,
} from './types.js';
import { redactUrl } from './url.js';

const SCHEMA_VERSION = 2;
/** Advisory lock keys: one for schema changes, one namespace each for grant updates and leases. */
const SCHEMA_LOCK = 0x78_6f_61_75; // "xoau"
const GRANT_LOCK = 0x78_67;
const LEASE_LOCK = 0x78_6c;
export const GRANT_CHANNEL = 'xoauth_grants';
/** How soon a lost LISTEN connection is opened again. */
const LISTEN_RETRY_MS = 1_000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS xoauth_tokens (
  account_id TEXT PRIMARY KEY,
  connection TEXT NOT NULL,
  refresh_token TEXT,
  access_token TEXT,
  access_expires_at BIGINT,
  scopes TEXT NOT NULL,
  identity TEXT,
  display_name TEXT,
  state TEXT NOT NULL,
  last_refresh_at BIGINT,
  last_error TEXT,
  in_doubt_until BIGINT,
  graph_send_until BIGINT,
  updated_at BIGINT NOT NULL
);
-- Schema 2: Graph sending (send: auto) remembered per account.
ALTER TABLE xoauth_tokens ADD COLUMN IF NOT EXISTS graph_send_until BIGINT;
CREATE TABLE IF NOT EXISTS xoauth_app_passwords (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL,
  label TEXT NOT NULL,
  hash TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  last_used_at BIGINT
);
CREATE INDEX IF NOT EXISTS xoauth_app_passwords_account ON xoauth_app_passwords (account_id);
CREATE TABLE IF NOT EXISTS xoauth_consent_links (
  token_hash TEXT PRIMARY KEY,
  account_id TEXT NOT NULL,
  username TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  used_at BIGINT
);
CREATE TABLE IF NOT EXISTS xoauth_refresh_leases (
  account_id TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS xoauth_consent_states (
  state TEXT PRIMARY KEY,
  seq BIGSERIAL,
  link_hash TEXT,
  account_id TEXT NOT NULL,
  expires_at BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS xoauth_consent_states_link ON xoauth_consent_states (link_hash);
`;

const INSERT_CONSENT_STATE = `INSERT INTO xoauth_consent_states
  (state, link_hash, account_id, expires_at, created_at, body) VALUES ($1, $2, $3, $4, $5, $6)
  ON CONFLICT (state) DO UPDATE SET link_hash = EXCLUDED.link_hash, account_id = EXCLUDED.account_id,
  expires_at = EXCLUDED.expires_at, created_at = EXCLUDED.created_at, body = EXCLUDED.body`;

function consentStateValues(row: ConsentStateRow): unknown[] {
  return [row.state, row.link_hash, row.account_id, row.expires_at, row.created_at, row.body];
}

const UPSERT_TOKEN = `INSERT INTO xoauth_tokens (${TOKEN_COLUMNS.join(', ')})
  VALUES (${TOKEN_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})
  ON CONFLICT (account_id) DO UPDATE SET ${TOKEN_COLUMNS.slice(1)
    .map((c) => `${c} = EXCLUDED.${c}`)
    .join(', ')}`;

interface AppPasswordRow {
  id: string;
  account_id: string;
  label: string;
  hash: string;
  created_at: string;
  last_used_at: string | null;
}

interface ConsentLinkRow {
  token_hash: string;
  account_id: string;
  username: string;
  created_at: string;
  expires_at: string;
  used_at: string | null;
}

export { redactUrl } from './url.js';

export class PostgresStore implements Store {
  readonly location: string;
  readonly #pool: pg.Pool;
  readonly #codec: RowCodec;
  readonly #settings: PostgresStoreSettings;
  readonly #warnings: StoreWarnings | undefined;
  readonly #watchers = new Set<(accountId: string) => void>();
  #listener: pg.Client | undefined;
  #listenRetry: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(settings: PostgresStoreSettings, pool: pg.Pool, key: Buffer, warnings?: StoreWarnings) {
    this.location = redactUrl(settings.url);
    this.#settings = settings;
    this.#pool = pool;
    this.#codec = new RowCodec(key, this.location);
    this.#warnings = warnings;
  }

  static async open(
    settings: PostgresStoreSettings,
    options: { env?: NodeJS.ProcessEnv; logger?: StoreWarnings } = {},
  ): Promise<PostgresStore> {
    const env = options.env ?? process.env;
    const location = redactUrl(settings.url);
    if (!env[KEY_ENV] && !existsSync(settings.keyFile)) {
      throw new ProxyError(
        'store',
        `The PostgreSQL store ${location} needs the key every instance shares, and neither the key file ` +
          `${settings.keyFile} nor ${KEY_ENV} is there. Make it once (\`openssl rand -base64 32 > ` +
          `${settings.keyFile}; chmod 600 ${settings.keyFile}\`) and copy the same file to every instance. ` +
          'A shared store never makes one by itself: two instances with different keys could not read each ' +
          "other's grants.",
      );
    }
    const { key } = loadStoreKey(settings.keyFile, env, {
      mayCreate: false,
      storePath: location,
      ...(options.logger ? { logger: options.logger } : {}),
    });
    const pool = new pg.Pool({
      connectionString: settings.url,
      max: settings.poolMax,
      connectionTimeoutMillis: settings.timeoutMs,
      query_timeout: settings.timeoutMs,
      idleTimeoutMillis: 30_000,
      application_name: 'xoauth-proxy',
    });
    // An idle connection that breaks (the database restarted) must not take the process down; the
    // next query opens a new one.
    pool.on('error', (err) =>
      options.logger?.warn({ err: err.message }, `PostgreSQL store ${location}: a pooled connection failed`),
    );
    const store = new PostgresStore(settings, pool, key, options.logger);
    try {
      await store.#migrateAndCheckKey();
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw err instanceof ProxyError ? err : store.#error('cannot open it', err);
    }
    return store;
  }

  async #migrateAndCheckKey(): Promise<void> {
    const client = await this.#pool.connect();
    try {
      await client.query('SELECT pg_advisory_lock($1)', [SCHEMA_LOCK]);
      try {
        await client.query(
          'CREATE TABLE IF NOT EXISTS xoauth_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)',
        );
        const meta = async (k: string): Promise<string | undefined> =>
          (await client.query<{ value: string }>('SELECT value FROM xoauth_meta WHERE key = $1', [k])).rows[0]
            ?.value;
        const version = Number((await meta('schema_version')) ?? 0);
        if (version > SCHEMA_VERSION) {
          throw new ProxyError(
            'store',
            `The PostgreSQL store ${this.location} was written by a newer xoauth-proxy (schema ${version}, this ` +
              `one knows ${SCHEMA_VERSION}). Upgrade this instance; the database was left untouched.`,
          );
        }
        const check = await meta('key-check');
        if (check !== undefined && !this.#codec.keyCheckMatches(check)) {
          throw new ProxyError(
            'store',
            `The PostgreSQL store ${this.location} was written with a different key than the one in ` +
              `${this.#settings.keyFile} (or ${KEY_ENV}). Every instance needs the same key: copy it from an ` +
              'instance that works. The database was left untouched.',
          );
        }
        if (version < SCHEMA_VERSION || check === undefined) {
          await client.query('BEGIN');
          await client.query(SCHEMA);
          await client.query(
            `INSERT INTO xoauth_meta (key, value) VALUES ('schema_version', $1)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`,
            [String(SCHEMA_VERSION)],
          );
          if (check === undefined) {
            await client.query(`INSERT INTO xoauth_meta (key, value) VALUES ('key-check', $1)`, [
              this.#codec.keyCheck(),
            ]);
          }
          await client.query('COMMIT');
        }
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [SCHEMA_LOCK]).catch(() => undefined);
      }
    } finally {
      client.release();
    }
  }

  #error(what: string, cause: unknown): ProxyError {
    const reason = cause instanceof Error ? cause.message : String(cause);
    return new ProxyError(
      'store',
      `The PostgreSQL store ${this.location}: ${what} (${reason}). Logins that need the store get a ` +
        'temporary error until it answers again; nothing is lost.',
      { cause },
    );
  }

  async #query<R extends pg.QueryResultRow>(
    what: string,
    text: string,
    values: unknown[] = [],
  ): Promise<R[]> {
    try {
      return (await this.#pool.query<R>(text, values)).rows;
    } catch (err) {
      throw this.#error(what, err);
    }
  }

  /** One transaction on one connection; rolled back on any error. */
  async #tx<T>(what: string, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (err) {
      throw this.#error(what, err);
    }
    let broken = false;
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {
        broken = true;
      });
      if (err instanceof ProxyError) throw err;
      throw this.#error(what, err);
    } finally {
      client.release(broken);
    }
  }

  async getToken(accountId: string): Promise<TokenRecord | undefined> {
    const rows = await this.#query<TokenRow>(
      'cannot read it',
      'SELECT * FROM xoauth_tokens WHERE account_id = $1',
      [accountId],
    );
    return rows[0] ? this.#codec.toRecord(rows[0]) : undefined;
  }

  async listTokens(onUnreadable?: (row: UnreadableToken) => void): Promise<TokenRecord[]> {
    const records: TokenRecord[] = [];
    for (const row of await this.#allTokenRows()) {
      const read = this.#codec.readRow(row);
      if ('reason' in read) onUnreadable?.(read);
      else records.push(read);
    }
    return records;
  }

  async listTokenSummaries(): Promise<TokenSummary[]> {
    return (await this.#allTokenRows()).map((row) => this.#codec.summary(row));
  }

  #allTokenRows(): Promise<TokenRow[]> {
    return this.#query<TokenRow>('cannot read it', 'SELECT * FROM xoauth_tokens ORDER BY account_id');
  }

  async putToken(record: TokenRecord): Promise<void> {
    await this.putTokenRow(this.#codec.toRow(record));
  }

  /** A row as it is, sealed values included (how `store migrate` copies one in). */
  async putTokenRow(row: TokenRow): Promise<void> {
    await this.#tx('cannot write it', async (c) => {
      await c.query(
        UPSERT_TOKEN,
        TOKEN_COLUMNS.map((k) => row[k]),
      );
      await c.query('SELECT pg_notify($1, $2)', [GRANT_CHANNEL, row.account_id]);
    });
    this.#emit(row.account_id);
  }

  async updateToken(
    accountId: string,
    update: (current: TokenRecord | undefined) => TokenRecord | undefined,
  ): Promise<TokenRecord | undefined> {
    let wrote = false;
    const result = await this.#tx('cannot write it', async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [GRANT_LOCK, accountId]);
      const row = (await c.query<TokenRow>('SELECT * FROM xoauth_tokens WHERE account_id = $1', [accountId]))
        .rows[0];
      const read = row ? this.#codec.readRow(row) : undefined;
      // As in the embedded store: an unreadable row is no grant, so only a consent replaces it.
      const current = read === undefined || 'reason' in read ? undefined : read;
      const next = update(current);
      if (next === undefined) return current;
      if (next.accountId !== accountId)
        throw new Error(`updateToken(${accountId}) returned ${next.accountId}`);
      const out = this.#codec.toRow(next);
      await c.query(
        UPSERT_TOKEN,
        TOKEN_COLUMNS.map((k) => out[k]),
      );
      await c.query('SELECT pg_notify($1, $2)', [GRANT_CHANNEL, accountId]);
      wrote = true;
      return next;
    });
    if (wrote) this.#emit(accountId);
    return result;
  }

  async deleteToken(accountId: string): Promise<boolean> {
    const deleted = await this.#tx('cannot write it', async (c) => {
      const r = await c.query('DELETE FROM xoauth_tokens WHERE account_id = $1', [accountId]);
      if ((r.rowCount ?? 0) > 0) await c.query('SELECT pg_notify($1, $2)', [GRANT_CHANNEL, accountId]);
      return (r.rowCount ?? 0) > 0;
    });
    if (deleted) this.#emit(accountId);
    return deleted;
  }

  async acquireRefreshLease(accountId: string, holder: string, ttlMs: number): Promise<LeaseResult> {
    return this.#tx('cannot write it', async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [LEASE_LOCK, accountId]);
      const row = (
        await c.query<{ holder: string; live: boolean; remaining_ms: number }>(
          `SELECT holder, expires_at > clock_timestamp() AS live,
             GREATEST(0, EXTRACT(EPOCH FROM (expires_at - clock_timestamp())) * 1000)::float8 AS remaining_ms
           FROM xoauth_refresh_leases WHERE account_id = $1`,
          [accountId],
        )
      ).rows[0];
      if (row && row.live && row.holder !== holder) {
        return { acquired: false, holder: row.holder, remainingMs: Math.ceil(row.remaining_ms) };
      }
      await c.query(
        `INSERT INTO xoauth_refresh_leases (account_id, holder, expires_at)
         VALUES ($1, $2, clock_timestamp() + $3 * interval '1 millisecond')
         ON CONFLICT (account_id) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at`,
        [accountId, holder, ttlMs],
      );
      return row && row.holder !== holder ? { acquired: true, tookOver: row.holder } : { acquired: true };
    });
  }

  async releaseRefreshLease(accountId: string, holder: string): Promise<void> {
    await this.#query(
      'cannot write it',
      'DELETE FROM xoauth_refresh_leases WHERE account_id = $1 AND holder = $2',
      [accountId, holder],
    );
  }

  watchGrants(listener: (accountId: string) => void): () => void {
    this.#watchers.add(listener);
    this.#listen();
    // The LISTEN connection stays open when the last watcher goes (until close): a refresh waiter
    // watches for a moment at a time, and a fresh connection per wait would miss every commit made
    // while it connects, leaving the waiter to sit out the rest of the holder's lease.
    return () => {
      this.#watchers.delete(listener);
    };
  }

  /** One LISTEN connection from the first watch until close; opened again after it breaks. */
  #listen(): void {
    if (this.#closed || this.#listener || this.#watchers.size === 0) return;
    const client = new pg.Client({
      connectionString: this.#settings.url,
      connectionTimeoutMillis: this.#settings.timeoutMs,
      application_name: 'xoauth-proxy listen',
    });
    this.#listener = client;
    const retry = (err?: Error): void => {
      if (this.#listener !== client) return;
      this.#listener = undefined;
      client.removeAllListeners('notification');
      client.end().catch(() => undefined);
      if (err) this.#warnings?.warn({ err: err.message }, `PostgreSQL store ${this.location}: LISTEN lost`);
      if (this.#closed || this.#watchers.size === 0) return;
      this.#listenRetry = setTimeout(() => this.#listen(), LISTEN_RETRY_MS);
      this.#listenRetry.unref();
    };
    client.on('error', (err) => retry(err));
    client.on('end', () => retry());
    client.on('notification', (msg) => {
      if (msg.channel === GRANT_CHANNEL && msg.payload) this.#emit(msg.payload);
    });
    client
      .connect()
      .then(() => client.query(`LISTEN ${GRANT_CHANNEL}`))
      .catch((err: Error) => retry(err));
  }

  #unlisten(): void {
    if (this.#listenRetry) clearTimeout(this.#listenRetry);
    this.#listenRetry = undefined;
    const client = this.#listener;
    this.#listener = undefined;
    if (client) {
      client.removeAllListeners();
      client.on('error', () => undefined);
      client.end().catch(() => undefined);
    }
  }

  #emit(accountId: string): void {
    for (const listener of [...this.#watchers]) {
      try {
        listener(accountId);
      } catch {
        // A listener's failure is its own; the others still hear of the change.
      }
    }
  }

  async ping(): Promise<void> {
    await this.#query('cannot read it', 'SELECT 1');
  }

  async listAppPasswords(accountId?: string): Promise<AppPasswordRecord[]> {
    const rows =
      accountId === undefined
        ? await this.#query<AppPasswordRow>(
            'cannot read it',
            'SELECT * FROM xoauth_app_passwords ORDER BY account_id, created_at, id',
          )
        : await this.#query<AppPasswordRow>(
            'cannot read it',
            'SELECT * FROM xoauth_app_passwords WHERE account_id = $1 ORDER BY created_at, id',
            [accountId],
          );
    return rows.map((r) => {
      const rec: AppPasswordRecord = {
        id: r.id,
        accountId: r.account_id,
        label: r.label,
        hash: r.hash,
        createdAt: Number(r.created_at),
      };
      if (r.last_used_at !== null) rec.lastUsedAt = Number(r.last_used_at);
      return rec;
    });
  }

  async addAppPassword(record: AppPasswordRecord): Promise<void> {
    await this.#query(
      'cannot write it',
      `INSERT INTO xoauth_app_passwords (id, account_id, label, hash, created_at, last_used_at)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [record.id, record.accountId, record.label, record.hash, record.createdAt, record.lastUsedAt ?? null],
    );
  }

  async removeAppPassword(accountId: string, idOrLabel: string): Promise<boolean> {
    const rows = await this.#query<{ id: string }>(
      'cannot write it',
      'DELETE FROM xoauth_app_passwords WHERE account_id = $1 AND (id = $2 OR label = $2) RETURNING id',
      [accountId, idOrLabel],
    );
    return rows.length > 0;
  }

  async touchAppPassword(id: string, at: number): Promise<void> {
    await this.#query('cannot write it', 'UPDATE xoauth_app_passwords SET last_used_at = $1 WHERE id = $2', [
      at,
      id,
    ]);
  }

  async addConsentLink(record: ConsentLinkRecord): Promise<void> {
    await this.#query(
      'cannot write it',
      `INSERT INTO xoauth_consent_links (token_hash, account_id, username, created_at, expires_at, used_at)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [
        record.tokenHash,
        record.accountId,
        record.username,
        record.createdAt,
        record.expiresAt,
        record.usedAt ?? null,
      ],
    );
  }

  async getConsentLink(tokenHash: string): Promise<ConsentLinkRecord | undefined> {
    const r = (
      await this.#query<ConsentLinkRow>(
        'cannot read it',
        'SELECT * FROM xoauth_consent_links WHERE token_hash = $1',
        [tokenHash],
      )
    )[0];
    if (!r) return undefined;
    const rec: ConsentLinkRecord = {
      tokenHash: r.token_hash,
      accountId: r.account_id,
      username: r.username,
      createdAt: Number(r.created_at),
      expiresAt: Number(r.expires_at),
    };
    if (r.used_at !== null) rec.usedAt = Number(r.used_at);
    return rec;
  }

  async useConsentLink(tokenHash: string, at: number): Promise<boolean> {
    // One UPDATE with the "not yet used" condition: row locking makes exactly one of racing spends win.
    const rows = await this.#query<{ token_hash: string }>(
      'cannot write it',
      'UPDATE xoauth_consent_links SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL RETURNING token_hash',
      [at, tokenHash],
    );
    return rows.length > 0;
  }

  async putPendingConsent(
    record: PendingConsentRecord,
    limits: { now: number; maxPerLink: number; maxTotal: number },
  ): Promise<void> {
    const row = this.#codec.pendingConsentRow(record, limits.now);
    await this.#tx('cannot write it', async (client) => {
      // One at a time, so that the caps hold when several instances insert at once.
      await client.query('LOCK TABLE xoauth_consent_states IN SHARE ROW EXCLUSIVE MODE');
      await client.query('DELETE FROM xoauth_consent_states WHERE expires_at <= $1', [row.created_at]);
      await client.query(
        `DELETE FROM xoauth_consent_states WHERE state IN (SELECT state FROM xoauth_consent_states
         WHERE link_hash = $1 ORDER BY seq DESC OFFSET $2)`,
        [row.link_hash, Math.max(0, limits.maxPerLink - 1)],
      );
      await client.query(
        `DELETE FROM xoauth_consent_states WHERE state IN (SELECT state FROM xoauth_consent_states
         ORDER BY seq DESC OFFSET $1)`,
        [Math.max(0, limits.maxTotal - 1)],
      );
      await client.query(INSERT_CONSENT_STATE, consentStateValues(row));
    });
  }

  async getPendingConsent(state: string, now: number): Promise<PendingConsentRecord | undefined> {
    const row = await this.#consentState(state, now);
    return row ? this.#codec.pendingConsent(row) : undefined;
  }

  async takePendingConsent(state: string, now: number): Promise<PendingConsentRecord | undefined> {
    const rows = await this.#query<ConsentStateRow>(
      'cannot write it',
      `DELETE FROM xoauth_consent_states WHERE state = $1 AND link_hash IS NOT NULL AND expires_at > $2
       RETURNING *`,
      [state, now],
    );
    return rows[0] ? this.#codec.pendingConsent(rows[0]) : undefined;
  }

  async putCompletedConsent(record: CompletedConsentRecord, now: number): Promise<void> {
    const row = this.#codec.completedConsentRow(record, now);
    await this.#query('cannot write it', INSERT_CONSENT_STATE, consentStateValues(row));
  }

  async getCompletedConsent(state: string, now: number): Promise<CompletedConsentRecord | undefined> {
    const row = await this.#consentState(state, now);
    return row ? this.#codec.completedConsent(row) : undefined;
  }

  async #consentState(state: string, now: number): Promise<ConsentStateRow | undefined> {
    const rows = await this.#query<ConsentStateRow>(
      'cannot read it',
      'SELECT * FROM xoauth_consent_states WHERE state = $1 AND expires_at > $2',
      [state, now],
    );
    return rows[0];
  }

  deriveKey(purpose: string): Buffer {
    return this.#codec.deriveKey(purpose);
  }

  /** Every grant row as stored, sealed values untouched (for `store migrate` and its check). */
  allTokenRows(): Promise<TokenRow[]> {
    return this.#allTokenRows();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#watchers.clear();
    this.#unlisten();
    await this.#pool.end().catch(() => undefined);
  }
}
