/**
 * Runs the real `xoauth-proxy` binary (`node --import tsx src/cli/main.ts start`) as a child process with
 * a generated config, for end-to-end tests and the benchmark.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify as stringifyYaml } from 'yaml';
import { hashPassword } from '../../src/credentials/password.js';
import { openStore } from '../../src/store/index.js';
import type { Store } from '../../src/oauth/types.js';
import type { StoreSettings } from '../../src/config/types.js';
import { getTestCerts } from './certs.js';

import { pickFreePorts } from './ports.js';

export { pickFreePort, pickFreePorts } from './ports.js';

// ---------------------------------------------------------------------------------------------------
// The proxy binary as a child process.

export type LocalTls = 'none' | 'starttls' | 'implicit';
const PROTOCOLS = ['imap', 'smtp', 'pop3'] as const;

export interface ProxyAccountSpec {
  /** What the legacy client types. */
  username: string;
  /** Its local password (hashed into the config). */
  password: string;
  /** Upstream mailbox; default the username. */
  email?: string;
  /** Connection name; default `e2e` (the one built from `upstream`). */
  connection?: string;
}

export interface ProxyGrant {
  /** Account id: the upstream mailbox, lower-cased. */
  email: string;
  /** Default `e2e`. */
  connection?: string;
  refreshToken: string;
  accessToken?: string;
  /** Epoch ms. */
  expiresAt?: number;
}

export interface ProxyUpstream {
  host: string;
  ca: string;
  /** Upstream SASL mechanism (default xoauth2). */
  sasl?: 'xoauth2' | 'oauthbearer';
  imap?: { port: number; tls: 'implicit' | 'starttls' };
  smtp?: { port: number; tls: 'implicit' | 'starttls' };
  pop3?: { port: number; tls: 'implicit' | 'starttls' };
  /** Raw connection keys merged over the defaults (null removes one, e.g. `clientSecret: null`). */
  extra?: Record<string, unknown>;
}

export interface StartProxyOptions {
  /** The fake authorization server's endpoints (FakeAuthServer fits). */
  auth: { authorizeUrl: string; tokenUrl: string; userinfoUrl?: string; deviceCodeUrl?: string };
  /** The upstream mail server (Dovecot) of connection `e2e`: host, ports and the CA of its certificate. */
  upstream: ProxyUpstream;
  /** More connections (same authorization server, other upstream settings), by name. */
  moreConnections?: Record<string, ProxyUpstream>;
  accounts: ProxyAccountSpec[];
  /** Written into the proxy's token store before it starts (instead of a consent flow). */
  grants?: ProxyGrant[];
  /** Local listeners to open; default all three kinds for each protocol that has an upstream. */
  listen?: { imap?: LocalTls[]; smtp?: LocalTls[]; pop3?: LocalTls[] };
  /** Raw `settings:` YAML (durations as strings), merged over fast test defaults. */
  settings?: Record<string, unknown>;
  /** Extra environment for the child. */
  env?: Record<string, string>;
  /**
   * A shared PostgreSQL store instead of the embedded file (raw `store:` keys such as `refreshLease`
   * or `timeout` go in `extra`). Several instances on one database need one key: pass `key`.
   */
  store?: { kind: 'postgres'; url: string; keyFile?: string; extra?: Record<string, unknown> };
  /** The store key (base64 of 32 bytes); default a fresh random one. */
  key?: string;
  /** Write `grants` into the store (default true); only one of several instances on one database seeds. */
  seed?: boolean;
}

export interface ProxyProcess {
  readonly dir: string;
  readonly configFile: string;
  /** Local listener ports by protocol and TLS kind. */
  readonly ports: {
    imap: Partial<Record<LocalTls, number>>;
    smtp: Partial<Record<LocalTls, number>>;
    pop3: Partial<Record<LocalTls, number>>;
  };
  /** CA for the proxy's local TLS listeners. */
  readonly localCaPem: string;
  /** Everything the proxy printed so far (stdout and stderr). */
  output(): string;
  /** Runs another CLI command against the same config and store. */
  cli(args: string[], timeoutMs?: number): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** `xoauth-proxy status --json`, parsed. */
  status(): Promise<unknown>;
  /** Opens the proxy's token store (same key), for assertions; close it after use. */
  openStore(): Promise<Store>;
  /** Sends a signal to the proxy process (SIGTERM, SIGHUP, ...). */
  kill(signal: NodeJS.Signals): void;
  /** Resolves with how the process ended, or rejects after `timeoutMs` if it is still running. */
  waitExit(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(): Promise<void>;
}

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
/**
 * The program under test: the TypeScript entry run through tsx, or another entry named by
 * XOAUTH_PROXY_E2E_CLI (e.g. the built `dist/cli/main.js`, to test what ships).
 */
const CLI_ENTRY = process.env.XOAUTH_PROXY_E2E_CLI ?? join(REPO_ROOT, 'src', 'cli', 'main.ts');

function cliArgs(args: string[]): string[] {
  return CLI_ENTRY.endsWith('.js') ? [CLI_ENTRY, ...args] : ['--import', 'tsx', CLI_ENTRY, ...args];
}

/** Runs one `xoauth-proxy` command (no proxy needed, e.g. `store migrate`); never rejects. */
export function runCli(
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 30_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      cliArgs([...args]),
      { cwd: REPO_ROOT, env, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: number }).code ?? null) : 0;
        resolve({ code: typeof code === 'number' ? code : null, stdout, stderr });
      },
    );
  });
}

