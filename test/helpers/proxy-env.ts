/**
 * One builder for the integration environments of the three protocol fronts: the fake authorization
 * server, a protocol's fake upstream, and the proxy on 127.0.0.1 port 0, wired like the daemon with
 * the real pieces: LocalAuthenticator (scrypt hash from the config, real login limiter), TokenManager
 * over a SQLite token store in a temp dir, and a stored grant. Every call the proxy makes to the
 * authenticator and the token manager is recorded, and every log line is captured.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { resolveAccount } from '../../src/config/accounts.js';
import { DEFAULTS } from '../../src/config/defaults.js';
import type {
  Config,
  ConnectionConfig,
  ListenerConfig,
  ResolvedAccount,
  Settings,
  TlsMode,
} from '../../src/config/types.js';
import { LocalAuthenticator } from '../../src/credentials/authenticator.js';
import { hashPassword } from '../../src/credentials/password.js';
import type { Authenticator, LoginAttempt } from '../../src/credentials/types.js';
import { storeGrant } from '../../src/oauth/grant-record.js';
import { openStore } from '../../src/store/index.js';
import { TokenManager } from '../../src/oauth/token-manager.js';
import type { AccessToken, TokenProvider, Store } from '../../src/oauth/types.js';
import type { ProxyDeps, ProxyServer } from '../../src/proxy/shared/types.js';
import { getTestCerts, type TestCerts } from './certs.js';
import { startFakeAuthServer, type FakeAuthServer } from './fake-auth-server.js';
import { UpstreamPool } from '../../src/proxy/shared/upstream-pool.js';
import type { UpstreamPoolSettings } from '../../src/config/types.js';

/** The real TokenManager, with every call recorded. */
export class RecordingTokens implements TokenProvider {
  readonly calls: { forceRefresh: boolean }[] = [];
  constructor(readonly inner: TokenProvider) {}
  getAccessToken(account: ResolvedAccount, options?: { forceRefresh?: boolean }): Promise<AccessToken> {
    this.calls.push({ forceRefresh: options?.forceRefresh === true });
    return this.inner.getAccessToken(account, options);
  }
  invalidate(accountId: string): void {
    this.inner.invalidate(accountId);
  }
}

/** The real LocalAuthenticator, with every attempt recorded (without the password). */
export class RecordingAuthenticator implements Authenticator {
  readonly attempts: Omit<LoginAttempt, 'password'>[] = [];
  constructor(private readonly inner: Authenticator) {}
  verify(attempt: LoginAttempt): Promise<ResolvedAccount> {
    this.attempts.push({ username: attempt.username, remoteAddress: attempt.remoteAddress });
    return this.inner.verify(attempt);
  }
}

const hashes = new Map<string, Promise<string>>();
/** scrypt at a low cost, once per password and process: the hash only has to be real, not slow. */
export function testPasswordHash(password: string): Promise<string> {
  let hash = hashes.get(password);
  if (!hash) {
    hash = hashPassword(password, { ln: 10, r: 8, p: 1 });
    hashes.set(password, hash);
  }
  return hash;
}

/** A pino logger writing JSON into memory: parsed lines and the raw text (to look for secrets). */
export function captureLogger(): { logger: Logger; logLines: Record<string, unknown>[]; logText(): string } {
  const logLines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      const text = chunk.toString('utf8');
      raw.push(text);
      for (const l of text.split('\n').filter(Boolean))
        logLines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level: 'debug', base: undefined }, sink), logLines, logText: () => raw.join('') };
}

/** What a seed function gets to store the account's grant before the proxy starts. */
export interface SeedContext {
  store: Store;
  account: ResolvedAccount;
  auth: FakeAuthServer;
  connection: ConnectionConfig;
}

/**
 * Stores a fresh grant as consent stores it. The expiry we record is an hour ahead either way, so with
 * `stale` only the upstream's refusal can reveal that the token is dead.
 */
export async function seedConsentGrant(
  { store, account, auth, connection }: SeedContext,
  stale = false,
): Promise<void> {
  const grant = auth.issueGrant(account.email, stale ? { accessTokenTtlSeconds: 0 } : {});
  await storeGrant(
    store,
    account,
    {
      accessToken: grant.accessToken,
      refreshToken: grant.refreshToken,
      expiresAt: Date.now() + 3_600_000,
      scopes: connection.scopes,
    },
    { email: account.email },
  );
}

export interface ProxyEnvSpec<Up extends { close(): Promise<void> }> {
  /** Prefix of the temp dir that holds the token store. */
  name: string;
  /** The local account: user name and password the client types, and the mailbox it maps to. */
  username: string;
  password: string;
  email: string;
  consentHint: string;
  startUpstream(auth: FakeAuthServer): Promise<Up>;
  /** The account's connection (usually `fakeConnection(auth, {...})` pointing at the upstream). */
  connection(auth: FakeAuthServer, upstream: Up, certs: TestCerts): ConnectionConfig;
  limits?: Partial<Settings['limits']> | undefined;
  loginLimiter?: Partial<Settings['loginLimiter']> | undefined;
  /** Skip the login limiter's delays altogether (its counting stays real). */
  noLimiterDelay?: boolean;
  /** Stores the grant; default: `seedConsentGrant`. */
  seed?(context: SeedContext): void | Promise<void>;
  listenerTls: TlsMode;
  minVersion?: ListenerConfig['minVersion'] | undefined;
  /** The listener expects a PROXY protocol header from these balancers. */
  proxyProtocol?: ListenerConfig['proxyProtocol'] | undefined;
  createServer(listener: ListenerConfig, deps: ProxyDeps): ProxyServer;
  /** Give the sessions a pool of warm upstream connections with these settings (default: none). */
  upstreamPool?: UpstreamPoolSettings | undefined;
}

