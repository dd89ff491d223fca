/**
 * Test environment for the POP3 proxy: the fake authorization server, a fake Gmail POP3 server, and
 * the proxy on 127.0.0.1 port 0, wired with the real pieces: LocalAuthenticator (scrypt hash from the
 * config), TokenManager over a SQLite token store, and a grant seeded as consent would store it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { DEFAULTS } from '../../../src/config/defaults.js';
import type {
  Config,
  ListenerConfig,
  ResolvedAccount,
  SaslMechanism,
  Settings,
  TlsMode,
  UpstreamServer,
} from '../../../src/config/types.js';
import { LocalAuthenticator } from '../../../src/credentials/authenticator.js';
import { hashPassword } from '../../../src/credentials/password.js';
import { storeGrant } from '../../../src/oauth/grant-record.js';
import { openTokenStore } from '../../../src/oauth/store/index.js';
import { TokenManager } from '../../../src/oauth/token-manager.js';
import type { AccessToken, TokenProvider, TokenStore } from '../../../src/oauth/types.js';
import { createPop3Server } from '../../../src/proxy/pop3/server.js';
import type { ProxyDeps, ProxyServer } from '../../../src/proxy/shared/types.js';
import { getTestCerts } from '../../helpers/certs.js';
import { fakeConnection, startFakeAuthServer, type FakeAuthServer } from '../../helpers/fake-auth-server.js';
import {
  startFakePop3Server,
  type FakePop3Options,
  type FakePop3Server,
} from '../../helpers/fake-pop3-server.js';

export const USER = 'legacy-client';
/** Spaces, quotes, a colon and UTF-8: PASS takes the rest of the line, curl splits -u at the first colon. */
export const PASSWORD = 'Pässwörd with spaces: "q" ✓';
export const EMAIL = 'alice@example.com';
export const CONSENT_HINT = 'Ask the mailbox owner to run: xoauth-proxy consent alice@example.com';

let cachedHash: Promise<string> | undefined;
/** The scrypt hash is slow by design; one per process is plenty. Cheap parameters: it is a test. */
function passwordHash(): Promise<string> {
  cachedHash ??= hashPassword(PASSWORD, { ln: 10, r: 8, p: 1 });
  return cachedHash;
}

/** Counts what the proxy asks of the real TokenManager. */
export class CountingTokens implements TokenProvider {
  readonly calls: { forceRefresh: boolean }[] = [];
  constructor(private readonly inner: TokenProvider) {}
  getAccessToken(account: ResolvedAccount, options?: { forceRefresh?: boolean }): Promise<AccessToken> {
    this.calls.push({ forceRefresh: options?.forceRefresh === true });
    return this.inner.getAccessToken(account, options);
  }
  invalidate(accountId: string): void {
    this.inner.invalidate(accountId);
  }
}

export interface EnvOptions {
  listenerTls: TlsMode;
  upstreamTls: 'implicit' | 'starttls';
  messages?: Buffer[];
  limits?: Partial<Settings['limits']>;
  /** The stored access token is one the fake already considers expired (the cache does not know). */
  staleAccessToken?: boolean;
  sasl?: SaslMechanism;
  /** The listener's lowest TLS version (old devices). */
  minVersion?: ListenerConfig['minVersion'];
  /** Point the connection at another POP3 server than the fake (e.g. one that never answers). */
  pop3Server?: UpstreamServer;
  /** Leave the test CA out of the connection's `ca`: the upstream's certificate must then be refused. */
  untrustedUpstream?: boolean;
  fake?: Partial<Omit<FakePop3Options, 'tls' | 'checkAccessToken' | 'messages'>>;
}

export interface Pop3Env {
  auth: FakeAuthServer;
  upstream: FakePop3Server;
  proxy: ProxyServer;
  port: number;
  tokens: CountingTokens;
  store: TokenStore;
  account: ResolvedAccount;
  logLines: Record<string, unknown>[];
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

export async function startPop3Env(options: EnvOptions): Promise<Pop3Env> {
  const certs = getTestCerts();
  const auth = await startFakeAuthServer();
  const upstream = await startFakePop3Server({
    tls: options.upstreamTls,
    checkAccessToken: (t) => auth.checkAccessToken(t),
    messages: options.messages ?? [],
    ...options.fake,
  });
  const connection = fakeConnection(auth, {
    pop3: options.pop3Server ?? upstream.server,
    ...(options.untrustedUpstream ? {} : { ca: certs.caPem }),
    sasl: options.sasl ?? 'xoauth2',
  });
  const dir = mkdtempSync(join(tmpdir(), 'pop3-env-'));
  const config: Config = {
    file: join(dir, 'config.yaml'),
    listen: { imap: [], smtp: [], pop3: [], http: [] },
    store: { path: join(dir, 'tokens.db'), keyFile: join(dir, 'key') },
    connections: new Map([[connection.name, connection]]),
    accounts: [{ username: USER, email: EMAIL, connection: connection.name, password: await passwordHash() }],
    settings: {
      ...DEFAULTS.settings,
      limits: { ...DEFAULTS.settings.limits, upstreamConnectTimeoutMs: 10_000, ...options.limits },
    },
    http: { consentHint: 'command' },
    notify: DEFAULTS.notify,
  };
  const logLines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const logger = captureLogger(logLines, raw);
  const store = openTokenStore(config.store, { env: {} });
  const account: ResolvedAccount = { id: EMAIL, username: USER, email: EMAIL, connection, entry: USER };
  const grant = auth.issueGrant(EMAIL, options.staleAccessToken ? { accessTokenTtlSeconds: 0 } : {});
  // Stored as consent stores it; the expiry we record is an hour ahead either way, so with
  // staleAccessToken only the upstream's refusal can reveal that the token is dead.
  storeGrant(
    store,
    account,
    {
      accessToken: grant.accessToken,
      refreshToken: grant.refreshToken,
      expiresAt: Date.now() + 3_600_000,
      scopes: connection.scopes,
    },
    { email: EMAIL },
  );
  const tokens = new CountingTokens(new TokenManager({ config, store, logger }));
  const authenticator = new LocalAuthenticator({ config, logger, store, sleep: () => Promise.resolve() });
  const deps: ProxyDeps = { config, authenticator, tokens, logger, consentHint: () => CONSENT_HINT };
  const listener: ListenerConfig = {
    host: '127.0.0.1',
    port: 0,
    tls: options.listenerTls,
    ...(options.listenerTls === 'none' ? {} : { cert: certs.certPem, key: certs.keyPem }),
    ...(options.minVersion ? { minVersion: options.minVersion } : {}),
  };
  const proxy = createPop3Server(listener, deps);
  const { port } = await proxy.listen();
  return {
    auth,
    upstream,
    proxy,
    port,
    tokens,
    store,
    account,
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
export function sessionLines(env: Pop3Env): Record<string, unknown>[] {
  return env.logLines.filter((l) => l.msg === 'session end');
}

/** Waits until `predicate` holds, polling at most `timeoutMs`. */
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
