import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatStatusTable } from '../../../src/cli/commands/status.js';
import type { AccountConfig, ConnectionConfig } from '../../../src/config/types.js';
import { collectAccountStatus } from '../../../src/oauth/account-status.js';
import type { AccountStatus } from '../../../src/oauth/account-status.js';
import type { TokenRecord } from '../../../src/oauth/types.js';
import { SqliteStore } from '../../../src/store/sqlite-store.js';

function conn(name: string, grant: ConnectionConfig['grant'] = 'authorization_code'): ConnectionConfig {
  return {
    name,
    provider: 'custom',
    clientId: 'c',
    grant,
    authorizeUrl: 'https://a.example/authorize',
    tokenUrl: 'https://a.example/token',
    scopes: ['s'],
    authorizeParams: {},
    sasl: 'xoauth2',
    allowedIdentities: [],
  };
}

function rec(accountId: string, connection: string, extra: Partial<TokenRecord> = {}): TokenRecord {
  return {
    accountId,
    connection,
    refreshToken: 'rt-secret',
    accessToken: 'at-secret',
    accessTokenExpiresAt: 1_000_000 + 3600_000,
    scopes: ['s'],
    state: 'active',
    lastRefreshAt: 1_000_000,
    updatedAt: 1_000_000,
    ...extra,
  };
}

describe('account status', () => {
  const accounts: AccountConfig[] = [
    { username: 'alice@example.com', connection: 'g' },
    { username: 'Shared', email: 'Shared@Example.com', connection: 'g' },
    { username: '*@example.org', connection: 'g' },
    { username: '*@eu.example.org', connection: 'm' },
    { username: '*@apps.example', connection: 'app' },
    { username: 'never@example.com', connection: 'g' },
  ];
  const connections = new Map([
    ['g', conn('g')],
    ['m', conn('m')],
    ['app', conn('app', 'client_credentials')],
  ]);
  const records = [
    rec('alice@example.com', 'g'),
    rec('shared@example.com', 'g', { state: 'failing', lastError: 'temporarily_unavailable' }),
    rec('bob@example.org', 'g', { state: 'needs-consent', lastError: 'invalid_grant' }),
    rec('carol@eu.example.org', 'm'),
    rec('gone@old.example', 'g'),
  ];
  // A real store: its summaries are what status reads, so no secret can reach a row.
  let rows: AccountStatus[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'xoauth-status-'));
  beforeAll(async () => {
    const store = SqliteStore.open({ path: join(dir, 'tokens.db'), keyFile: join(dir, 'key') });
    for (const r of records) await store.putToken(r);
    rows = await collectAccountStatus({ accounts, connections }, store);
    await store.close();
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('lists configured accounts, pattern matches (most specific entry), app-only and orphans', () => {
    expect(rows.map((r) => [r.accountId, r.entry, r.state])).toEqual([
      ['alice@example.com', 'alice@example.com', 'active'],
      ['shared@example.com', 'Shared', 'failing'],
      ['bob@example.org', '*@example.org', 'needs-consent'],
      ['carol@eu.example.org', '*@eu.example.org', 'active'],
      ['*@apps.example', '*@apps.example', 'app-only'],
      ['never@example.com', 'never@example.com', 'no-grant'],
      ['gone@old.example', undefined, 'active'],
    ]);
  });

  it('never carries a token', () => {
    expect(JSON.stringify(rows)).not.toContain('secret');
    expect(rows[0]).toMatchObject({ hasRefreshToken: true, accessTokenExpiresAt: 1_000_000 + 3600_000 });
  });

  it('formats a table with errors and hints', () => {
    const table = formatStatusTable(rows, 1_000_000);
    expect(table).toMatch(/^ACCOUNT\s+STATE\s+TOKEN EXPIRES\s+LAST REFRESH\s+LAST ERROR/);
    expect(table).toMatch(/bob@example\.org\s+needs-consent.*invalid_grant/);
    expect(table).toMatch(/never@example\.com\s+no-grant.*xoauth-proxy consent never@example\.com/);
    expect(table).toContain('gone@old.example (not in config)');
    expect(table).toContain('(in 60 min)');
    expect(table).not.toContain('secret');
  });
});

describe('account status of connections that send through Graph', () => {
  const graph = { url: 'https://graph.example/v1.0', scopes: ['graph.send'], saveToSentItems: true };
  const connections = new Map<string, ConnectionConfig>([
    ['auto', { ...conn('auto'), send: 'auto', graph }],
    ['always', { ...conn('always'), send: 'graph', graph }],
    ['plain', conn('plain')],
  ]);
  const accounts: AccountConfig[] = [
    { username: 'switched@example.com', connection: 'auto' },
    { username: 'back@example.com', connection: 'auto' },
    { username: 'old@example.com', connection: 'always' },
    { username: 'plain@example.com', connection: 'plain' },
  ];
  const now = 5_000_000;
  let rows: AccountStatus[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'xoauth-status-graph-'));
  beforeAll(async () => {
    const store = SqliteStore.open({ path: join(dir, 'tokens.db'), keyFile: join(dir, 'key') });
    await store.putToken(
      rec('switched@example.com', 'auto', { scopes: ['s', 'graph.send'], graphSendUntil: now + 3600_000 }),
    );
    await store.putToken(
      rec('back@example.com', 'auto', { scopes: ['s', 'graph.send'], graphSendUntil: now - 1 }),
    );
    await store.putToken(rec('old@example.com', 'always', { scopes: ['s'] }));
    await store.putToken(rec('plain@example.com', 'plain'));
    rows = await collectAccountStatus({ accounts, connections }, store, now);
    await store.close();
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('says which way each account sends, and which grant lacks the Graph consent', () => {
    expect(rows.map((r) => [r.accountId, r.sending])).toEqual([
      [
        'switched@example.com',
        { mode: 'auto', via: 'graph', graphUntil: now + 3600_000, graphConsent: true },
      ],
      ['back@example.com', { mode: 'auto', via: 'smtp', graphConsent: true }],
      ['old@example.com', { mode: 'graph', via: 'graph', graphConsent: false }],
      ['plain@example.com', undefined],
    ]);
    const table = formatStatusTable(rows, now);
    expect(table).toMatch(/^ACCOUNT\s+STATE\s+TOKEN EXPIRES\s+LAST REFRESH\s+SENDS VIA\s+LAST ERROR/);
    expect(table).toMatch(
      /switched@example\.com\s+active.*graph \(auto; SMTP AUTH off, SMTP again .*\(in 60 min\)\)/,
    );
    expect(table).toMatch(/back@example\.com\s+active.*smtp \(auto\)/);
    expect(table).toMatch(
      /old@example\.com.*consented without Graph \(Mail\.Send\): to send through Graph, xoauth-proxy consent old@example\.com/,
    );
  });
});
