/**
 * One grant, two resources: the mail token and the Microsoft Graph token of an account come from the
 * same (rotating) refresh token in separate token requests, one at a time, and the Graph token never
 * replaces the stored mail token. Against the fake authorization server in its Entra-like mode.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ConnectionConfig, ResolvedAccount, Settings } from '../../../src/config/types.js';
import { isProxyError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import { createAuthorizationRequest } from '../../../src/oauth/grants/authorization-code.js';
import { storeGrant } from '../../../src/oauth/grant-record.js';
import { hasGraphConsent } from '../../../src/oauth/grants/scopes.js';
import { TokenManager } from '../../../src/oauth/token-manager.js';
import type { Store } from '../../../src/oauth/types.js';
import { openStore } from '../../../src/store/index.js';
import { fakeConnection, startFakeAuthServer, type FakeAuthServer } from '../../helpers/fake-auth-server.js';

const OUTLOOK = [
  'https://outlook.office.com/IMAP.AccessAsUser.All',
  'https://outlook.office.com/SMTP.Send',
  'offline_access',
  'openid',
  'email',
];
const GRAPH_SEND = 'https://graph.microsoft.com/Mail.Send';

let fake: FakeAuthServer;
let dir: string;
let store: Store;
let connection: ConnectionConfig;

function settings(): Settings {
  return {
    refreshMarginMs: 10 * 60_000,
    keepAliveIntervalMs: 6 * 3600_000,
    tokenRequestTimeoutMs: 5_000,
    credentialCacheMs: 60_000,
    shutdownGraceMs: 30_000,
    limits: {} as Settings['limits'],
    loginLimiter: {} as Settings['loginLimiter'],
  };
}

function manager(conn: ConnectionConfig = connection): TokenManager {
  return new TokenManager({
    config: {
      settings: settings(),
      accounts: [{ username: '*@example.com', connection: conn.name }],
      connections: new Map([[conn.name, conn]]),
    },
    store,
    logger: silentLogger(),
  });
}

function account(email: string, conn: ConnectionConfig = connection): ResolvedAccount {
  return { id: email, username: email, email, connection: conn, entry: email };
}

/** A grant the owner consented with `scopes`, its access token already expired. */
async function seed(email: string, scopes: string[]): Promise<string> {
  const grant = fake.issueGrant(email, { scopes, accessTokenTtlSeconds: 0 });
  const now = Date.now();
  await store.putToken({
    accountId: email,
    connection: connection.name,
    refreshToken: grant.refreshToken,
    accessToken: grant.accessToken,
    accessTokenExpiresAt: now,
    scopes,
    identity: email,
    state: 'active',
    lastRefreshAt: now,
    updatedAt: now,
  });
  return grant.refreshToken;
}

