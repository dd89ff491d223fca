/**
 * `settings.upstreamPool` through the daemon's own wiring: on by default (a second login leaves a
 * warm connection behind, which the third one uses), and a reload with `enabled: false` makes every
 * later login open exactly its own upstream connection and nothing more.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveAccount } from '../../../src/config/accounts.js';
import { DEFAULTS } from '../../../src/config/defaults.js';
import type { Config } from '../../../src/config/types.js';
import { startDaemon, type Daemon } from '../../../src/daemon.js';
import { openStore } from '../../../src/store/index.js';
import { getTestCerts } from '../../helpers/certs.js';
import { fakeConnection, startFakeAuthServer } from '../../helpers/fake-auth-server.js';
import { startFakeImapServer } from '../../helpers/fake-imap-server.js';
import { captureLogger, eventually, seedConsentGrant, testPasswordHash } from '../../helpers/proxy-env.js';
import { RawImap } from './raw-client.js';

const USER = 'pool-user';
const PASSWORD = 'pool-Pa55word';
const EMAIL = 'alice.pool@example.com';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function login(port: number): Promise<void> {
  const c = await RawImap.connect(port);
  try {
    await c.waitFor('\r\n');
    c.write(`a1 LOGIN ${USER} ${PASSWORD}\r\na2 LOGOUT\r\n`);
    await c.waitFor(/a2 OK.*\r\n/);
    expect(c.text).toMatch(/a1 OK \[CAPABILITY /);
  } finally {
    c.close();
  }
}

describe('the daemon with settings.upstreamPool', () => {
  it('pools by default; after a reload with enabled: false, one upstream connection per login', async () => {
    const certs = getTestCerts();
    const auth = await startFakeAuthServer();
    cleanups.push(() => auth.close());
    const imap = await startFakeImapServer({
      tls: 'implicit',
      checkAccessToken: (t) => auth.checkAccessToken(t),
    });
    cleanups.push(() => imap.close());
    const connection = fakeConnection(auth, { imap: imap.server, ca: certs.caPem });
    const dir = mkdtempSync(join(tmpdir(), 'xoauth-pool-'));
    cleanups.push(() => Promise.resolve(rmSync(dir, { recursive: true, force: true })));
    const config: Config = {
      file: join(dir, 'config.yaml'),
      listen: { imap: [{ host: '127.0.0.1', port: 0, tls: 'none' }], smtp: [], pop3: [], http: [] },
      store: { path: join(dir, 'tokens.db'), keyFile: join(dir, 'store.key') },
      connections: new Map([[connection.name, connection]]),
      accounts: [
        {
          username: USER,
          email: EMAIL,
          connection: connection.name,
          password: await testPasswordHash(PASSWORD),
        },
      ],
      settings: DEFAULTS.settings,
      http: { consentHint: 'command' },
      notify: DEFAULTS.notify,
    };
    const account = resolveAccount(config, USER)!;
    const store = await openStore(config.store, { env: {} });
    await seedConsentGrant({ store, account, auth, connection });
    await store.close();
    const { logger } = captureLogger();
    const daemon: Daemon = await startDaemon(config, logger);
    cleanups.push(() => daemon.close());
    const port = daemon.listeners.find((l) => l.protocol === 'imap')!.port;

    await login(port);
    await login(port);
    // One login in the idle age before the second: one warm connection follows it.
    await eventually(() => imap.connections === 3);
    await login(port);
    // The third login used the warm one; the two logins before it ask for two more.
    await eventually(() => imap.connections === 5);
    expect(imap.authAttempts.filter((a) => a.ok)).toHaveLength(3);

    await daemon.reload({
      ...config,
      settings: { ...config.settings, upstreamPool: { enabled: false, maxPerHost: 4, maxIdleMs: 20_000 } },
    });
    const before = imap.connections;
    for (let i = 0; i < 3; i++) await login(port);
    await new Promise((r) => setTimeout(r, 300));
    expect(imap.connections).toBe(before + 3);
  });
});
