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
import type { SqliteStoreSettings } from '../config/types.js';
import { ProxyError } from '../errors.js';
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
import { RowCodec, TOKEN_COLUMNS, type ConsentStateRow, type TokenRow } from './codec.js';
import { loadStoreKey, warnIfOpenMode, type StoreWarnings } from './key.js';

/** 2: refresh leases, consents in progress, the in-doubt deadline of a grant. */
const SCHEMA_VERSION = 3;
/** How often another process's commits are looked for while someone watches the grants. */
const WATCH_POLL_MS = 500;
const BUSY_TIMEOUT_MS = 10_000;

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
  in_doubt_until INTEGER,
  graph_send_until INTEGER,
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
CREATE TABLE IF NOT EXISTS refresh_leases (
  account_id TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS consent_states (
  state TEXT PRIMARY KEY,
  link_hash TEXT,
  account_id TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS consent_states_link ON consent_states(link_hash);
`;

const PUT_CONSENT_STATE = `INSERT OR REPLACE INTO consent_states
  (state, link_hash, account_id, expires_at, created_at, body)
  VALUES (@state, @link_hash, @account_id, @expires_at, @created_at, @body)`;

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

export class SqliteStore implements Store {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #codec: RowCodec;
  readonly #keySource: string;
  readonly #watchers = new Set<(accountId: string) => void>();
  #poll: NodeJS.Timeout | undefined;
  #dataVersion = 0;
  /** updated_at per account as last seen, to tell which accounts another process changed. */
  #snapshot = new Map<string, number>();

  private constructor(path: string, db: Database.Database, key: Buffer, keySource: string) {
    this.path = path;
    this.#db = db;
    this.#codec = new RowCodec(key, path);
    this.#keySource = keySource;
  }

  static open(
    settings: SqliteStoreSettings,
    /** `evenIfMoved`: open a file `store migrate` copied away (only that command does). */
    options: { env?: NodeJS.ProcessEnv; logger?: StoreWarnings; evenIfMoved?: boolean } = {},
  ): SqliteStore {
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
      const store = new SqliteStore(path, db, key, source);
      store.#migrateAndCheckKey();
      if (!options.evenIfMoved) store.#refuseIfMoved();
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
      if (this.#codec.keyCheckMatches(row.value)) return 'ok';
      throw this.#wrongKey();
    };
    // The usual case needs no write (and no write lock): schema current, key right.
    if ((db.pragma('user_version', { simple: true }) as number) === SCHEMA_VERSION && checkKey() === 'ok')
      return;
    db.transaction(() => {
      // Older files have a tokens table without the columns added since (schema 1: in doubt; 2: Graph).
      const columns = db.pragma('table_info(tokens)') as { name: string }[];
      if (columns.length > 0) {
        for (const column of ['in_doubt_until', 'graph_send_until']) {
          if (!columns.some((c) => c.name === column))
            db.exec(`ALTER TABLE tokens ADD COLUMN ${column} INTEGER`);
        }
      }
      db.exec(SCHEMA);
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
      if (checkKey() === 'missing') {
        db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run('key-check', this.#codec.keyCheck());
      }
    }).immediate();
  }

  /**
   * A file whose grants were copied to a shared store must not be used again: a forgotten instance
   * would refresh from it and, with strict rotation, kill the refresh token everyone else now uses.
   */
  #refuseIfMoved(): void {
    const moved = this.movedTo();
    if (moved === undefined) return;
    throw new ProxyError(
      'store',
      `The token store ${this.path} was moved to ${moved.to} on ${moved.at} (xoauth-proxy store migrate); ` +
        'its refresh tokens are no longer the live ones. Point this instance at the shared store ' +
        '(store.kind: postgres, store.url) instead. The file was left as it is, for the record.',
    );
  }

  /** Where `store migrate` copied this store to, if it did. */
  movedTo(): { to: string; at: string } | undefined {
    const row = this.#db.prepare('SELECT value FROM meta WHERE key = ?').get('moved-to') as
      { value: string } | undefined;
    return row ? (JSON.parse(row.value) as { to: string; at: string }) : undefined;
  }

  /** Marks the file as moved (see #refuseIfMoved). */
  markMoved(to: string, at: Date = new Date()): void {
    this.#db
      .prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)')
      .run('moved-to', JSON.stringify({ to, at: at.toISOString() }));
  }

  /** Every grant row as stored, sealed values untouched (for `store migrate`). */
  allTokenRows(): TokenRow[] {
    return this.#db.prepare('SELECT * FROM tokens ORDER BY account_id').all() as TokenRow[];
  }

  /** Every consent link, spent or not (for `store migrate`). */
  allConsentLinks(): ConsentLinkRecord[] {
    return (
      this.#db.prepare('SELECT token_hash FROM consent_links ORDER BY token_hash').all() as {
        token_hash: string;
      }[]
    ).flatMap((r) => {
      const link = this.#consentLink(r.token_hash);
      return link ? [link] : [];
    });
  }

  #wrongKey(): ProxyError {
    return new ProxyError(
      'store',
      `The token store ${this.path} cannot be decrypted with the key from ${this.#keySource}: it was written ` +
        `with a different key. Use the original key (XOAUTH_PROXY_KEY or the key file next to the store). ` +
        `The store was left untouched; only if the key is lost for good, move the file away and consent again.`,
    );
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

  async getToken(accountId: string): Promise<TokenRecord | undefined> {
    return this.#guard('cannot read it', () => {
      const row = this.#db.prepare('SELECT * FROM tokens WHERE account_id = ?').get(accountId) as
        TokenRow | undefined;
      return row ? this.#codec.toRecord(row) : undefined;
    });
  }

  async listTokens(onUnreadable?: (row: UnreadableToken) => void): Promise<TokenRecord[]> {
    return this.#guard('cannot read it', () => {
      const records: TokenRecord[] = [];
      for (const row of this.#db.prepare('SELECT * FROM tokens ORDER BY account_id').all() as TokenRow[]) {
        const read = this.#codec.readRow(row);
        if ('reason' in read) onUnreadable?.(read);
        else records.push(read);
      }
      return records;
    });
  }

  async listTokenSummaries(): Promise<TokenSummary[]> {
    return this.#guard('cannot read it', () =>
      (this.#db.prepare('SELECT * FROM tokens ORDER BY account_id').all() as TokenRow[]).map((row) =>
        this.#codec.summary(row),
      ),
    );
  }

  async putToken(record: TokenRecord): Promise<void> {
    this.#guard('cannot write it', () => this.#write(record));
    this.#changed(record.accountId);
  }

  #write(record: TokenRecord): void {
    this.#writeRow(this.#codec.toRow(record));
  }

  /** A row as it is, sealed values included (also how `store migrate` copies one in). */
  #writeRow(row: TokenRow): void {
    this.#db
      .prepare(
        `INSERT OR REPLACE INTO tokens (${TOKEN_COLUMNS.join(', ')})
         VALUES (${TOKEN_COLUMNS.map((c) => `@${c}`).join(', ')})`,
      )
      .run(row);
  }

  async updateToken(
    accountId: string,
    update: (current: TokenRecord | undefined) => TokenRecord | undefined,
  ): Promise<TokenRecord | undefined> {
    let wrote = false;
    const result = this.#guard('cannot write it', () =>
      this.#db
        .transaction(() => {
          const row = this.#db.prepare('SELECT * FROM tokens WHERE account_id = ?').get(accountId) as
            TokenRow | undefined;
          const read = row ? this.#codec.readRow(row) : undefined;
          // An unreadable row is no grant any more: a consent's update may replace it, every other
          // update (which needs the current grant) leaves it as it is.
          const current = read === undefined || 'reason' in read ? undefined : read;
          const next = update(current);
          if (next === undefined) return current;
          if (next.accountId !== accountId)
            throw new Error(`updateToken(${accountId}) returned ${next.accountId}`);
          this.#write(next);
          wrote = true;
          return next;
        })
        .immediate(),
    );
    if (wrote) this.#changed(accountId);
    return result;
  }

  async deleteToken(accountId: string): Promise<boolean> {
    const deleted = this.#guard(
      'cannot write it',
      () => this.#db.prepare('DELETE FROM tokens WHERE account_id = ?').run(accountId).changes > 0,
    );
    if (deleted) this.#changed(accountId);
    return deleted;
  }

  async acquireRefreshLease(accountId: string, holder: string, ttlMs: number): Promise<LeaseResult> {
    // One machine, one clock: the local one is the store's clock here.
    return this.#guard('cannot write it', () =>
      this.#db
        .transaction((): LeaseResult => {
          const now = Date.now();
          const row = this.#db
            .prepare('SELECT holder, expires_at FROM refresh_leases WHERE account_id = ?')
            .get(accountId) as { holder: string; expires_at: number } | undefined;
          if (row && row.holder !== holder && row.expires_at > now)
            return { acquired: false, holder: row.holder, remainingMs: row.expires_at - now };
          this.#db
            .prepare(
              'INSERT OR REPLACE INTO refresh_leases (account_id, holder, expires_at) VALUES (?, ?, ?)',
            )
            .run(accountId, holder, now + ttlMs);
          return row && row.holder !== holder ? { acquired: true, tookOver: row.holder } : { acquired: true };
        })
        .immediate(),
    );
  }

  async releaseRefreshLease(accountId: string, holder: string): Promise<void> {
    this.#guard('cannot write it', () => {
      this.#db
        .prepare('DELETE FROM refresh_leases WHERE account_id = ? AND holder = ?')
        .run(accountId, holder);
    });
  }

  watchGrants(listener: (accountId: string) => void): () => void {
    this.#watchers.add(listener);
    if (!this.#poll) {
      this.#snapshot = this.#versions();
      this.#dataVersion = this.#db.pragma('data_version', { simple: true }) as number;
      this.#poll = setInterval(() => this.#pollOthers(), WATCH_POLL_MS);
      this.#poll.unref();
    }
    return () => {
      this.#watchers.delete(listener);
      if (this.#watchers.size === 0 && this.#poll) {
        clearInterval(this.#poll);
        this.#poll = undefined;
      }
    };
  }

  /** `data_version` moves only when another connection commits: then see which accounts changed. */
  #pollOthers(): void {
    try {
      if (!this.#db.open) return;
      const version = this.#db.pragma('data_version', { simple: true }) as number;
      if (version === this.#dataVersion) return;
      this.#dataVersion = version;
      const now = this.#versions();
      const changed: string[] = [];
      for (const [id, at] of now) if (this.#snapshot.get(id) !== at) changed.push(id);
      for (const id of this.#snapshot.keys()) if (!now.has(id)) changed.push(id);
      this.#snapshot = now;
      for (const id of changed) this.#emit(id);
    } catch {
      // A busy or briefly unreadable file: the next poll looks again.
    }
  }

  #versions(): Map<string, number> {
    const rows = this.#db.prepare('SELECT account_id, updated_at FROM tokens').all() as {
      account_id: string;
      updated_at: number;
    }[];
    return new Map(rows.map((r) => [r.account_id, r.updated_at]));
  }

  #changed(accountId: string): void {
    if (this.#watchers.size === 0) return;
    try {
      const row = this.#db.prepare('SELECT updated_at FROM tokens WHERE account_id = ?').get(accountId) as
        { updated_at: number } | undefined;
      if (row) this.#snapshot.set(accountId, row.updated_at);
      else this.#snapshot.delete(accountId);
    } catch {
      // Only the snapshot is stale then: the poll reports the account once more.
    }
    this.#emit(accountId);
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

  get location(): string {
    return this.path;
  }

  async ping(): Promise<void> {
    this.#guard('cannot read it', () => this.#db.prepare('SELECT 1').get());
  }

  async listAppPasswords(accountId?: string): Promise<AppPasswordRecord[]> {
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

  async addAppPassword(record: AppPasswordRecord): Promise<void> {
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

  async removeAppPassword(accountId: string, idOrLabel: string): Promise<boolean> {
    return this.#guard(
      'cannot write it',
      () =>
        this.#db
          .prepare('DELETE FROM app_passwords WHERE account_id = ? AND (id = ? OR label = ?)')
          .run(accountId, idOrLabel, idOrLabel).changes > 0,
    );
  }

  async touchAppPassword(id: string, at: number): Promise<void> {
    this.#guard('cannot write it', () => {
      this.#db.prepare('UPDATE app_passwords SET last_used_at = ? WHERE id = ?').run(at, id);
    });
  }

  async addConsentLink(record: ConsentLinkRecord): Promise<void> {
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

  async getConsentLink(tokenHash: string): Promise<ConsentLinkRecord | undefined> {
    return this.#guard('cannot read it', () => this.#consentLink(tokenHash));
  }

  #consentLink(tokenHash: string): ConsentLinkRecord | undefined {
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
  }

  async useConsentLink(tokenHash: string, at: number): Promise<boolean> {
    // One UPDATE with the "not yet used" condition: SQLite serialises writers, so exactly one wins.
    return this.#guard(
      'cannot write it',
      () =>
        this.#db
          .prepare('UPDATE consent_links SET used_at = ? WHERE token_hash = ? AND used_at IS NULL')
          .run(at, tokenHash).changes > 0,
    );
  }

  async putPendingConsent(
    record: PendingConsentRecord,
    limits: { now: number; maxPerLink: number; maxTotal: number },
  ): Promise<void> {
    const row = this.#codec.pendingConsentRow(record, limits.now);
    this.#guard('cannot write it', () =>
      this.#db
        .transaction(() => {
          const db = this.#db;
          db.prepare('DELETE FROM consent_states WHERE expires_at <= ?').run(row.created_at);
          // Leave room for the new one: the link's oldest go first, then the oldest of all.
          db.prepare(
            `DELETE FROM consent_states WHERE state IN (SELECT state FROM consent_states WHERE link_hash = ?
             ORDER BY created_at DESC, rowid DESC LIMIT -1 OFFSET ?)`,
          ).run(row.link_hash, Math.max(0, limits.maxPerLink - 1));
          db.prepare(
            `DELETE FROM consent_states WHERE state IN (SELECT state FROM consent_states
             ORDER BY created_at DESC, rowid DESC LIMIT -1 OFFSET ?)`,
          ).run(Math.max(0, limits.maxTotal - 1));
          db.prepare(PUT_CONSENT_STATE).run(row);
        })
        .immediate(),
    );
  }

  async getPendingConsent(state: string, now: number): Promise<PendingConsentRecord | undefined> {
    const row = this.#guard('cannot read it', () => this.#consentState(state, now));
    return row ? this.#codec.pendingConsent(row) : undefined;
  }

  async takePendingConsent(state: string, now: number): Promise<PendingConsentRecord | undefined> {
    const row = this.#guard(
      'cannot write it',
      () =>
        this.#db
          .prepare(
            'DELETE FROM consent_states WHERE state = ? AND link_hash IS NOT NULL AND expires_at > ? RETURNING *',
          )
          .get(state, now) as ConsentStateRow | undefined,
    );
    return row ? this.#codec.pendingConsent(row) : undefined;
  }

  async putCompletedConsent(record: CompletedConsentRecord, now: number): Promise<void> {
    const row = this.#codec.completedConsentRow(record, now);
    this.#guard('cannot write it', () => {
      this.#db.prepare(PUT_CONSENT_STATE).run(row);
    });
  }

  async getCompletedConsent(state: string, now: number): Promise<CompletedConsentRecord | undefined> {
    const row = this.#guard('cannot read it', () => this.#consentState(state, now));
    return row ? this.#codec.completedConsent(row) : undefined;
  }

  #consentState(state: string, now: number): ConsentStateRow | undefined {
    return this.#db
      .prepare('SELECT * FROM consent_states WHERE state = ? AND expires_at > ?')
      .get(state, now) as ConsentStateRow | undefined;
  }

  deriveKey(purpose: string): Buffer {
    return this.#codec.deriveKey(purpose);
  }

  async close(): Promise<void> {
    if (this.#poll) clearInterval(this.#poll);
    this.#poll = undefined;
    this.#watchers.clear();
    if (this.#db.open) this.#db.close();
  }
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
