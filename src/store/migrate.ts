/**
 * `xoauth-proxy store migrate --from tokens.db`: the embedded store's records into the shared one,
 * verbatim. Grant rows keep their sealed values byte for byte (the key is the same, and the sealing is
 * bound to the field and account, not to the store), so no token is ever decrypted on the way, except
 * to check afterwards that each refresh token opens with the shared key. Then the file is marked as
 * moved, and an instance still pointed at it refuses to start.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { PostgresStoreSettings } from '../config/types.js';
import { ProxyError } from '../errors.js';
import { RowCodec, TOKEN_COLUMNS } from './codec.js';
import { loadStoreKey } from './key.js';
import { PostgresStore } from './postgres-store.js';
import { SqliteStore } from './sqlite-store.js';

export interface MigrationResult {
  grants: number;
  appPasswords: number;
  consentLinks: number;
  to: string;
}

/** A daemon still running on the file would keep rotating refresh tokens in it. */
function refuseIfDaemonRuns(from: string): void {
  const pidFile = join(dirname(from), 'xoauth-proxy.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 0) return;
  try {
    process.kill(pid, 0);
  } catch {
    return; // a pid file left by a crash
  }
  throw new ProxyError(
    'store',
    `xoauth-proxy is still running on ${from} (pid ${pid}, from ${pidFile}). Stop it first: a refresh it ` +
      'makes during the copy would be lost.',
  );
}

export async function migrateSqliteToPostgres(
  from: { path: string; keyFile: string },
  to: PostgresStoreSettings,
  options: { env?: NodeJS.ProcessEnv } = {},
): Promise<MigrationResult> {
  if (!existsSync(from.path)) throw new ProxyError('store', `There is no token store at ${from.path}.`);
  refuseIfDaemonRuns(from.path);
  const source = SqliteStore.open(from, { ...options, evenIfMoved: true });
  let target: PostgresStore | undefined;
  try {
    const moved = source.movedTo();
    if (moved) {
      throw new ProxyError(
        'store',
        `${from.path} was already moved to ${moved.to} on ${moved.at}; nothing was copied again.`,
      );
    }
    target = await PostgresStore.open(to, options);
    if ((await target.allTokenRows()).length > 0) {
      throw new ProxyError(
        'store',
        `The PostgreSQL store ${target.location} already holds grants; a migration only fills an empty one ` +
          '(nothing was copied). Use a new database, or empty this one if its grants are not needed.',
      );
    }
    const rows = source.allTokenRows();
    const appPasswords = await source.listAppPasswords();
    const links = source.allConsentLinks();
    for (const row of rows) await target.putTokenRow(row);
    for (const record of appPasswords) await target.addAppPassword(record);
    for (const link of links) await target.addConsentLink(link);

    // Read back: byte-identical rows, and every refresh token opens with the shared key.
    const { key } = loadStoreKey(to.keyFile, options.env, { mayCreate: false, storePath: target.location });
    const codec = new RowCodec(key, target.location);
    const copied = new Map((await target.allTokenRows()).map((r) => [r.account_id, r]));
    for (const row of rows) {
      const back = copied.get(row.account_id);
      const same = back && TOKEN_COLUMNS.every((c) => String(back[c]) === String(row[c]));
      if (!same) throw new ProxyError('store', `The copy of ${row.account_id} differs from the original.`);
      if (row.refresh_token !== null && !codec.refreshTokenOpens(back)) {
        throw new ProxyError(
          'store',
          `The refresh token of ${row.account_id} does not decrypt with the key of the shared store: the ` +
            'SQLite store was written with another key. Nothing was marked as moved.',
        );
      }
    }
    source.markMoved(target.location);
    return {
      grants: rows.length,
      appPasswords: appPasswords.length,
      consentLinks: links.length,
      to: target.location,
    };
  } finally {
    await source.close();
    await target?.close();
  }
}
