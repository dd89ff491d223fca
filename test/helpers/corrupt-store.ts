import Database from 'better-sqlite3';
import type { StoreSettings } from '../../src/config/types.js';

/** Flips one byte inside the sealed refresh token of a row, as damage or tampering would. */
export function corruptRefreshToken(where: string | StoreSettings, accountId: string): void {
  if (typeof where !== 'string' && where.kind === 'postgres')
    throw new Error('corruptRefreshToken: SQLite only');
  const db = new Database(typeof where === 'string' ? where : where.path);
  const row = db.prepare('SELECT refresh_token FROM tokens WHERE account_id = ?').get(accountId) as {
    refresh_token: string;
  };
  const [version, body] = row.refresh_token.split('.') as [string, string];
  const raw = Buffer.from(body, 'base64url');
  raw[raw.length - 1] = raw[raw.length - 1]! ^ 0xff;
  db.prepare('UPDATE tokens SET refresh_token = ? WHERE account_id = ?').run(
    `${version}.${raw.toString('base64url')}`,
    accountId,
  );
  db.close();
}
