import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../../src/store/sqlite-store.js';
import { record, storeContract } from '../../helpers/store-contract.js';

const dir = mkdtempSync(join(tmpdir(), 'xoauth-sqlite-contract-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

storeContract('SQLite', {
  // A new file per test; every handle of a test opens that same file, as two processes would.
  fresh: () => void n++,
  open: async () => SqliteStore.open({ path: join(dir, `t${n}.db`), keyFile: join(dir, 'key') }, { env: {} }),
});

describe('SQLite: a schema 1 file (before leases, consents in progress and the in-doubt column)', () => {
  it('is upgraded in place when opened: its grants stay, the new columns and tables work', async () => {
    const path = join(dir, 'old.db');
    const settings = { path, keyFile: join(dir, 'key') };
    const first = SqliteStore.open(settings, { env: {} });
    await first.putToken(record('old@example.com'));
    await first.close();
    // Back to what schema 1 had.
    const db = new Database(path);
    db.exec(`ALTER TABLE tokens DROP COLUMN in_doubt_until;
             DROP TABLE refresh_leases; DROP TABLE consent_states; PRAGMA user_version = 1;`);
    db.close();

    const store = SqliteStore.open(settings, { env: {} });
    try {
      expect(await store.getToken('old@example.com')).toEqual(record('old@example.com'));
      await store.putToken(record('old@example.com', { state: 'failing', inDoubtUntil: 1_900_000_000_000 }));
      expect((await store.getToken('old@example.com'))?.inDoubtUntil).toBe(1_900_000_000_000);
      expect(await store.acquireRefreshLease('old@example.com', 'me', 1_000)).toEqual({ acquired: true });
    } finally {
      await store.close();
    }
  });
});
