/**
 * A wrong password must not tell an attacker whether the account exists or how many app passwords it
 * has: both cost one scrypt at the default cost. Timed with medians and a generous margin, on a real
 * store and real hashes, samples of the two cases interleaved so that load from other jobs hits both.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalAuthenticator } from '../../../src/credentials/authenticator.js';
import { ProxyError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import { createAppPassword } from '../../../src/credentials/app-passwords.js';
import { openStore } from '../../../src/store/index.js';
import type { Store } from '../../../src/oauth/types.js';
import { GOOGLE, load, yaml } from '../config/helpers.js';

const SAMPLES = 7;

let dir: string;
let store: Store;
beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'xoauth-timing-'));
  store = await openStore({ path: join(dir, 'tokens.db'), keyFile: join(dir, 'store.key') }, { env: {} });
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

describe('login timing', () => {
  it('a wrong password for a user with 5 app passwords costs what an unknown user costs', async () => {
    const config = load(
      yaml(
        'connections:',
        ...GOOGLE,
        'accounts:',
        "  - username: '*@example.org'",
        '    connection: g',
        'settings:',
        '  credentialCache: 0s',
        '  loginLimiter:',
        '    lockAfter: 1000',
      ),
    );
    const passwords: string[] = [];
    for (let i = 0; i < 5; i++) {
      passwords.push((await createAppPassword(store, 'bob@example.org', `device ${i}`)).password);
    }
    const auth = new LocalAuthenticator({
      config,
      store,
      logger: silentLogger(),
      sleep: () => Promise.resolve(),
    });
    const timeFailure = async (username: string, password: string, n: number): Promise<number> => {
      const started = performance.now();
      const err = await auth.verify({ username, password, remoteAddress: `127.0.0.${n + 2}` }).then(
        () => undefined,
        (e: unknown) => e,
      );
      const ms = performance.now() - started;
      expect(err).toBeInstanceOf(ProxyError);
      return ms;
    };
    // warm up both paths (scrypt's first run allocates)
    await timeFailure('nobody@example.com', 'guess', 0);
    await timeFailure('bob@example.org', 'guess', 0);

    const unknown: number[] = [];
    const known: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      unknown.push(await timeFailure(`nobody${i}@example.com`, `guess-${i}`, i));
      // a guess of any shape: free text, and one that names a real record with a wrong secret
      const guess =
        i % 2 === 0 ? `guess-${i}` : `${(passwords[i % 5] as string).slice(0, 5)}zzzz-zzzz-zzzz-zzzz`;
      known.push(await timeFailure('bob@example.org', guess, i));
    }
    const [u, k] = [median(unknown), median(known)];
    expect(
      Math.max(u, k) / Math.min(u, k),
      `unknown ${u.toFixed(0)} ms, known ${k.toFixed(0)} ms`,
    ).toBeLessThan(1.5);
  }, 60_000);
});