beforeEach(async () => {
  fake = await startFakeAuthServer({ multiResource: true, rotateRefreshTokens: true });
  dir = mkdtempSync(join(tmpdir(), 'xoauth-graph-tokens-'));
  store = await openStore({ path: join(dir, 'tokens.db'), keyFile: join(dir, 'store.key') }, { env: {} });
  connection = {
    ...fakeConnection(fake),
    provider: 'microsoft',
    scopes: OUTLOOK,
    send: 'auto',
    graph: { url: 'http://127.0.0.1:9/v1.0', scopes: [GRAPH_SEND], saveToSentItems: true },
  };
});
afterEach(async () => {
  await store.close();
  await fake.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('Graph tokens from the mail grant', () => {
  it('redeems the refresh token once per resource and keeps the stored mail token', async () => {
    const first = await seed('ann@example.com', [...OUTLOOK, GRAPH_SEND]);
    const tm = manager();
    const mail = await tm.getAccessToken(account('ann@example.com'));
    expect(fake.describeAccessToken(mail.token)?.audience).toBe('https://outlook.office.com');
    const stored = await store.getToken('ann@example.com');
    expect(stored?.accessToken).toBe(mail.token);

    const graph = await tm.getAccessToken(account('ann@example.com'), { resource: 'graph' });
    expect(fake.describeAccessToken(graph.token)).toMatchObject({
      owner: 'ann@example.com',
      audience: 'https://graph.microsoft.com',
      scopes: [GRAPH_SEND],
    });
    // One resource per request, and offline_access so the endpoint goes on rotating.
    expect(fake.lastTokenRequest?.get('scope')).toBe(`${GRAPH_SEND} offline_access`);
    const after = await store.getToken('ann@example.com');
    expect(after?.accessToken).toBe(mail.token);
    expect(after?.refreshToken).not.toBe(stored?.refreshToken);
    expect(after?.refreshToken).not.toBe(first);
    expect(fake.isRefreshTokenValid(after?.refreshToken ?? '')).toBe(true);
    expect(hasGraphConsent(connection, after?.scopes ?? [])).toBe(true);

    // Both are cached now: no more token requests.
    const before = fake.counts.refresh;
    expect((await tm.getAccessToken(account('ann@example.com'), { resource: 'graph' })).token).toBe(
      graph.token,
    );
    expect((await tm.getAccessToken(account('ann@example.com'))).token).toBe(mail.token);
    expect(fake.counts.refresh).toBe(before);
    await tm.stop();
  });

  it('never sends one rotating refresh token twice when mail and Graph refresh at once', async () => {
    await seed('bob@example.com', [...OUTLOOK, GRAPH_SEND]);
    const tm = manager();
    const calls = Array.from({ length: 6 }, (_, i) =>
      tm.getAccessToken(account('bob@example.com'), i % 2 ? { resource: 'graph' } : {}),
    );
    const tokens = await Promise.all(calls);
    expect(fake.counts.refreshReuse).toBe(0);
    expect(fake.counts.refresh).toBe(2);
    const audiences = new Set(tokens.map((t) => fake.describeAccessToken(t.token)?.audience));
    expect(audiences).toEqual(new Set(['https://outlook.office.com', 'https://graph.microsoft.com']));
    const stored = await store.getToken('bob@example.com');
    expect(fake.isRefreshTokenValid(stored?.refreshToken ?? '')).toBe(true);
    await tm.stop();
  });

  it('a grant consented without Graph: sending needs consent, mail goes on', async () => {
    await seed('cy@example.com', OUTLOOK);
    const tm = manager();
    const err = await tm
      .getAccessToken(account('cy@example.com'), { resource: 'graph' })
      .catch((e: unknown) => e);
    expect(isProxyError(err, 'needs-consent')).toBe(true);
    expect((err as Error).message).toContain('does not allow sending through Microsoft Graph');
    expect((err as Error).message).toContain('AADSTS65001');
    const record = await store.getToken('cy@example.com');
    expect(record?.state).toBe('active');
    expect(hasGraphConsent(connection, record?.scopes ?? [])).toBe(false);
    const mail = await tm.getAccessToken(account('cy@example.com'));
    expect(fake.describeAccessToken(mail.token)?.audience).toBe('https://outlook.office.com');
    await tm.stop();
  });

  it('any other refusal of the Graph token stops sending only: the grant stays active for mail', async () => {
    await seed('fay@example.com', [...OUTLOOK, GRAPH_SEND]);
    const tm = manager();
    fake.failNext(1, 400, 'invalid_grant');
    const err = await tm
      .getAccessToken(account('fay@example.com'), { resource: 'graph' })
      .catch((e: unknown) => e);
    expect(isProxyError(err, 'needs-consent')).toBe(true);
    expect((err as Error).message).toContain('refused a Microsoft Graph token');
    expect((await store.getToken('fay@example.com'))?.state).toBe('active');
    const mail = await tm.getAccessToken(account('fay@example.com'));
    expect(fake.describeAccessToken(mail.token)?.audience).toBe('https://outlook.office.com');
    await tm.stop();
  });

  it('a connection without Graph sending refuses a Graph token', async () => {
    await seed('dee@example.com', OUTLOOK);
    const plain: ConnectionConfig = { ...connection, send: 'smtp' };
    delete plain.graph;
    const tm = manager(plain);
    const err = await tm
      .getAccessToken(account('dee@example.com', plain), { resource: 'graph' })
      .catch((e: unknown) => e);
    expect(isProxyError(err, 'config')).toBe(true);
    expect(fake.counts.refresh).toBe(0);
    await tm.stop();
  });

  it('app-only: Graph gets its own client-credentials token with the .default scope', async () => {
    const app: ConnectionConfig = {
      ...connection,
      grant: 'client_credentials',
      scopes: ['https://outlook.office365.com/.default'],
      graph: {
        url: 'http://127.0.0.1:9/v1.0',
        scopes: ['https://graph.microsoft.com/.default'],
        saveToSentItems: true,
      },
    };
    const tm = manager(app);
    const mail = await tm.getAccessToken(account('svc@example.com', app));
    const graph = await tm.getAccessToken(account('svc@example.com', app), { resource: 'graph' });
    expect(fake.describeAccessToken(mail.token)?.audience).toBe('https://outlook.office365.com');
    expect(fake.describeAccessToken(graph.token)?.audience).toBe('https://graph.microsoft.com');
    expect(fake.counts.clientCredentials).toBe(2);
    await tm.stop();
  });

  it('consent asks for both resources at once and the stored grant records Graph', async () => {
    const request = createAuthorizationRequest(connection, { redirectUri: 'http://localhost/cb' });
    const scope = new URL(request.url).searchParams.get('scope')?.split(' ');
    expect(scope).toEqual([...OUTLOOK, GRAPH_SEND]);
    const record = await storeGrant(
      store,
      account('eve@example.com'),
      {
        accessToken: 'at',
        expiresAt: Date.now() + 3600_000,
        refreshToken: 'rt',
        // Entra names only the first resource's scopes in the answer.
        scopes: ['https://outlook.office.com/IMAP.AccessAsUser.All', 'https://outlook.office.com/SMTP.Send'],
      },
      { email: 'eve@example.com' },
    );
    expect(record.scopes).toContain(GRAPH_SEND);
    expect(hasGraphConsent(connection, record.scopes)).toBe(true);
  });
});
