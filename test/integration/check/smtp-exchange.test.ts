/**
 * Exchange Online answers a bad token with a plain `535 5.7.3` (no SASL error challenge), which
 * nodemailer does not retry by itself. The check must still force one refresh and log in again, as
 * the proxy does; and a refusal after the fresh token is reported with the server's words.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { SMTPServer } from 'smtp-server';
import { afterEach, describe, expect, it } from 'vitest';
import { buildReport, formatReport, runChecks } from '../../../src/check/index.js';
import { DEFAULTS } from '../../../src/config/defaults.js';
import type { Config, ResolvedAccount } from '../../../src/config/types.js';
import { storeGrant } from '../../../src/oauth/grant-record.js';
import { openStore } from '../../../src/store/index.js';
import { TokenManager } from '../../../src/oauth/token-manager.js';
import type { Store } from '../../../src/oauth/types.js';
import { getTestCerts } from '../../helpers/certs.js';
import { fakeConnection, startFakeAuthServer, type FakeAuthServer } from '../../helpers/fake-auth-server.js';

const EMAIL = 'adele@contoso.example';
const EXCHANGE_REFUSAL = '5.7.3 Authentication unsuccessful [SN4PR0601CA0001.namprd06.prod.outlook.com]';

interface ExchangeLike {
  port: number;
  attempts: boolean[];
  /** Refuse every token, even a fresh one. */
  refuseAll: boolean;
  /** Answer every login like a tenant with SMTP AUTH switched off. */
  smtpAuthOff: boolean;
  close(): Promise<void>;
}

/** smtp-server on STARTTLS (587 style), XOAUTH2 only, refusing bad tokens at once like Exchange. */
async function startExchangeLike(auth: FakeAuthServer): Promise<ExchangeLike> {
  const certs = getTestCerts();
  const state = { refuseAll: false, smtpAuthOff: false };
  const attempts: boolean[] = [];
  const server = new SMTPServer({
    secure: false,
    key: certs.keyPem,
    cert: certs.certPem,
    authMethods: ['XOAUTH2'],
    logger: false,
    disableReverseLookup: true,
    onAuth(a, _session, callback) {
      const owner = a.accessToken ? auth.checkAccessToken(a.accessToken) : undefined;
      const ok = !state.refuseAll && owner === (a.username ?? '').toLowerCase();
      attempts.push(ok);
      if (state.smtpAuthOff) {
        const off =
          '5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.';
        callback(Object.assign(new Error(off), { responseCode: 535 }));
        return;
      }
      if (ok) callback(null, { user: a.username });
      else callback(Object.assign(new Error(EXCHANGE_REFUSAL), { responseCode: 535 }));
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.server.address() as AddressInfo).port,
    attempts,
    get refuseAll() {
      return state.refuseAll;
    },
    set refuseAll(on: boolean) {
      state.refuseAll = on;
    },
    get smtpAuthOff() {
      return state.smtpAuthOff;
    },
    set smtpAuthOff(on: boolean) {
      state.smtpAuthOff = on;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const conn of server.connections) (conn as unknown as { close(): void }).close();
        server.close(() => resolve());
      }),
  };
}

let cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const fn of cleanup.reverse()) await fn();
  cleanup = [];
});

