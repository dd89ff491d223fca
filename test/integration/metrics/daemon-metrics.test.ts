/**
 * The metrics end to end through the daemon's own wiring (startDaemon: createImapServer,
 * createSmtpServer, createHttpServer, TokenManager): an IMAP login that needs a forced refresh, a
 * failed IMAP login and an SMTP session, then GET /metrics over HTTP. Exact counters, no user name,
 * mailbox, password or token anywhere in the scrape; `http.metrics: false` gives a 404.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveAccount } from '../../../src/config/accounts.js';
import { DEFAULTS } from '../../../src/config/defaults.js';
import type { Config, ConnectionConfig, ListenerConfig } from '../../../src/config/types.js';
import { startDaemon, type Daemon } from '../../../src/daemon.js';
import { openStore } from '../../../src/store/index.js';
import { getTestCerts } from '../../helpers/certs.js';
import { fakeConnection, startFakeAuthServer, type FakeAuthServer } from '../../helpers/fake-auth-server.js';
import { startFakeImapServer, type FakeImapServer } from '../../helpers/fake-imap-server.js';
import { startFakeSmtpUpstream, type FakeSmtpUpstream } from '../../helpers/fake-smtp-upstream.js';
import {
  captureLogger,
  eventually,
  seedConsentGrant,
  sessionLines,
  testPasswordHash,
} from '../../helpers/proxy-env.js';
import { RawImap } from '../imap/raw-client.js';
import { RawSmtpClient, plainIr } from '../smtp/raw-client.js';

const USER = 'legacy-metrics-user';
const PASSWORD = 'metrics-Pa55word';
const EMAIL = 'alice.metrics@example.com';
const OTHER_USER = 'second-metrics-user';
const OTHER_EMAIL = 'bob.metrics@example.com';

interface Env {
  daemon: Daemon;
  auth: FakeAuthServer;
  imap: FakeImapServer;
  smtp: FakeSmtpUpstream;
  config: Config;
  logLines: Record<string, unknown>[];
  /** Access and refresh tokens seen in the store (seeded and after refreshes). */
  secrets(): Promise<string[]>;
  port(protocol: 'imap' | 'smtp' | 'http'): number;
  close(): Promise<void>;
}

let env: Env | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

const local: ListenerConfig = { host: '127.0.0.1', port: 0, tls: 'none' };

