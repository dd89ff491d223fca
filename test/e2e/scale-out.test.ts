/**
 * Three proxy binaries on one PostgreSQL database, as a scaled-out deployment runs them: one refresh
 * per account across all instances, a holder that dies or freezes mid-refresh neither blocks the
 * account nor loses its grant, a database that stops answering gives temporary errors (never hangs),
 * app passwords written by one instance count on all of them at once, and `store migrate` copies an
 * embedded store verbatim. Fakes for the authorization server and the upstream, so no Dovecot is needed.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify as stringifyYaml } from 'yaml';
import type { PostgresStoreSettings } from '../../src/config/types.js';
import { openStore, type Store, type TokenRecord } from '../../src/store/index.js';
import { getTestCerts } from '../helpers/certs.js';
import {
  startFakeAuthServer,
  type FakeAuthOptions,
  type FakeAuthServer,
} from '../helpers/fake-auth-server.js';
import { startFakeImapServer, type FakeImapServer } from '../helpers/fake-imap-server.js';
import { requirePostgres, usePostgres, type TestDatabase } from '../helpers/postgres.js';
import { runCli, startProxyProcess, type ProxyGrant, type ProxyProcess } from '../helpers/proxy-process.js';
import { imapLogin, printLogsOnFailure } from './support.js';

const PASSWORD = 'scale-out-Pa55word';
const INSTANCES = 3;

const pg = usePostgres();

interface Cluster {
  auth: FakeAuthServer;
  imap: FakeImapServer;
  db: TestDatabase;
  key: string;
  proxies: ProxyProcess[];
  /** The plain IMAP port of instance i. */
  port(i: number): number;
  /** The shared store, as the instances open it; close it after use. */
  openStore(): Promise<Store>;
}

let cluster: Cluster | undefined;
const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const p of cluster?.proxies ?? []) {
    // A test may leave one frozen; a stopped process cannot act on SIGTERM.
    p.kill('SIGCONT');
  }
  for (const p of cluster?.proxies ?? []) await p.stop().catch(() => undefined);
  await cluster?.imap.close();
  await cluster?.auth.close();
  await cluster?.db.drop().catch(() => undefined);
  cluster = undefined;
  for (const c of cleanups.splice(0).reverse()) await c();
});

printLogsOnFailure(() =>
  (cluster?.proxies ?? []).map((p, i) => ({ name: `instance ${i}`, text: () => p.output() })),
);

function pgSettings(url: string, extra: Partial<PostgresStoreSettings> = {}): PostgresStoreSettings {
  return {
    kind: 'postgres',
    url,
    keyFile: '/nonexistent/key',
    refreshLeaseMs: 2_000,
    poolMax: 4,
    timeoutMs: 5_000,
    ...extra,
  };
}

async function startCluster(o: {
  emails: string[];
  authOptions?: FakeAuthOptions;
  /** Grants per email from the fake (default: one whose access token has already expired). */
  grant?: (auth: FakeAuthServer, email: string) => ProxyGrant | undefined;
  /** Raw `store:` keys (refreshLease, timeout, ...). */
  store?: Record<string, unknown>;
  settings?: Record<string, unknown>;
}): Promise<Cluster> {
  const auth = await startFakeAuthServer(o.authOptions);
  const imap = await startFakeImapServer({
    tls: 'implicit',
    checkAccessToken: (t) => auth.checkAccessToken(t),
  });
  const db = await pg.createDatabase();
  const key = randomBytes(32).toString('base64');
  const grants = o.emails.flatMap((email) => {
    const g =
      o.grant === undefined
        ? { email, ...auth.issueGrant(email, { accessTokenTtlSeconds: 0 }) }
        : o.grant(auth, email);
    return g ? [g] : [];
  });
  const started: Cluster = {
    auth,
    imap,
    db,
    key,
    proxies: [],
    port: (i) => started.proxies[i]!.ports.imap.none!,
    openStore: () => openStore(pgSettings(db.url), { env: { XOAUTH_PROXY_KEY: key } }),
  };
  cluster = started;
  const results = await Promise.allSettled(
    Array.from({ length: INSTANCES }, (_, i) =>
      startProxyProcess({
        auth,
        upstream: { host: '127.0.0.1', ca: getTestCerts().caPem, imap: { port: imap.port, tls: 'implicit' } },
        accounts: o.emails.map((email) => ({ username: email, password: PASSWORD })),
        grants,
        // One instance writes the grants; the others find them in the shared database.
        seed: i === 0,
        key,
        store: { kind: 'postgres', url: db.url, extra: { refreshLease: '2s', ...o.store } },
        listen: { imap: ['none'] },
        settings: {
          limits: { maxConnectionsPerAddress: 1000 },
          ...o.settings,
        },
      }),
    ),
  );
  for (const r of results) if (r.status === 'fulfilled') started.proxies.push(r.value);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  return started;
}

