/**
 * Test environment for the SMTP proxy: fake authorization server, fake Gmail (smtp-server speaking
 * XOAUTH2), and the proxy itself on 127.0.0.1 port 0, wired like the daemon: the real TokenManager over
 * a SQLite store in a temp dir, and the real LocalAuthenticator with its login limiter.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { DEFAULTS } from '../../../src/config/defaults.js';
import { resolveAccount } from '../../../src/config/accounts.js';
import type {
  Config,
  ConnectionConfig,
  ListenerConfig,
  ResolvedAccount,
  Settings,
  TlsMode,
} from '../../../src/config/types.js';
import { LocalAuthenticator } from '../../../src/credentials/authenticator.js';
import { hashPassword } from '../../../src/credentials/password.js';
import type { Authenticator, LoginAttempt } from '../../../src/credentials/types.js';
import { openTokenStore } from '../../../src/oauth/store/index.js';
import { TokenManager } from '../../../src/oauth/token-manager.js';
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

/** The real TokenManager, with every call recorded. */
class RecordingTokens implements TokenProvider {
  readonly calls: { forceRefresh: boolean }[] = [];
  constructor(readonly inner: TokenManager) {}
  getAccessToken(account: ResolvedAccount, options?: { forceRefresh?: boolean }): Promise<AccessToken> {
    this.calls.push({ forceRefresh: options?.forceRefresh === true });
    return this.inner.getAccessToken(account, options);
  }
  invalidate(accountId: string): void {
    this.inner.invalidate(accountId);
  }
}

/** The real LocalAuthenticator, with every attempt recorded (without the password). */
class RecordingAuthenticator implements Authenticator {
  readonly attempts: Omit<LoginAttempt, 'password'>[] = [];
  constructor(private readonly inner: LocalAuthenticator) {}
  verify(attempt: LoginAttempt): Promise<ResolvedAccount> {
    this.attempts.push({ username: attempt.username, remoteAddress: attempt.remoteAddress });
    return this.inner.verify(attempt);
  }
}

/** scrypt at a low cost: the hash only has to be real, not slow. */
let passwordHash: Promise<string> | undefined;
function testPasswordHash(): Promise<string> {
  const hash = passwordHash ?? hashPassword(PASSWORD, { ln: 10, r: 8, p: 1 });
  passwordHash = hash;
  return hash;
}

export interface EnvOptions {
  listenerTls: TlsMode;
  upstreamTls: 'implicit' | 'starttls';
  minVersion?: ListenerConfig['minVersion'];
  settings?: Partial<Settings['limits']>;
  /**
   * The stored access token: 'valid' (default); 'stale': the store believes it has an hour left but
   * the provider already expired it (the upstream refuses it); 'expired': the store knows it expired.
   */
  accessToken?: 'valid' | 'stale' | 'expired';
  /** Whose mailbox the stored grant really is (default EMAIL); another one makes the upstream refuse every token. */
  grantFor?: string;
  loginLimiter?: Partial<Settings['loginLimiter']>;
}

export interface SmtpEnv {
  auth: FakeAuthServer;
  upstream: FakeSmtpUpstream;
  proxy: ProxyServer;
  port: number;
  tokens: RecordingTokens;
  authenticator: RecordingAuthenticator;
  /** Moves the token manager's clock forward (past a backoff). */
  advanceClock(ms: number): void;
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

export function testConfig(
  options: {
    limits?: Partial<Settings['limits']> | undefined;
    loginLimiter?: Partial<Settings['loginLimiter']> | undefined;
    connection?: ConnectionConfig;
    passwordHash?: string;
    store?: Config['store'];
  } = {},
): Config {
  const connection = options.connection;
  return {
    file: '/test/config.yaml',
    listen: { imap: [], smtp: [], pop3: [], http: [] },
    store: options.store ?? DEFAULTS.store,
    connections: new Map(connection ? [[connection.name, connection]] : []),
    accounts: connection
      ? [{ username: USER, email: EMAIL, connection: connection.name, password: options.passwordHash }]
      : [],
    settings: {
      ...DEFAULTS.settings,
      limits: { ...DEFAULTS.settings.limits, upstreamConnectTimeoutMs: 10_000, ...options.limits },
      // Small delays keep the suite fast; the limiter itself is the real one.
      loginLimiter: {
        ...DEFAULTS.settings.loginLimiter,
        baseDelayMs: 50,
        maxDelayMs: 200,
        ...options.loginLimiter,
      },
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
  const connection = fakeConnection(auth, { smtp: upstream.server, ca: certs.caPem });
  const dir = mkdtempSync(join(tmpdir(), 'xoauth-smtp-'));
  const storeSettings = { path: join(dir, 'tokens.db'), keyFile: join(dir, 'store.key') };
  const config = testConfig({
    limits: options.settings,
    ...(options.loginLimiter ? { loginLimiter: options.loginLimiter } : {}),
    connection,
    passwordHash: await testPasswordHash(),
    store: storeSettings,
  });
  const account = resolveAccount(config, USER);
  if (!account) throw new Error('test account does not resolve');
  const logLines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const logger = captureLogger(logLines, raw);

  const store = openTokenStore(storeSettings, { env: {} });
  const kind = options.accessToken ?? 'valid';
  const grant = auth.issueGrant(
    options.grantFor ?? EMAIL,
    kind === 'valid' ? {} : { accessTokenTtlSeconds: 0 },
  );
  store.putToken({
    accountId: account.id,
    connection: connection.name,
    refreshToken: grant.refreshToken,
    accessToken: grant.accessToken,
    accessTokenExpiresAt: kind === 'expired' ? Date.now() - 1_000 : Date.now() + 3_600_000,
    scopes: ['https://mail.google.com/'],
    identity: EMAIL,
    state: 'active',
    lastRefreshAt: Date.now(),
    updatedAt: Date.now(),
  });
  let clockOffset = 0;
  const tokens = new RecordingTokens(
    new TokenManager({ config, store, logger, clock: () => Date.now() + clockOffset }),
  );
  const authenticator = new RecordingAuthenticator(new LocalAuthenticator({ config, store, logger }));
  const deps: ProxyDeps = {
    config,
    authenticator,
    tokens,
    logger,
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
    advanceClock: (ms) => {
      clockOffset += ms;
    },
    logLines,
    logText: () => raw.join(''),
    async close() {
      await proxy.close();
      await upstream.close();
      await auth.close();
      store.close();
      rmSync(dir, { recursive: true, force: true });
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
