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

describe('SQLite: a schema 1 file (before leases, consents in progress, the in-doubt and Graph columns)', () => {
  it('is upgraded in place when opened: its grants stay, the new columns and tables work', async () => {
    const path = join(dir, 'old.db');
    const settings = { path, keyFile: join(dir, 'key') };
    const first = SqliteStore.open(settings, { env: {} });
    await first.putToken(record('old@example.com'));
    await first.close();
    // Back to what schema 1 had.
    const db = new Database(path);
    db.exec(`ALTER TABLE tokens DROP COLUMN in_doubt_until; ALTER TABLE tokens DROP COLUMN graph_send_until;
             DROP TABLE refresh_leases; DROP TABLE consent_states; PRAGMA user_version = 1;`);
    db.close();

    const store = SqliteStore.open(settings, { env: {} });
    try {
      expect(await store.getToken('old@example.com')).toEqual(record('old@example.com'));
      await store.putToken(record('old@example.com', { state: 'failing', inDoubtUntil: 1_900_000_000_000 }));
      expect((await store.getToken('old@example.com'))?.inDoubtUntil).toBe(1_900_000_000_000);
      await store.putToken(record('old@example.com', { graphSendUntil: 1_900_000_000_001 }));
      expect((await store.getToken('old@example.com'))?.graphSendUntil).toBe(1_900_000_000_001);
      expect(await store.acquireRefreshLease('old@example.com', 'me', 1_000)).toEqual({ acquired: true });
    } finally {
      await store.close();
    }
  });
});

describe('SQLite: a schema 2 file (before the Graph column)', () => {
  it('gains graph_send_until in place and keeps its grants', async () => {
    const path = join(dir, 'v2.db');
    const settings = { path, keyFile: join(dir, 'key') };
    const first = SqliteStore.open(settings, { env: {} });
    await first.putToken(record('two@example.com', { inDoubtUntil: 1_800_000_000_000 }));
    await first.close();
    const db = new Database(path);
    db.exec('ALTER TABLE tokens DROP COLUMN graph_send_until; PRAGMA user_version = 2;');
    db.close();

    const store = SqliteStore.open(settings, { env: {} });
    try {
      expect(await store.getToken('two@example.com')).toEqual(
        record('two@example.com', { inDoubtUntil: 1_800_000_000_000 }),
      );
      await store.updateToken('two@example.com', (r) =>
        r ? { ...r, graphSendUntil: 1_900_000_000_000 } : r,
      );
      expect((await store.getToken('two@example.com'))?.graphSendUntil).toBe(1_900_000_000_000);
    } finally {
      await store.close();
    }
  });
});
