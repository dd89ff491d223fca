/**
 * The two assertion grants against the fake authorization server, which verifies every JWT with the
 * configured public key: Google service accounts (jwt-bearer, one token per mailbox) and Microsoft
 * certificate credentials (a client assertion instead of a secret).
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { resolveAccount } from '../../../src/config/accounts.js';
import { ConfigError } from '../../../src/config/errors.js';
import { loadConfig } from '../../../src/config/load.js';
import type { Config } from '../../../src/config/types.js';
import { explainConfig } from '../../../src/cli/explain.js';
import { isProxyError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import { signServiceAccountAssertion } from '../../../src/oauth/grants/assertions.js';
import { clientCredentialsToken } from '../../../src/oauth/grants/client-credentials.js';
import { refreshAccessToken } from '../../../src/oauth/grants/refresh.js';
import { openStore } from '../../../src/store/index.js';
import { TokenManager } from '../../../src/oauth/token-manager.js';
import type { Store } from '../../../src/oauth/types.js';
import { startFakeAuthServer, type FakeAuthServer } from '../../helpers/fake-auth-server.js';
import {
  makeClientCertificate,
  makeServiceAccountKey,
  type CertificateFixture,
  type ServiceAccountFixture,
} from '../../helpers/jwt-keys.js';

let fake: FakeAuthServer;
let dir: string;
let sa: ServiceAccountFixture;
let cert: CertificateFixture;
const stores: Store[] = [];

beforeAll(async () => {
  fake = await startFakeAuthServer();
  dir = mkdtempSync(join(tmpdir(), 'xoauth-assert-'));
  sa = makeServiceAccountKey();
  writeFileSync(join(dir, 'sa.json'), sa.json);
  cert = makeClientCertificate(dir, { passphrase: 'correct horse' });
  writeFileSync(join(dir, 'pass.txt'), 'correct horse\n');
});

afterAll(async () => {
  for (const s of stores) await s.close();
  await fake.close();
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  fake.options = {
    serviceAccounts: { [sa.clientEmail]: { publicKey: sa.publicKey } },
    clientCertificates: { 'app-id': { publicKey: cert.publicKey, thumbprintS256: cert.thumbprintS256 } },
  };
});

function config(lines: string[], name = 'cfg.yaml'): Config {
  const file = join(dir, name);
  writeFileSync(file, `${lines.join('\n')}\n`);
  return loadConfig(file, { env: {} });
}

function serviceAccountConfig(): Config {
  return config([
    'connections:',
    '  - name: workspace',
    '    provider: google',
    `    clientId: "${sa.clientId}"`,
    '    grant: service_account',
    '    serviceAccountKeyFile: sa.json',
    `    tokenUrl: ${fake.tokenUrl}`,
    'accounts:',
    '  - username: "*@example.com"',
    '    connection: workspace',
  ]);
}

function certificateConfig(grant: string): Config {
  return config(
    [
      'connections:',
      '  - name: m365',
      '    provider: microsoft',
      '    clientId: app-id',
      '    tenantId: contoso.com',
      `    grant: ${grant}`,
      `    tokenUrl: ${fake.tokenUrl}`,
      '    clientCertificate:',
      `      certFile: ${cert.certFile}`,
      `      keyFile: ${cert.keyFile}`,
      '      keyPassphraseFile: pass.txt',
      'accounts:',
      '  - username: shared@contoso.com',
      '    connection: m365',
    ],
    `cert-${grant}.yaml`,
  );
}

async function manager(cfg: Config): Promise<TokenManager> {
  const store = await openStore(
    { path: join(dir, `t-${stores.length}.db`), keyFile: join(dir, `k-${stores.length}`) },
    { env: {} },
  );
  stores.push(store);
  return new TokenManager({ config: cfg, store, logger: silentLogger() });
}

async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('expected a refusal');
}

describe('Google service account (domain-wide delegation)', () => {
  it('gets one token per mailbox of a pattern account, signed for that mailbox, cached and single-flight', async () => {
    const cfg = serviceAccountConfig();
    const tokens = await manager(cfg);
    const alice = resolveAccount(cfg, 'alice@example.com')!;
    const bob = resolveAccount(cfg, 'bob@example.com')!;
    const before = fake.counts.jwtBearer;
    const [a1, a2] = await Promise.all([tokens.getAccessToken(alice), tokens.getAccessToken(alice)]);
    expect(a1.token).toBe(a2.token);
    expect(fake.counts.jwtBearer - before).toBe(1);
    const claims = fake.lastAssertion!.claims;
    expect(claims).toMatchObject({
      iss: sa.clientEmail,
      sub: 'alice@example.com',
      aud: fake.tokenUrl,
      scope: 'https://mail.google.com/',
    });
    expect(claims.exp! - claims.iat!).toBeLessThanOrEqual(3600);
    expect(fake.lastAssertion!.header).toMatchObject({ alg: 'RS256', kid: 'f00dfeed' });
    // The assertion is the only credential sent.
    expect(fake.lastTokenRequest!.has('client_secret')).toBe(false);
    const b = await tokens.getAccessToken(bob);
    expect(fake.checkAccessToken(a1.token)).toBe('alice@example.com');
    expect(fake.checkAccessToken(b.token)).toBe('bob@example.com');
    await tokens.getAccessToken(alice);
    expect(fake.counts.jwtBearer - before).toBe(2);
    // No refresh token, no consent: status says so.
    expect((await tokens.status()).map((s) => s.state)).toEqual(['service-account']);
  });

  it('maps a missing delegation, an unknown user and a deleted key to what the admin must do', async () => {
    const cfg = serviceAccountConfig();
    const tokens = await manager(cfg);
    const alice = resolveAccount(cfg, 'alice@example.com')!;
    fake.options.serviceAccounts![sa.clientEmail]!.delegated = false;
    const undelegated = await refusal(tokens.getAccessToken(alice));
    expect(undelegated).toContain('Manage Domain Wide Delegation');
    expect(undelegated).toContain(sa.clientId);

    fake.options.serviceAccounts![sa.clientEmail] = { publicKey: sa.publicKey, users: ['bob@example.com'] };
    expect(await refusal(tokens.getAccessToken(alice))).toContain('unknown, suspended');

    // Google answers a key it no longer knows with a signature failure.
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
    fake.options.serviceAccounts![sa.clientEmail] = { publicKey: other };
    const deleted = await refusal(tokens.getAccessToken(alice));
    expect(deleted).toContain('create a new key');
    try {
      await tokens.getAccessToken(alice);
    } catch (err) {
      expect(isProxyError(err, 'needs-consent')).toBe(true);
    }
  });

  it('the fake refuses an expired assertion and a replayed one', async () => {
    const cfg = serviceAccountConfig();
    const connection = cfg.connections.get('workspace')!;
    const post = (assertion: string) =>
      fetch(fake.tokenUrl, {
        method: 'POST',
        body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion }),
      });
    const expired = await signServiceAccountAssertion(connection, 'a@example.com', Date.now() - 2 * 3600_000);
    const res = await post(expired);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({
      error: 'invalid_grant',
      error_description: expect.stringMatching(/expired/),
    });

    const once = await signServiceAccountAssertion(connection, 'a@example.com', Date.now());
    expect((await post(once)).status).toBe(200);
    const replay = await post(once);
    expect(replay.status).toBe(400);
    expect(await replay.json()).toMatchObject({ error_description: expect.stringMatching(/replay/) });
  });

  it('check-config refuses a key whose client_id is not the clientId, and a JSON that is not a key', async () => {
    writeFileSync(join(dir, 'bad.json'), '{"type":"authorized_user"}');
    const load = (keyFile: string, clientId: string) => () =>
      config([
        'connections:',
        '  - name: w',
        '    provider: google',
        `    clientId: "${clientId}"`,
        '    grant: service_account',
        `    serviceAccountKeyFile: ${keyFile}`,
      ]);
    expect(load('sa.json', '999')).toThrow(/clientId 999 is not the key's client_id/);
    expect(load('bad.json', sa.clientId)).toThrow(/not service_account/);
  });
});

describe('Microsoft certificate credentials', () => {
  it('client_credentials with an encrypted key: a PS256 client assertion with x5t#S256, no secret', async () => {
    const cfg = certificateConfig('client_credentials');
    const connection = cfg.connections.get('m365')!;
    const set = await clientCredentialsToken(connection);
    expect(fake.checkAccessToken(set.accessToken)).toBe('app:app-id');
    expect(fake.lastClientAuth?.method).toBe('assertion');
    expect(fake.lastTokenRequest!.has('client_secret')).toBe(false);
    const { header, claims } = fake.lastAssertion!;
    expect(header).toMatchObject({ alg: 'PS256', 'x5t#S256': cert.thumbprintS256 });
    expect(claims).toMatchObject({ iss: 'app-id', sub: 'app-id', aud: fake.tokenUrl });
    expect(claims.exp! - claims.iat!).toBeLessThanOrEqual(600);
    // A new jti for every request: the fake refuses a reused one.
    const first = claims.jti;
    await clientCredentialsToken(connection);
    expect(fake.lastAssertion!.claims.jti).not.toBe(first);
  });

  it('refreshes a delegated grant with a client assertion', async () => {
    const cfg = certificateConfig('authorization_code');
    const grant = fake.issueGrant('shared@contoso.com');
    const set = await refreshAccessToken(cfg.connections.get('m365')!, grant.refreshToken);
    expect(fake.checkAccessToken(set.accessToken)).toBe('shared@contoso.com');
    expect(fake.lastClientAuth?.method).toBe('assertion');
  });

  it('a certificate the app registration does not know is refused (invalid_client)', async () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
    fake.options.clientCertificates = { 'app-id': { publicKey: other } };
    const cfg = certificateConfig('client_credentials');
    await expect(clientCredentialsToken(cfg.connections.get('m365')!)).rejects.toMatchObject({
      oauthError: 'invalid_client',
      kind: 'permanent',
    });
  });

  it('check-config: a key of another certificate, a missing passphrase, and the 30-day warning', async () => {
    const second = makeClientCertificate(dir, { name: 'second', days: 10 });
    const load =
      (keyFile: string, extra: string[] = [], certFile = cert.certFile) =>
      () =>
        config([
          'connections:',
          '  - name: m',
          '    provider: microsoft',
          '    clientId: app-id',
          '    tenantId: contoso.com',
          '    grant: client_credentials',
          '    clientCertificate:',
          `      certFile: ${certFile}`,
          `      keyFile: ${keyFile}`,
          ...extra,
        ]);
    expect(load(second.keyFile, ['      keyPassphraseFile: pass.txt'])).toThrow(ConfigError);
    expect(load(second.keyFile)).toThrow(/does not belong to the certificate/);
    expect(load(cert.keyFile)).toThrow(/encrypted and no passphrase/);
    const soon = load(second.keyFile, [], second.certFile)();
    const { warnings } = explainConfig(soon);
    expect(warnings.join('\n')).toMatch(/client certificate of connection m .* expires in (9|10) days/);
    expect(explainConfig(certificateConfig('client_credentials')).warnings.join('\n')).not.toMatch(
      /client certificate/,
    );
  });
});
