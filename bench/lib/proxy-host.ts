/**
 * The proxy under test, wired as the integration tests do (test/integration/imap/env.ts) and as the
 * daemon does: LocalAuthenticator (scrypt hashes from the config, with a credential cache the bench
 * can clear), TokenManager over a SQLite token store seeded as consent would seed it, an IMAP and an
 * SMTP listener with implicit TLS, and the Prometheus metrics a daemon with an HTTP listener has. Logs
 * go through the program's own logger (redaction included) to /dev/null at level info, so their cost
 * is counted but nothing is printed.
 */
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULTS } from '../../src/config/defaults.js';
import type { Config, ConnectionConfig, ListenerConfig, ResolvedAccount } from '../../src/config/types.js';
import { LocalAuthenticator } from '../../src/credentials/authenticator.js';
import { CredentialCache } from '../../src/credentials/credential-cache.js';
import { createLogger } from '../../src/log.js';
import { storeGrant } from '../../src/oauth/grant-record.js';
import { openStore } from '../../src/store/index.js';
import { TokenManager } from '../../src/oauth/token-manager.js';
import { createImapServer } from '../../src/proxy/imap/server.js';
import type { ProxyDeps } from '../../src/proxy/shared/types.js';
import { createSmtpServer } from '../../src/proxy/smtp/server.js';
import { UpstreamPool } from '../../src/proxy/shared/upstream-pool.js';
import { SingleFlightAuthenticator, patchUpstreamTls, countScrypt, type Experiment } from './experiments.js';
import { createGraphSending } from '../../src/proxy/smtp/graph-sending.js';
import { MessageBudget } from '../../src/proxy/shared/message-budget.js';
import { Metrics } from '../../src/metrics/metrics.js';

export interface SeededAccount {
  username: string;
  email: string;
  accessToken: string;
  refreshToken: string;
  /** What the store believes (epoch ms); in the past for "every token expired". */
  expiresAt: number;
}

export interface ProxyHostOptions {
  cert: string;
  key: string;
  ca: string;
  tokenUrl: string;
  authorizeUrl: string;
  imapPort: number;
  smtpPort: number;
  passwordHash: string;
  accounts: SeededAccount[];
  /** Proposed fixes to try (see experiments.ts). */
  experiments?: Experiment[];
  /**
   * A shared PostgreSQL store instead of the embedded file: `key` (base64) is the same for every
   * instance; only one of them seeds the grants.
   */
  postgres?: { url: string; key: string; seed: boolean };
  /** false: no warm upstream connections (the daemon has them unless `settings.upstreamPool.enabled: false`). */
  upstreamPool?: boolean;
  /** false: no Prometheus metrics (the daemon has them whenever it has an HTTP listener). */
  metrics?: boolean;
}

export interface ProxyHost {
  imapPort: number;
  smtpPort: number;
  /** The same fronts with the client leg in clear text. */
  imapPlainPort: number;
  smtpPlainPort: number;
  clearCredentialCache(): void;
  /** scrypt runs so far (every password check that missed the credential cache). */
  scryptCalls(): number;
  /** Warm-connection hits and misses (none without a pool). */
  poolStats(): { hits: number; misses: number; idle: number } | undefined;
  /** Verifies these logins once (fills the credential cache without touching any token). */
  warmCredentials(usernames: string[], password: string): Promise<void>;
  close(): Promise<void>;
}