async function readGrants(c: Cluster): Promise<Map<string, TokenRecord>> {
  const store = await c.openStore();
  try {
    return new Map((await store.listTokens()).map((r) => [r.accountId, r]));
  } finally {
    await store.close();
  }
}

async function readGrant(c: Cluster, email: string): Promise<TokenRecord | undefined> {
  return (await readGrants(c)).get(email);
}

/** Polls `condition` every 20 ms for up to `ms`. */
async function until(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.runIf(requirePostgres())('three proxy instances on one PostgreSQL database', () => {
  it('200 logins over 3 instances for 20 expired accounts: exactly 20 refreshes, no reuse, live tokens stored', async () => {
    const emails = Array.from({ length: 20 }, (_, i) => `user${i}@example.com`);
    const c = await startCluster({ emails, authOptions: { rotateRefreshTokens: true, tokenDelayMs: 300 } });

    const replies = await Promise.all(
      Array.from({ length: 200 }, (_, n) => imapLogin(c.port(n % INSTANCES), emails[n % 20]!, PASSWORD)),
    );

    expect(replies.filter((r) => !/^a1 OK/.test(r))).toEqual([]);
    expect(c.auth.counts.refresh).toBe(20);
    expect(c.auth.counts.refreshReuse).toBe(0);
    const stored = await readGrants(c);
    expect(stored.size).toBe(20);
    for (const email of emails) {
      const record = stored.get(email);
      expect(record?.state).toBe('active');
      expect(c.auth.isRefreshTokenValid(record?.refreshToken ?? '')).toBe(true);
    }
  }, 120_000);

  it('the lease holder is killed before the provider answered: another instance takes over after the lease', async () => {
    const email = 'killed-early@example.com';
    const c = await startCluster({ emails: [email], authOptions: { rotateRefreshTokens: true } });
    const first = (await readGrant(c, email))!.refreshToken!;
    // The holder's request reaches the provider and is never answered (nor acted on) there.
    c.auth.failNext(1, 'hang');
    const doomed = imapLogin(c.port(0), email, PASSWORD).catch((err: unknown) => String(err));
    await until(() => c.auth.counts.token === 1, 10_000, 'the holder to ask the provider');
    c.proxies[0]!.kill('SIGKILL');
    await c.proxies[0]!.waitExit(10_000);
    await doomed;

    const startedAt = Date.now();
    expect(await imapLogin(c.port(1), email, PASSWORD)).toMatch(/^a1 OK/);
    // It waits out what is left of the dead holder's 2 s lease, then refreshes: seconds, not a hang.
    expect(Date.now() - startedAt).toBeLessThan(15_000);
    expect(c.auth.counts.refresh).toBe(1);
    expect(c.auth.counts.refreshReuse).toBe(0);
    expect(c.proxies[1]!.output()).toContain('took over the refresh lease');
    const stored = await readGrant(c, email);
    expect(stored?.refreshToken).not.toBe(first);
    expect(c.auth.isRefreshTokenValid(stored!.refreshToken!)).toBe(true);
    expect(await imapLogin(c.port(2), email, PASSWORD)).toMatch(/^a1 OK/);
    expect(c.auth.counts.refresh).toBe(1);
  }, 60_000);

  it('the holder is killed after the provider rotated: in doubt (failing, temporary errors), never needs-consent', async () => {
    const email = 'killed-late@example.com';
    const c = await startCluster({
      emails: [email],
      authOptions: { rotateRefreshTokens: true, refreshAnswerDelayMs: 5_000 },
    });
    const first = (await readGrant(c, email))!.refreshToken!;
    const doomed = imapLogin(c.port(0), email, PASSWORD).catch((err: unknown) => String(err));
    await until(() => !c.auth.isRefreshTokenValid(first), 10_000, 'the provider to rotate');
    c.proxies[0]!.kill('SIGKILL');
    await c.proxies[0]!.waitExit(10_000);
    await doomed;
    c.auth.options.refreshAnswerDelayMs = 0;

    // The survivor takes over and presents the refresh token the dead one already spent.
    const reply = await imapLogin(c.port(1), email, PASSWORD);
    expect(reply).toMatch(/^a1 NO \[UNAVAILABLE\]/);
    expect(reply).toMatch(/in doubt/);
    expect(c.auth.counts.refreshReuse).toBe(1);
    const stored = await readGrant(c, email);
    expect(stored?.state).toBe('failing');
    expect(stored?.lastError).toMatch(/in doubt/);

    // The third instance did not take the lease over itself; it must not declare the grant lost either.
    const third = await imapLogin(c.port(2), email, PASSWORD);
    expect(third).toMatch(/^a1 NO \[UNAVAILABLE\]/);
    const status = (await c.proxies[1]!.status()) as Array<{ accountId: string; state: string }>;
    expect(status.find((s) => s.accountId === email)?.state).toBe('failing');
    expect((await readGrant(c, email))?.state).not.toBe('needs-consent');
  }, 60_000);

  it('the holder is frozen past its lease: the late commit wins by compare-and-set, the live token is stored', async () => {
    const email = 'frozen@example.com';
    const c = await startCluster({
      emails: [email],
      authOptions: { rotateRefreshTokens: true, tokenDelayMs: 300 },
      // The frozen holder's own request timer must not outrun the answer already waiting for it.
      settings: { tokenRequestTimeout: '30s' },
    });
    const frozen = c.proxies[0]!;
    const late = imapLogin(c.port(0), email, PASSWORD);
    await until(() => c.auth.counts.token === 1, 10_000, 'the holder to ask the provider');
    frozen.kill('SIGSTOP');
    let resumed = false;
    cleanups.push(() => {
      if (!resumed) frozen.kill('SIGCONT');
    });
    // The provider rotates and answers the frozen process; the answer waits in its socket.
    await until(() => c.auth.counts.refresh === 1, 10_000, 'the provider to rotate');

    // Another instance takes the lapsed lease over; the refresh token it finds is spent, so it is in doubt.
    const during = await imapLogin(c.port(1), email, PASSWORD);
    expect(during).toMatch(/^a1 NO \[UNAVAILABLE\].*in doubt/);
    expect(c.auth.counts.refreshReuse).toBe(1);

    frozen.kill('SIGCONT');
    resumed = true;
    expect(await late).toMatch(/^a1 OK/);
    const stored = await readGrant(c, email);
    expect(stored?.state).toBe('active');
    expect(c.auth.isRefreshTokenValid(stored!.refreshToken!)).toBe(true);
    for (let i = 0; i < INSTANCES; i++) expect(await imapLogin(c.port(i), email, PASSWORD)).toMatch(/^a1 OK/);
    // Two refresh requests reached the provider: the frozen one's (it rotated) and the spent one it refused.
    expect(c.auth.counts.refresh).toBe(2);
    expect(c.auth.counts.refreshReuse).toBe(1);
  }, 60_000);

  it('the database stops answering: cached accounts keep working, the others get a temporary error in time, then all recover', async () => {
    const warm = ['warm0@example.com', 'warm1@example.com'];
    const cold = ['cold0@example.com', 'cold1@example.com'];
    const c = await startCluster({
      emails: [...warm, ...cold],
      grant: (auth, email) =>
        warm.includes(email)
          ? { email, ...auth.issueGrant(email) }
          : { email, ...auth.issueGrant(email, { accessTokenTtlSeconds: 0 }) },
      store: { timeout: '2s' },
    });
    // Each instance learns the warm accounts' passwords and access tokens.
    for (let i = 0; i < INSTANCES; i++) {
      for (const email of warm) expect(await imapLogin(c.port(i), email, PASSWORD)).toMatch(/^a1 OK/);
    }

    const server = await pg.server();
    server.blackhole();
    let thawed = false;
    cleanups.push(() => {
      if (!thawed) server.unblackhole();
    });
    const timed = async (i: number, email: string): Promise<{ reply: string; ms: number; email: string }> => {
      const t0 = Date.now();
      const reply = await imapLogin(c.port(i), email, PASSWORD);
      return { reply, ms: Date.now() - t0, email };
    };
    const storm = await Promise.all(
      Array.from({ length: INSTANCES }, (_, i) =>
        Array.from({ length: 16 }, (_, n) => timed(i, [...warm, ...cold][n % 4]!)),
      ).flat(),
    );
    server.unblackhole();
    thawed = true;

    for (const r of storm) {
      if (warm.includes(r.email)) expect(r.reply).toMatch(/^a1 OK/);
      else expect(r.reply).toMatch(/^a1 NO \[UNAVAILABLE\]/);
      // Two store round trips at most (app passwords, then the grant), each bounded by the 2 s timeout.
      expect(r.ms).toBeLessThan(8_000);
    }

    // Back without restarting anything: every account works on every instance.
    for (let i = 0; i < INSTANCES; i++) {
      for (const email of [...warm, ...cold]) {
        expect(await imapLogin(c.port(i), email, PASSWORD)).toMatch(/^a1 OK/);
      }
    }
  }, 90_000);

  it('an app password made on one instance works on another at once; revoked, it fails on every instance', async () => {
    const email = 'apps@example.com';
    const fresh = 'fresh-grant@example.com';
    const c = await startCluster({
      emails: [email, fresh],
      grant: (auth, e) => (e === email ? { email: e, ...auth.issueGrant(e) } : undefined),
    });
    const made = await c.proxies[0]!.cli([
      'app-password',
      'create',
      email,
      '--label',
      'phone',
      '--config',
      c.proxies[0]!.configFile,
    ]);
    expect(made.code, made.stderr).toBe(0);
    const appPassword = made.stdout.trim();
    const t0 = Date.now();
    expect(await imapLogin(c.port(1), email, appPassword)).toMatch(/^a1 OK/);
    expect(Date.now() - t0).toBeLessThan(1_000);

    // A grant written to the database by someone else is used by every instance at the next login.
    expect(await imapLogin(c.port(2), fresh, PASSWORD)).toMatch(/^a1 NO \[AUTHENTICATIONFAILED\]/);
    const g = c.auth.issueGrant(fresh);
    const store = await c.openStore();
    try {
      await store.putToken({
        accountId: fresh,
        connection: 'e2e',
        refreshToken: g.refreshToken,
        accessToken: g.accessToken,
        accessTokenExpiresAt: g.expiresAt,
        scopes: ['https://mail.google.com/'],
        identity: fresh,
        state: 'active',
        updatedAt: Date.now(),
      });
    } finally {
      await store.close();
    }
    const t1 = Date.now();
    expect(await imapLogin(c.port(2), fresh, PASSWORD)).toMatch(/^a1 OK/);
    expect(Date.now() - t1).toBeLessThan(1_000);

    for (let i = 0; i < INSTANCES; i++)
      expect(await imapLogin(c.port(i), email, appPassword)).toMatch(/^a1 OK/);
    const revoked = await c.proxies[2]!.cli([
      'app-password',
      'revoke',
      email,
      '--label',
      'phone',
      '--config',
      c.proxies[2]!.configFile,
    ]);
    expect(revoked.code, revoked.stderr).toBe(0);
    for (let i = 0; i < INSTANCES; i++) {
      expect(await imapLogin(c.port(i), email, appPassword)).toMatch(/^a1 NO \[AUTHENTICATIONFAILED\]/);
    }
    // The config password is untouched.
    expect(await imapLogin(c.port(0), email, PASSWORD)).toMatch(/^a1 OK/);
  }, 60_000);

  it('store migrate copies 50 SQLite grants into PostgreSQL byte for byte, and the file then refuses to open', async () => {
    const db = await pg.createDatabase();
    cleanups.push(() => db.drop());
    const dir = mkdtempSync(join(tmpdir(), 'e2e-migrate-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const key = randomBytes(32).toString('base64');
    const env = { XOAUTH_PROXY_KEY: key };
    const sqlite = { path: join(dir, 'tokens.db'), keyFile: join(dir, 'key') };

    const originals: TokenRecord[] = Array.from({ length: 50 }, (_, i) => ({
      accountId: `m${i}@example.com`,
      connection: 'e2e',
      refreshToken: `rt-${randomBytes(24).toString('base64url')}`,
      accessToken: `at-${randomBytes(24).toString('base64url')}`,
      accessTokenExpiresAt: Date.now() + i * 1000,
      scopes: ['https://mail.google.com/', `scope-${i}`],
      identity: `m${i}@example.com`,
      ...(i % 2 === 0 ? { displayName: `Mailbox ${i}` } : {}),
      state: i % 5 === 0 ? 'failing' : 'active',
      ...(i % 3 === 0 ? { lastRefreshAt: Date.now() - i, lastError: `error ${i}` } : {}),
      updatedAt: Date.now() - i * 10,
    }));
    const source = await openStore(sqlite, { env });
    try {
      for (const r of originals) await source.putToken(r);
    } finally {
      await source.close();
    }

    const configFile = join(dir, 'config.yaml');
    writeFileSync(configFile, stringifyYaml({ store: { kind: 'postgres', url: db.url, keyFile: './key' } }), {
      mode: 0o600,
    });
    const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
    delete childEnv.VITEST;
    delete childEnv.VITEST_WORKER_ID;
    delete childEnv.NODE_OPTIONS;
    const result = await runCli(
      ['store', 'migrate', '--config', configFile, '--from', sqlite.path],
      childEnv,
      60_000,
    );
    expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
    expect(result.stdout).toContain('Copied 50 grants');

    const target = await openStore(pgSettings(db.url), { env });
    let copied: TokenRecord[];
    try {
      copied = await target.listTokens();
    } finally {
      await target.close();
    }
    expect(copied).toHaveLength(50);
    const byId = new Map(copied.map((r) => [r.accountId, r]));
    for (const original of originals) {
      const row = byId.get(original.accountId);
      expect(row).toEqual(original);
      expect(Buffer.from(row!.refreshToken!).equals(Buffer.from(original.refreshToken!))).toBe(true);
      expect(Buffer.from(row!.accessToken!).equals(Buffer.from(original.accessToken!))).toBe(true);
    }
    await expect(openStore(sqlite, { env })).rejects.toThrow(/moved/);
  }, 60_000);
});