/** Resolves once a TCP connection to host:port succeeds. */
async function waitForPort(
  host: string,
  port: number,
  deadline: number,
  exited: () => string | undefined,
): Promise<void> {
  for (;;) {
    const why = exited();
    if (why) throw new Error(why);
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} in time`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = netConnect({ host, port });
      socket.setTimeout(1000, () => {
        socket.destroy();
        resolve(false);
      });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Writes a config (a `custom` connection to the fake authorization server and the upstream, accounts
 * with scrypt hashes, the requested local listeners on free ports), seeds the token store, starts
 * `xoauth-proxy start --config` and waits until every listener accepts connections.
 */
export async function startProxyProcess(options: StartProxyOptions): Promise<ProxyProcess> {
  let lastError: unknown;
  // A picked port can be taken by someone else before the child binds it; then try fresh ports.
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startProxyOnce(options);
    } catch (err) {
      lastError = err;
      if (!/EADDRINUSE|address already in use/i.test(String((err as Error).message))) throw err;
    }
  }
  throw lastError;
}

async function startProxyOnce(options: StartProxyOptions): Promise<ProxyProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'e2e-proxy-'));
  const key = options.key ?? randomBytes(32).toString('base64');
  const env: NodeJS.ProcessEnv = { ...process.env, XOAUTH_PROXY_KEY: key, ...options.env };
  // The child must not think it is a test worker, and must not pretty-print.
  delete env.VITEST;
  delete env.VITEST_WORKER_ID;
  delete env.NODE_OPTIONS;

  const certs = getTestCerts();
  writeFileSync(join(dir, 'local-cert.pem'), certs.certPem);
  writeFileSync(join(dir, 'local-key.pem'), certs.keyPem, { mode: 0o600 });

  const allKinds: LocalTls[] = ['none', 'starttls', 'implicit'];
  const wanted = {
    imap: options.listen?.imap ?? (options.upstream.imap ? allKinds : []),
    smtp: options.listen?.smtp ?? (options.upstream.smtp ? allKinds : []),
    pop3: options.listen?.pop3 ?? (options.upstream.pop3 ? allKinds : []),
  };
  const ports: ProxyProcess['ports'] = { imap: {}, smtp: {}, pop3: {} };
  const free = await pickFreePorts(wanted.imap.length + wanted.smtp.length + wanted.pop3.length);
  // `pop3:` only when asked for, so the configs of the IMAP/SMTP suites stay exactly as they were.
  const listen: Record<string, unknown[]> = {
    imap: [],
    smtp: [],
    ...(wanted.pop3.length ? { pop3: [] } : {}),
  };
  for (const protocol of PROTOCOLS) {
    for (const tls of wanted[protocol]) {
      const port = free.shift()!;
      ports[protocol][tls] = port;
      listen[protocol]!.push({
        host: '127.0.0.1',
        port,
        tls,
        ...(tls === 'none' ? {} : { cert: './local-cert.pem', key: './local-key.pem' }),
      });
    }
  }

  const accounts = await Promise.all(
    options.accounts.map(async (a) => ({
      username: a.username,
      ...(a.email ? { email: a.email } : {}),
      connection: a.connection ?? 'e2e',
      // Cheapest scrypt cost the proxy accepts: 50 logins at once must not wait on hashing.
      password: await hashPassword(a.password, { ln: 10, r: 8, p: 1 }),
    })),
  );
  const config = {
    listen,
    store:
      options.store === undefined
        ? { path: './data/tokens.db', keyFile: './data/key' }
        : {
            kind: 'postgres',
            url: options.store.url,
            keyFile: options.store.keyFile ?? './data/key',
            ...options.store.extra,
          },
    connections: Object.entries({ e2e: options.upstream, ...options.moreConnections })
      .map(([name, up]) => ({
        name,
        provider: 'custom',
        clientId: 'e2e-client',
        clientSecret: 'e2e-secret',
        authorizeUrl: options.auth.authorizeUrl,
        tokenUrl: options.auth.tokenUrl,
        ...(options.auth.userinfoUrl ? { userinfoUrl: options.auth.userinfoUrl } : {}),
        ...(options.auth.deviceCodeUrl ? { deviceCodeUrl: options.auth.deviceCodeUrl } : {}),
        scopes: ['https://mail.google.com/'],
        ...(up.imap ? { imap: { host: up.host, ...up.imap } } : {}),
        ...(up.smtp ? { smtp: { host: up.host, ...up.smtp } } : {}),
        ...(up.pop3 ? { pop3: { host: up.host, ...up.pop3 } } : {}),
        ca: up.ca,
        ...(up.sasl ? { sasl: up.sasl } : {}),
        ...up.extra,
      }))
      .map((c) => Object.fromEntries(Object.entries(c).filter(([, v]) => v !== null))),
    accounts,
    settings: {
      refreshMargin: '1s',
      tokenRequestTimeout: '3s',
      credentialCache: '5m',
      loginLimiter: { freeFailures: 1000, lockAfter: 10000, addressLockAfter: 10000 },
      ...options.settings,
    },
  };
  const configFile = join(dir, 'config.yaml');
  writeFileSync(configFile, stringifyYaml(config, { lineWidth: 0 }), { mode: 0o600 });

  const keyFile = join(dir, 'data', 'key');
  const storeSettings: StoreSettings =
    options.store === undefined
      ? { path: join(dir, 'data', 'tokens.db'), keyFile }
      : {
          kind: 'postgres',
          url: options.store.url,
          keyFile: options.store.keyFile ?? keyFile,
          refreshLeaseMs: 20_000,
          poolMax: 4,
          timeoutMs: 10_000,
        };
  const openTheStore = (): Promise<Store> => openStore(storeSettings, { env: { XOAUTH_PROXY_KEY: key } });
  if (options.grants?.length && options.seed !== false) {
    const store = await openTheStore();
    try {
      for (const g of options.grants) {
        await store.putToken({
          accountId: g.email.toLowerCase(),
          connection: g.connection ?? 'e2e',
          refreshToken: g.refreshToken,
          ...(g.accessToken ? { accessToken: g.accessToken, accessTokenExpiresAt: g.expiresAt } : {}),
          scopes: ['https://mail.google.com/'],
          identity: g.email.toLowerCase(),
          state: 'active',
          updatedAt: Date.now(),
        });
      }
    } finally {
      await store.close();
    }
  }

  let output = '';
  let exitInfo: string | undefined;
  let exitStatus: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const child: ChildProcess = spawn(process.execPath, cliArgs(['start', '--config', configFile]), {
    cwd: REPO_ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  // A test run that ends without stop() (a crash, Ctrl+C) must not leave the proxy listening behind it.
  const killOnExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      process.off('exit', killOnExit);
      exitInfo = `xoauth-proxy exited (code ${code}, signal ${signal}):\n${output}`;
      exitStatus = { code, signal };
      resolve();
    });
  });

  let stopped = false;
  const proc: ProxyProcess = {
    dir,
    configFile,
    ports,
    localCaPem: certs.caPem,
    output: () => output,
    cli: (args, timeoutMs = 30_000) => runCli(args, env, timeoutMs),
    async status() {
      const r = await proc.cli(['status', '--config', configFile, '--json']);
      try {
        return JSON.parse(r.stdout) as unknown;
      } catch {
        throw new Error(`status --json did not print JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
      }
    },
    openStore: openTheStore,
    kill(signal) {
      if (exitInfo === undefined) child.kill(signal);
    },
    async waitExit(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(
          () => reject(new Error(`xoauth-proxy still running after ${timeoutMs} ms`)),
          timeoutMs,
        );
      });
      try {
        await Promise.race([exited, timeout]);
      } finally {
        clearTimeout(timer);
      }
      return exitStatus!;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      if (exitInfo === undefined) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };

  try {
    const deadline = Date.now() + 45_000;
    for (const protocol of PROTOCOLS) {
      for (const port of Object.values(ports[protocol])) {
        await waitForPort('127.0.0.1', port, deadline, () => exitInfo);
      }
    }
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return proc;
}