export async function startProxyHost(o: ProxyHostOptions): Promise<ProxyHost> {
  const experiments = new Set(o.experiments ?? []);
  const scrypt = countScrypt();
  if (experiments.has('cached-upstream-context') || experiments.has('upstream-session-resumption')) {
    patchUpstreamTls({
      cacheContexts: true,
      resumeSessions: experiments.has('upstream-session-resumption'),
    });
  }
  const connection: ConnectionConfig = {
    name: 'bench',
    provider: 'custom',
    clientId: 'bench-client',
    clientSecret: 'bench-secret',
    grant: 'authorization_code',
    authorizeUrl: o.authorizeUrl,
    tokenUrl: o.tokenUrl,
    scopes: ['https://mail.google.com/'],
    authorizeParams: {},
    imap: { host: '127.0.0.1', port: o.imapPort, tls: 'implicit' },
    smtp: { host: '127.0.0.1', port: o.smtpPort, tls: 'implicit' },
    sasl: 'xoauth2',
    ca: o.ca,
    allowedIdentities: [],
  };
  const dir = mkdtempSync(join(tmpdir(), 'xoauth-bench-'));
  const config: Config = {
    file: join(dir, 'config.yaml'),
    listen: { imap: [], smtp: [], pop3: [], http: [] },
    store: o.postgres
      ? { kind: 'postgres', url: o.postgres.url, keyFile: join(dir, 'key'), ...DEFAULTS.postgres }
      : { path: join(dir, 'tokens.db'), keyFile: join(dir, 'key') },
    connections: new Map([[connection.name, connection]]),
    accounts: o.accounts.map((a) => ({
      username: a.username,
      email: a.email,
      connection: connection.name,
      password: o.passwordHash,
    })),
    // Every bench client comes from 127.0.0.1: the per-address cap (meant for one abusive host)
    // would refuse most of a storm or of the idle sessions.
    settings: {
      ...DEFAULTS.settings,
      limits: {
        ...DEFAULTS.settings.limits,
        maxConnectionsPerAddress: DEFAULTS.settings.limits.maxConnections,
      },
    },
    http: { consentHint: 'command' },
    notify: DEFAULTS.notify,
  };
  const logger = createLogger({ level: 'info', destination: createWriteStream('/dev/null') });
  const store = await openStore(config.store, {
    env: o.postgres ? { XOAUTH_PROXY_KEY: o.postgres.key } : {},
  });
  for (const a of o.postgres?.seed === false ? [] : o.accounts) {
    const account: ResolvedAccount = {
      id: a.email.toLowerCase(),
      username: a.username,
      email: a.email,
      connection,
      entry: a.username,
    };
    await storeGrant(
      store,
      account,
      {
        accessToken: a.accessToken,
        refreshToken: a.refreshToken,
        expiresAt: a.expiresAt,
        scopes: connection.scopes,
      },
      { email: a.email },
    );
  }
  const tokens = new TokenManager({ config, store, logger: logger.child({ component: 'tokens' }) });
  const cache = new CredentialCache({ ttlMs: config.settings.credentialCacheMs });
  const authenticator = new LocalAuthenticator({
    config,
    store,
    cache,
    logger: logger.child({ component: 'auth' }),
  });
  // As the daemon wires it (src/daemon.ts).
  const pool =
    o.upstreamPool === false
      ? undefined
      : new UpstreamPool({ settings: DEFAULTS.settings.upstreamPool, logger });
  const deps: ProxyDeps = {
    config,
    ...(pool ? { upstreamPool: pool } : {}),
    // A daemon with an HTTP listener (consent pages) has its metrics, GC and event-loop monitors included.
    ...(o.metrics === false ? {} : { metrics: new Metrics() }),
    graph: createGraphSending({ store, tokens, logger: logger.child({ component: 'graph' }) }),
    messageBudget: new MessageBudget(config.settings.limits.messageMemory),
    authenticator: experiments.has('single-flight-credentials')
      ? new SingleFlightAuthenticator(authenticator)
      : authenticator,
    tokens,
    logger,
    consentHint: () => 'run xoauth-proxy consent',
  };
  const listener = (): ListenerConfig => ({
    host: '127.0.0.1',
    port: 0,
    tls: 'implicit',
    cert: o.cert,
    key: o.key,
  });
  const imap = createImapServer(listener(), deps);
  const smtp = createSmtpServer(listener(), deps, { serverName: 'proxy.bench' });
  const plain: ListenerConfig = { host: '127.0.0.1', port: 0, tls: 'none' };
  const imapPlain = createImapServer(plain, deps);
  const smtpPlain = createSmtpServer(plain, deps, { serverName: 'proxy.bench' });
  const [i, s, ip, sp] = await Promise.all([
    imap.listen(),
    smtp.listen(),
    imapPlain.listen(),
    smtpPlain.listen(),
  ]);
  return {
    imapPort: i.port,
    smtpPort: s.port,
    imapPlainPort: ip.port,
    smtpPlainPort: sp.port,
    clearCredentialCache: () => cache.clear(),
    scryptCalls: () => scrypt.calls,
    poolStats: () => pool?.stats(),
    async warmCredentials(usernames, password) {
      for (const username of usernames)
        await authenticator.verify({ username, password, remoteAddress: '127.0.0.1' });
    },
    async close() {
      await Promise.all([imap.close(), smtp.close(), imapPlain.close(), smtpPlain.close()]);
      pool?.close();
      await tokens.stop();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