async function setup(send?: 'graph' | 'auto'): Promise<{
  auth: FakeAuthServer;
  exchange: ExchangeLike;
  account: ResolvedAccount;
  tokens: TokenManager;
  store: Store;
}> {
  const auth = await startFakeAuthServer({ rotateRefreshTokens: true });
  cleanup.push(() => auth.close());
  const exchange = await startExchangeLike(auth);
  cleanup.push(() => exchange.close());
  const connection = fakeConnection(auth, {
    provider: 'microsoft',
    smtp: { host: '127.0.0.1', port: exchange.port, tls: 'starttls' },
    ca: getTestCerts().caPem,
    ...(send
      ? {
          send,
          graph: {
            url: 'http://127.0.0.1:9/v1.0',
            scopes: ['https://graph.microsoft.com/Mail.Send'],
            saveToSentItems: true,
          },
        }
      : {}),
  });
  const dir = mkdtempSync(join(tmpdir(), 'check-exchange-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const store = await openStore({ path: join(dir, 'tokens.db'), keyFile: join(dir, 'key') }, { env: {} });
  cleanup.push(() => store.close());
  const account: ResolvedAccount = { id: EMAIL, username: EMAIL, email: EMAIL, connection, entry: EMAIL };
  // The provider already refuses this access token; the store believes it is good for an hour.
  const grant = auth.issueGrant(EMAIL, { accessTokenTtlSeconds: 0 });
  await storeGrant(
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
  const config: Pick<Config, 'settings' | 'accounts' | 'connections'> = {
    settings: DEFAULTS.settings,
    accounts: [{ username: EMAIL, connection: connection.name }],
    connections: new Map([[connection.name, connection]]),
  };
  const tokens = new TokenManager({ config, store, logger: pino({ level: 'silent' }) });
  return { auth, exchange, account, tokens, store };
}

describe('check: SMTP of accounts that send through Microsoft Graph', () => {
  it('send: auto and SMTP AUTH off: the check is that a Graph token can be had', async () => {
    const { auth, exchange, account, tokens } = await setup('auto');
    exchange.smtpAuthOff = true;
    const [result] = await runChecks({ account, tokens, protocols: ['smtp'], timeoutMs: 10_000 });
    expect(result).toMatchObject({
      ok: true,
      mechanism: 'Graph',
      smtp: { graph: { why: 'SMTP AUTH is off (send: auto)', url: 'http://127.0.0.1:9/v1.0' } },
    });
    expect(auth.lastTokenRequest?.get('scope')).toBe('https://graph.microsoft.com/Mail.Send offline_access');
    const text = formatReport(buildReport(account, result ? [result] : []));
    expect(text).toContain(
      'SMTP  OK    sends through Microsoft Graph http://127.0.0.1:9/v1.0 (SMTP AUTH is off (send: auto))',
    );
  });

  it('send: graph never logs in to SMTP', async () => {
    const { exchange, account, tokens } = await setup('graph');
    const [result] = await runChecks({ account, tokens, protocols: ['smtp'], timeoutMs: 10_000 });
    expect(result).toMatchObject({ ok: true, smtp: { graph: { why: 'send: graph' } } });
    expect(exchange.attempts).toEqual([]);
  });

  it('send: smtp and SMTP AUTH off: a failure that names the switch to make', async () => {
    const { exchange, account, tokens } = await setup();
    exchange.smtpAuthOff = true;
    const [result] = await runChecks({ account, tokens, protocols: ['smtp'], timeoutMs: 10_000 });
    expect(result?.ok).toBe(false);
    if (result && !result.ok) expect(result.error.kind).toBe('smtp-auth-disabled');
  });
});

describe('check: SMTP against an Exchange-like server', () => {
  it('a plain 535 5.7.3 gets one forced refresh and a new login, which works', async () => {
    const { auth, exchange, account, tokens, store } = await setup();
    const [result] = await runChecks({ account, tokens, protocols: ['smtp'], timeoutMs: 10_000 });
    expect(result).toMatchObject({ protocol: 'smtp', ok: true, refreshed: true, tls: 'starttls' });
    expect(exchange.attempts).toEqual([false, true]);
    expect(auth.counts.refresh).toBe(1);
    // The rotated refresh token was stored.
    expect(auth.isRefreshTokenValid((await store.getToken(EMAIL))!.refreshToken!)).toBe(true);
  });

  it('refused again with the fresh token: a rejected line with the server text, one refresh only', async () => {
    const { auth, exchange, account, tokens } = await setup();
    exchange.refuseAll = true;
    const [result] = await runChecks({ account, tokens, protocols: ['smtp'], timeoutMs: 10_000 });
    expect(result?.ok).toBe(false);
    if (result && !result.ok) {
      expect(result.error.kind).toBe('rejected');
      expect(result.error.message).toContain('SMTP login refused even with a freshly refreshed token');
      expect(result.error.message).toContain('5.7.3 Authentication unsuccessful');
      expect(result.error.message).toContain('SMTP.Send');
    }
    expect(exchange.attempts).toEqual([false, false]);
    expect(auth.counts.refresh).toBe(1);
  });
});
