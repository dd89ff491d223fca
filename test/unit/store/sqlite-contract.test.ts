import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { SqliteStore } from '../../../src/store/sqlite-store.js';
import { storeContract } from '../../helpers/store-contract.js';

const dir = mkdtempSync(join(tmpdir(), 'xoauth-sqlite-contract-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

storeContract('SQLite', {
  // A new file per test; every handle of a test opens that same file, as two processes would.
  fresh: () => void n++,
  open: async () => SqliteStore.open({ path: join(dir, `t${n}.db`), keyFile: join(dir, 'key') }, { env: {} }),
});