async function startEnv(options: { metrics?: boolean; protocols?: boolean } = {}): Promise<Env> {
  const certs = getTestCerts();
  const auth = await startFakeAuthServer();
  const imap = await startFakeImapServer({
    tls: 'implicit',
    checkAccessToken: (t) => auth.checkAccessToken(t),
  });
  const smtp = await startFakeSmtpUpstream({
    tls: 'implicit',
    checkAccessToken: (t) => auth.checkAccessToken(t),
  });
  const connection: ConnectionConfig = fakeConnection(auth, {
    imap: imap.server,
    smtp: smtp.server,
    ca: certs.caPem,
  });
  const dir = mkdtempSync(join(tmpdir(), 'xoauth-metrics-'));
  const withProtocols = options.protocols !== false;
  const config: Config = {
    file: join(dir, 'config.yaml'),
    listen: {
      imap: withProtocols ? [local] : [],
      smtp: withProtocols ? [local] : [],
      pop3: [],
      http: [local],
    },
    store: { path: join(dir, 'tokens.db'), keyFile: join(dir, 'store.key') },
    connections: new Map([[connection.name, connection]]),
    accounts: [
      {
        username: USER,
        email: EMAIL,
        connection: connection.name,
        password: await testPasswordHash(PASSWORD),
      },
      {
        username: OTHER_USER,
        email: OTHER_EMAIL,
        connection: connection.name,
        password: await testPasswordHash(PASSWORD),
      },
    ],
    settings: {
      ...DEFAULTS.settings,
      limits: { ...DEFAULTS.settings.limits, upstreamConnectTimeoutMs: 10_000 },
    },
    http: { consentHint: 'command', ...(options.metrics !== undefined ? { metrics: options.metrics } : {}) },
    notify: DEFAULTS.notify,
  };
  const account = resolveAccount(config, USER);
  if (!account) throw new Error('test account does not resolve');
  // The grant as consent stores it, with an access token the provider already expired: the first
  // login must be refused upstream and force exactly one refresh.
  const seedStore = await openStore(config.store, { env: {} });
  await seedConsentGrant({ store: seedStore, account, auth, connection }, true);
  const seen = new Set<string>();
  const remember = async (): Promise<void> => {
    const record = await seedStore.getToken(account.id);
    if (record?.accessToken) seen.add(record.accessToken);
    if (record?.refreshToken) seen.add(record.refreshToken);
  };
  await remember();

  const { logger, logLines } = captureLogger();
  const daemon = await startDaemon(config, logger);
  return {
    daemon,
    auth,
    imap,
    smtp,
    config,
    logLines,
    async secrets() {
      await remember();
      return [...seen];
    },
    port(protocol) {
      const l = daemon.listeners.find((x) => x.protocol === protocol);
      if (!l) throw new Error(`no ${protocol} listener`);
      return l.port;
    },
    async close() {
      await daemon.close();
      await seedStore.close();
      await imap.close();
      await smtp.close();
      await auth.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function get(
  port: number,
  path: string,
  method = 'GET',
): Promise<{ status: number; headers: Headers; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method });
  return { status: res.status, headers: res.headers, body: await res.text() };
}

/** The value of one sample line, e.g. `name{a="b"}`; undefined when the scrape lacks it. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function imapLogin(port: number, password: string): Promise<RawImap> {
  const c = await RawImap.connect(port);
  await c.waitFor('\r\n');
  c.write(`a1 LOGIN ${USER} ${password}\r\n`);
  await c.waitFor(/a1 (OK|NO|BAD).*\r\n/);
  return c;
}

describe('GET /metrics through the daemon', () => {
  it('counts sessions, bytes, logins, token requests and accounts, and shows no account', async () => {
    env = await startEnv();
    const e = env;

    // 1. IMAP login with a stale token (one forced refresh), a command, LOGOUT: relayed.
    const relayed = await imapLogin(e.port('imap'), PASSWORD);
    expect(relayed.text).toMatch(/a1 OK/);
    relayed.write('a2 NOOP\r\n');
    await relayed.waitFor('a2 OK');
    relayed.write('a3 LOGOUT\r\n');
    await relayed.waitClosed();

    // 2. IMAP login with a wrong password, then LOGOUT.
    const refused = await imapLogin(e.port('imap'), 'wrong-password');
    expect(refused.text).toMatch(/a1 NO/);
    refused.write('a2 LOGOUT\r\n');
    await refused.waitClosed();

    // 3. An SMTP session: the token is cached now, so no further token request.
    const smtp = await RawSmtpClient.connect(e.port('smtp'));
    expect(await smtp.reply()).toMatch(/^220 /);
    await smtp.command('EHLO scanner.local');
    expect(await smtp.command(`AUTH PLAIN ${plainIr(USER, PASSWORD)}`)).toMatch(/^235 /);
    expect(await smtp.command('QUIT')).toMatch(/^221 /);
    await smtp.waitClosed();

    await eventually(() => sessionLines(e).length === 3);
    const outcomes = sessionLines(e).map((l) => `${String(l.protocol)}:${String(l.outcome)}`);
    expect(outcomes.sort()).toEqual(['imap:client-quit', 'imap:relayed', 'smtp:relayed']);
    expect(e.auth.counts.refresh).toBe(1);

    const res = await get(e.port('http'), '/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(res.headers.get('cache-control')).toBe('no-store');
    const text = res.body;

    expect(sample(text, 'xoauth_proxy_sessions_total{protocol="imap",outcome="relayed"}')).toBe(1);
    expect(sample(text, 'xoauth_proxy_sessions_total{protocol="imap",outcome="client-quit"}')).toBe(1);
    expect(sample(text, 'xoauth_proxy_sessions_total{protocol="smtp",outcome="relayed"}')).toBe(1);
    expect(text.split('\n').filter((l) => l.startsWith('xoauth_proxy_sessions_total{'))).toHaveLength(3);

    // The bytes equal the sum of the session-end log lines, per protocol and direction.
    for (const protocol of ['imap', 'smtp']) {
      const lines = sessionLines(e).filter((l) => l.protocol === protocol);
      const from = lines.reduce((n, l) => n + Number(l.bytesFromClient), 0);
      const to = lines.reduce((n, l) => n + Number(l.bytesToClient), 0);
      expect(from).toBeGreaterThan(0);
      expect(to).toBeGreaterThan(0);
      const series = `xoauth_proxy_relayed_bytes_total{protocol="${protocol}",direction=`;
      expect(sample(text, `${series}"from_client"}`)).toBe(from);
      expect(sample(text, `${series}"to_client"}`)).toBe(to);
    }
    expect(sample(text, 'xoauth_proxy_relayed_bytes_total{protocol="pop3",direction="to_client"}')).toBe(0);

    for (const protocol of ['imap', 'smtp', 'pop3']) {
      expect(sample(text, `xoauth_proxy_active_sessions{protocol="${protocol}"}`)).toBe(0);
    }

    const login = 'xoauth_proxy_login_duration_seconds_count';
    expect(sample(text, `${login}{protocol="imap",result="ok"}`)).toBe(1);
    expect(sample(text, `${login}{protocol="imap",result="bad-credentials"}`)).toBe(1);
    expect(sample(text, `${login}{protocol="smtp",result="ok"}`)).toBe(1);
    expect(
      sample(text, `xoauth_proxy_login_duration_seconds_sum{protocol="imap",result="ok"}`),
    ).toBeGreaterThan(0);

    const tokens = 'xoauth_proxy_token_requests_total';
    expect(sample(text, `${tokens}{grant="refresh_token",result="ok"}`)).toBe(1);
    expect(sample(text, `${tokens}{grant="refresh_token",result="transient"}`)).toBe(0);
    expect(sample(text, `${tokens}{grant="refresh_token",result="permanent"}`)).toBe(0);

    expect(sample(text, 'xoauth_proxy_accounts{state="active"}')).toBe(1);
    expect(sample(text, 'xoauth_proxy_accounts{state="no-grant"}')).toBe(1);
    expect(sample(text, 'xoauth_proxy_accounts{state="needs-consent"}')).toBe(0);
    expect(sample(text, 'xoauth_proxy_accounts{state="failing"}')).toBe(0);

    // The standard process metrics are there too.
    expect(sample(text, 'process_cpu_seconds_total')).toBeGreaterThan(0);

    const secrets = await e.secrets();
    expect(secrets.length).toBeGreaterThanOrEqual(3);
    const lower = text.toLowerCase();
    for (const s of [USER, EMAIL, OTHER_USER, OTHER_EMAIL, PASSWORD, 'wrong-password', ...secrets]) {
      expect(lower).not.toContain(s.toLowerCase());
    }
    expect(text).not.toMatch(/metrics\.example|legacy-|@/);

    // A new session shows in the gauge while it is open.
    const open = await RawImap.connect(e.port('imap'));
    await open.waitFor('\r\n');
    const during = (await get(e.port('http'), '/metrics')).body;
    expect(sample(during, 'xoauth_proxy_active_sessions{protocol="imap"}')).toBe(1);
    open.write('z LOGOUT\r\n');
    await open.waitClosed();
  });

  it('HEAD gives the headers only; other methods are refused', async () => {
    env = await startEnv({ protocols: false });
    const head = await get(env.port('http'), '/metrics', 'HEAD');
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
    const post = await get(env.port('http'), '/metrics', 'POST');
    expect(post.status).toBe(405);
  });

  it('http.metrics: false: no /metrics (404)', async () => {
    env = await startEnv({ metrics: false, protocols: false });
    const res = await get(env.port('http'), '/metrics');
    expect(res.status).toBe(404);
    expect(res.body).not.toContain('xoauth_proxy_');
  });
});
