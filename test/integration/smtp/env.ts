/**
 * Test environment for the SMTP proxy: fake authorization server, fake Gmail (smtp-server speaking
 * XOAUTH2), and the proxy itself on 127.0.0.1 port 0, wired with a real token refresh against the fake.
 */
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { DEFAULTS } from '../../../src/config/defaults.js';
import type {
  Config,
  ListenerConfig,
  ResolvedAccount,
  Settings,
  TlsMode,
} from '../../../src/config/types.js';
import type { Authenticator, LoginAttempt } from '../../../src/credentials/types.js';
import { ProxyError } from '../../../src/errors.js';
import { refreshAccessToken, TokenEndpointError } from '../../../src/oauth/grants/index.js';
import type { AccessToken, TokenProvider } from '../../../src/oauth/types.js';
import type { ProxyDeps, ProxyServer } from '../../../src/proxy/shared/types.js';
import { createSmtpServer } from '../../../src/proxy/smtp/server.js';
import { getTestCerts } from '../../helpers/certs.js';
import { fakeConnection, startFakeAuthServer, type FakeAuthServer } from '../../helpers/fake-auth-server.js';
import { startFakeSmtpUpstream, type FakeSmtpUpstream } from '../../helpers/fake-smtp-upstream.js';

export const USER = 'legacy-scanner';
export const PASSWORD = 'Sc4nner pässword!';
export const EMAIL = 'alice@example.com';
export const CONSENT_HINT = 'Ask the mailbox owner to run: xoauth-proxy consent alice@example.com';

/**
 * Stand-in for the OAuth core's TokenManager (same contract): caches the access token, refreshes with
 * the stored refresh token through the real grant code, and classifies failures like the real one.
 */
export class RefreshingTokenProvider implements TokenProvider {
  readonly calls: { forceRefresh: boolean }[] = [];
  readonly #grants = new Map<string, { refreshToken: string; access?: AccessToken }>();

  seed(accountId: string, refreshToken: string, access?: AccessToken): void {
    this.#grants.set(accountId, access ? { refreshToken, access } : { refreshToken });
  }

  async getAccessToken(account: ResolvedAccount, options?: { forceRefresh?: boolean }): Promise<AccessToken> {
    const forceRefresh = options?.forceRefresh === true;
    this.calls.push({ forceRefresh });
    const grant = this.#grants.get(account.id);
    if (!grant) throw new ProxyError('needs-consent', `no grant for ${account.id}`);
    if (!forceRefresh && grant.access && grant.access.expiresAt > Date.now() + 60_000) return grant.access;
    try {
      const set = await refreshAccessToken(account.connection, grant.refreshToken, { timeoutMs: 5_000 });
      grant.refreshToken = set.refreshToken ?? grant.refreshToken;
      grant.access = { token: set.accessToken, expiresAt: set.expiresAt };
      return grant.access;
    } catch (err) {
      if (err instanceof TokenEndpointError && err.kind === 'permanent') {
        throw new ProxyError('needs-consent', err.message, { cause: err });
      }
      throw new ProxyError('token-unavailable', (err as Error).message, { cause: err });
    }
  }

  invalidate(accountId: string): void {
    const grant = this.#grants.get(accountId);
    if (grant) delete grant.access;
  }
}

/** Stand-in for the LocalAuthenticator: one user, one password, no limiter delay. */
class OneUserAuthenticator implements Authenticator {
  readonly attempts: Omit<LoginAttempt, 'password'>[] = [];
  constructor(private readonly account: () => ResolvedAccount) {}
  async verify(attempt: LoginAttempt): Promise<ResolvedAccount> {
    this.attempts.push({ username: attempt.username, remoteAddress: attempt.remoteAddress });
    if (attempt.username !== USER || attempt.password !== PASSWORD) {
      throw new ProxyError('bad-credentials', 'wrong user name or password');
    }
    return this.account();
  }
}

