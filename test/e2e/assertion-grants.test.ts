/**
 * The assertion grants end to end: the proxy binary gets tokens with a Google service account
 * assertion and with a certificate-authenticated client (both verified by the fake authorization
 * server with the configured public keys), and Dovecot accepts them for the mailbox.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireDovecot, startDovecot, type DovecotServer } from '../helpers/dovecot.js';
import { startFakeAuthServer, type FakeAuthServer } from '../helpers/fake-auth-server.js';
import { makeClientCertificate, makeServiceAccountKey } from '../helpers/jwt-keys.js';
import { startProxyProcess, type ProxyProcess } from '../helpers/proxy-process.js';
import { imapLogin, printLogsOnFailure } from './support.js';

const PW = 'assertion-pw';
const DELEGATED = 'delegated@example.com';
const UNKNOWN = 'unknown@example.com';
const CERT_USER = 'cert@example.com';

describe.runIf(requireDovecot())('assertion grants through the proxy binary and Dovecot', () => {
  let auth: FakeAuthServer;
  let dovecot: DovecotServer;
  let proxy: ProxyProcess;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'xoauth-e2e-assert-'));
    const sa = makeServiceAccountKey();
    const saFile = join(dir, 'sa.json');
    writeFileSync(saFile, sa.json);
    const cert = makeClientCertificate(dir, { passphrase: 'pass phrase' });
    auth = await startFakeAuthServer({
      // Only DELEGATED is a user of the domain: UNKNOWN gets Google's invalid_grant.
      serviceAccounts: { [sa.clientEmail]: { publicKey: sa.publicKey, users: [DELEGATED] } },
      clientCertificates: {
        'e2e-client': { publicKey: cert.publicKey, thumbprintS256: cert.thumbprintS256 },
      },
    });
    dovecot = await startDovecot({ tokeninfoUrl: auth.tokeninfoUrl, users: [DELEGATED, UNKNOWN, CERT_USER] });
    const upstream = {
      host: dovecot.host,
      ca: dovecot.caPem,
      imap: { port: dovecot.ports.imaps, tls: 'implicit' as const },
    };
    // The seeded access token is already expired: the first login must refresh, with the certificate.
    const grant = auth.issueGrant(CERT_USER, { accessTokenTtlSeconds: 0 });
    proxy = await startProxyProcess({
      auth,
      upstream: {
        ...upstream,
        extra: {
          clientId: sa.clientId,
          clientSecret: null,
          grant: 'service_account',
          serviceAccountKeyFile: saFile,
        },
      },
      moreConnections: {
        'e2e-cert': {
          ...upstream,
          extra: {
            clientSecret: null,
            clientCertificate: {
              certFile: cert.certFile,
              keyFile: cert.keyFile,
              keyPassphrase: '${KEY_PASS}',
            },
          },
        },
      },
      accounts: [
        { username: DELEGATED, password: PW },
        { username: UNKNOWN, password: PW },
        { username: CERT_USER, password: PW, connection: 'e2e-cert' },
      ],
      grants: [{ email: CERT_USER, connection: 'e2e-cert', refreshToken: grant.refreshToken }],
      listen: { imap: ['none'] },
      env: { KEY_PASS: 'pass phrase' },
    });
  });
  afterAll(async () => {
    await proxy?.stop();
    await dovecot?.stop();
    await auth?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  printLogsOnFailure(() => [
    { name: 'dovecot', text: () => dovecot.log() },
    { name: 'xoauth-proxy', text: () => proxy.output() },
  ]);

  it('logs in to a delegated mailbox with a service account token (no grant stored, no consent)', async () => {
    const before = auth.counts.jwtBearer;
    expect(await imapLogin(proxy.ports.imap.none!, DELEGATED, PW)).toMatch(/^a1 OK/);
    expect(auth.counts.jwtBearer - before).toBe(1);
    expect(auth.lastAssertion?.claims.sub).toBe(DELEGATED);
    // Cached: a second login needs no new assertion.
    expect(await imapLogin(proxy.ports.imap.none!, DELEGATED, PW)).toMatch(/^a1 OK/);
    expect(auth.counts.jwtBearer - before).toBe(1);
    const status = (await proxy.status()) as Array<{ accountId: string; state: string }>;
    expect(status.find((s) => s.accountId === DELEGATED)?.state).toBe('service-account');
  });

  it('a user Google does not know gets a refusal that tells to ask the administrator, not a consent link', async () => {
    const reply = await imapLogin(proxy.ports.imap.none!, UNKNOWN, PW);
    expect(reply).toMatch(/^a1 NO \[AUTHENTICATIONFAILED\]/);
    expect(reply).toContain('ask your administrator');
    expect(reply).not.toContain('consent-link');
  });

  it('logs in with a token refreshed by a certificate-authenticated client (encrypted key, passphrase from the environment)', async () => {
    const before = auth.counts.clientAssertion;
    expect(await imapLogin(proxy.ports.imap.none!, CERT_USER, PW)).toMatch(/^a1 OK/);
    expect(auth.counts.clientAssertion - before).toBe(1);
    expect(auth.lastClientAuth?.method).toBe('assertion');
    expect(auth.lastAssertion?.header['x5t#S256']).toBeTypeOf('string');
    expect(proxy.output()).not.toContain('pass phrase');
  });
});