export interface ProxyEnv<Up> {
  auth: FakeAuthServer;
  upstream: Up;
  proxy: ProxyServer;
  port: number;
  config: Config;
  store: Store;
  account: ResolvedAccount;
  tokens: RecordingTokens;
  authenticator: RecordingAuthenticator;
  /** The sessions' warm upstream connections, with `upstreamPool` in the spec. */
  pool: UpstreamPool | undefined;
  /** Moves the token manager's clock forward (past a backoff). */
  advanceClock(ms: number): void;
  /** Every JSON log line the proxy wrote. */
  logLines: Record<string, unknown>[];
  /** Raw log text, to check that no secret ever reaches it. */
  logText(): string;
  close(): Promise<void>;
}

export async function startProxyEnv<Up extends { close(): Promise<void> }>(
  spec: ProxyEnvSpec<Up>,
): Promise<ProxyEnv<Up>> {
  const certs = getTestCerts();
  const auth = await startFakeAuthServer();
  const upstream = await spec.startUpstream(auth);
  const connection = spec.connection(auth, upstream, certs);
  const dir = mkdtempSync(join(tmpdir(), `${spec.name}-`));
  const config: Config = {
    file: join(dir, 'config.yaml'),
    listen: { imap: [], smtp: [], pop3: [], http: [] },
    store: { path: join(dir, 'tokens.db'), keyFile: join(dir, 'store.key') },
    connections: new Map([[connection.name, connection]]),
    accounts: [
      {
        username: spec.username,
        email: spec.email,
        connection: connection.name,
        password: await testPasswordHash(spec.password),
      },
    ],
    settings: {
      ...DEFAULTS.settings,
      limits: { ...DEFAULTS.settings.limits, upstreamConnectTimeoutMs: 10_000, ...spec.limits },
      loginLimiter: { ...DEFAULTS.settings.loginLimiter, ...spec.loginLimiter },
    },
    http: { consentHint: 'command' },
    notify: DEFAULTS.notify,
  };
  const account = resolveAccount(config, spec.username);
  if (!account) throw new Error('test account does not resolve');
  const { logger, logLines, logText } = captureLogger();
  const store = await openStore(config.store, { env: {} });
  await (spec.seed ?? seedConsentGrant)({ store, account, auth, connection });
  let clockOffset = 0;
  const tokens = new RecordingTokens(
    new TokenManager({ config, store, logger, clock: () => Date.now() + clockOffset }),
  );
  const authenticator = new RecordingAuthenticator(
    new LocalAuthenticator({
      config,
      store,
      logger,
      ...(spec.noLimiterDelay ? { sleep: () => Promise.resolve() } : {}),
    }),
  );
  const pool = spec.upstreamPool ? new UpstreamPool({ settings: spec.upstreamPool, logger }) : undefined;
  const deps: ProxyDeps = {
    config,
    authenticator,
    tokens,
    logger,
    consentHint: () => spec.consentHint,
    ...(pool ? { upstreamPool: pool } : {}),
  };
  const listener: ListenerConfig = {
    host: '127.0.0.1',
    port: 0,
    tls: spec.listenerTls,
    ...(spec.listenerTls === 'none' ? {} : { cert: certs.certPem, key: certs.keyPem }),
    ...(spec.minVersion ? { minVersion: spec.minVersion } : {}),
    ...(spec.proxyProtocol ? { proxyProtocol: spec.proxyProtocol } : {}),
  };
  const proxy = spec.createServer(listener, deps);
  const { port } = await proxy.listen();
  return {
    auth,
    upstream,
    proxy,
    port,
    config,
    store,
    account,
    tokens,
    authenticator,
    pool,
    advanceClock: (ms) => {
      clockOffset += ms;
    },
    logLines,
    logText,
    async close() {
      await proxy.close();
      pool?.close();
      await upstream.close();
      await auth.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Session-end log lines (one per session). */
export function sessionLines(env: { logLines: Record<string, unknown>[] }): Record<string, unknown>[] {
  return env.logLines.filter((l) => l.msg === 'session end');
}

/** Waits until `predicate` holds, polling at most `timeoutMs` (log lines are written after the socket closed). */
export async function eventually(predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A test message with CRLF line ends, a dot-led line (dot-stuffing) and UTF-8 that must survive. */
export function makeMessage(subject: string, body: Buffer | string): Buffer {
  const head = `From: Bob <bob@example.com>\r\nTo: Alice <alice@example.com>\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@example.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'utf8'), Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8')]);
}