export interface EnvOptions {
  listenerTls: TlsMode;
  upstreamTls: 'implicit' | 'starttls';
  minVersion?: ListenerConfig['minVersion'];
  settings?: Partial<Settings['limits']>;
  /** Seed a cached access token that the fake already considers expired (default: a valid one). */
  staleAccessToken?: boolean;
}

export interface SmtpEnv {
  auth: FakeAuthServer;
  upstream: FakeSmtpUpstream;
  proxy: ProxyServer;
  port: number;
  tokens: RefreshingTokenProvider;
  authenticator: OneUserAuthenticator;
  account: ResolvedAccount;
  /** Every JSON log line the proxy wrote. */
  logLines: Record<string, unknown>[];
  /** Raw log text, to check that no secret ever reaches it. */
  logText(): string;
  close(): Promise<void>;
}

function captureLogger(lines: Record<string, unknown>[], raw: string[]): Logger {
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      const text = chunk.toString('utf8');
      raw.push(text);
      for (const l of text.split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return pino({ level: 'debug', base: undefined }, sink);
}

export function testConfig(settings: Partial<Settings['limits']> = {}): Config {
  return {
    file: '/test/config.yaml',
    listen: { imap: [], smtp: [], pop3: [], http: [] },
    store: DEFAULTS.store,
    connections: new Map(),
    accounts: [],
    settings: {
      ...DEFAULTS.settings,
      limits: { ...DEFAULTS.settings.limits, upstreamConnectTimeoutMs: 10_000, ...settings },
    },
    http: { consentHint: 'command' },
    notify: DEFAULTS.notify,
  };
}

export async function startSmtpEnv(options: EnvOptions): Promise<SmtpEnv> {
  const certs = getTestCerts();
  const auth = await startFakeAuthServer();
  const upstream = await startFakeSmtpUpstream({
    tls: options.upstreamTls,
    checkAccessToken: (t) => auth.checkAccessToken(t),
  });
  const account: ResolvedAccount = {
    id: EMAIL,
    username: USER,
    email: EMAIL,
    connection: fakeConnection(auth, { smtp: upstream.server, ca: certs.caPem }),
    entry: USER,
  };
  const tokens = new RefreshingTokenProvider();
  const grant = auth.issueGrant(EMAIL, options.staleAccessToken ? { accessTokenTtlSeconds: 0 } : {});
  // The cache believes the token is good for an hour; with staleAccessToken the provider does not.
  tokens.seed(EMAIL, grant.refreshToken, { token: grant.accessToken, expiresAt: Date.now() + 3_600_000 });
  const authenticator = new OneUserAuthenticator(() => account);
  const logLines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const deps: ProxyDeps = {
    config: testConfig(options.settings),
    authenticator,
    tokens,
    logger: captureLogger(logLines, raw),
    consentHint: () => CONSENT_HINT,
  };
  const listener: ListenerConfig = {
    host: '127.0.0.1',
    port: 0,
    tls: options.listenerTls,
    ...(options.listenerTls === 'none' ? {} : { cert: certs.certPem, key: certs.keyPem }),
    ...(options.minVersion ? { minVersion: options.minVersion } : {}),
  };
  const proxy = createSmtpServer(listener, deps, { serverName: 'proxy.test' });
  const { port } = await proxy.listen();
  return {
    auth,
    upstream,
    proxy,
    port,
    tokens,
    authenticator,
    account,
    logLines,
    logText: () => raw.join(''),
    async close() {
      await proxy.close();
      await upstream.close();
      await auth.close();
    },
  };
}

/** Session-end log lines (one per session). */
export function sessionLines(env: SmtpEnv): Record<string, unknown>[] {
  return env.logLines.filter((l) => l.msg === 'session end');
}

/** Waits until `predicate` holds, polling at most `timeoutMs` (for log lines written after the socket closed). */
export async function eventually(predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
