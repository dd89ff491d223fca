/**
 * Test environment for `xoauth-proxy check`: the fake authorization server, fake Gmail-like IMAP,
 * SMTP and POP3 upstreams (real TLS with the test CA), a YAML config file pointing at them, and a
 * token store with a grant seeded as consent stores it. `check()` runs the real CLI in-process.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { run } from '../../../src/cli/program.js';
import type { ResolvedAccount } from '../../../src/config/types.js';
import { storeGrant } from '../../../src/oauth/grant-record.js';
import { openStore } from '../../../src/store/index.js';
import type { TokenRecord } from '../../../src/oauth/types.js';
import { getTestCerts } from '../../helpers/certs.js';
import { fakeConnection, startFakeAuthServer, type FakeAuthServer } from '../../helpers/fake-auth-server.js';
import { startFakeImapServer, type FakeImapServer } from '../../helpers/fake-imap-server.js';
import { startFakePop3Server, type FakePop3Server } from '../../helpers/fake-pop3-server.js';
import { startFakeSmtpUpstream, type FakeSmtpUpstream } from '../../helpers/fake-smtp-upstream.js';

export const EMAIL = 'alice@example.com';

export interface CheckEnvOptions {
  /** Trust the test CA through the connection's caFile (default true). */
  trustCa?: boolean;
  /** Put `listen.pop3` in the config (the proxy serves POP3), default false. */
  listenPop3?: boolean;
  /**
   * The seeded grant: 'fresh' (default), 'expired' (the store says the access token expired),
   * 'stale' (the store thinks it is good for an hour, the provider already refuses it), 'none'.
   */
  grant?: 'fresh' | 'expired' | 'stale' | 'none';
  /** Grant for another address (e.g. one a `*@example.org` entry serves). */
  email?: string;
  imapTls?: 'implicit' | 'starttls';
  smtpTls?: 'implicit' | 'starttls';
  pop3Tls?: 'implicit' | 'starttls';
  messages?: Buffer[];
}

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CheckTestEnv {
  auth: FakeAuthServer;
  imap: FakeImapServer;
  smtp: FakeSmtpUpstream;
  pop3: FakePop3Server;
  dir: string;
  configFile: string;
  storeSettings: { path: string; keyFile: string };
  email: string;
  /** Tokens of the seeded grant (never to appear in the output). */
  seeded: { refreshToken: string; accessToken: string } | undefined;
  /** The stored record now (a fresh store connection each time). */
  record(): Promise<TokenRecord | undefined>;
  /** Runs `xoauth-proxy --config <file> check <args>` in-process. */
  check(...args: string[]): Promise<CliRun>;
  close(): Promise<void>;
}

function capture(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  return { stream, text: () => chunks.join('') };
}

export async function startCheckEnv(options: CheckEnvOptions = {}): Promise<CheckTestEnv> {
  const certs = getTestCerts();
  const email = options.email ?? EMAIL;
  const auth = await startFakeAuthServer();
  const checkAccessToken = (t: string): string | undefined => auth.checkAccessToken(t);
  const imap = await startFakeImapServer({
    tls: options.imapTls ?? 'implicit',
    checkAccessToken,
    messages: options.messages ?? [],
  });
  const smtp = await startFakeSmtpUpstream({ tls: options.smtpTls ?? 'implicit', checkAccessToken });
  const pop3 = await startFakePop3Server({
    tls: options.pop3Tls ?? 'implicit',
    checkAccessToken,
    messages: options.messages ?? [],
  });
  const dir = mkdtempSync(join(tmpdir(), 'xoauth-check-'));
  const storeSettings = { path: join(dir, 'data', 'tokens.db'), keyFile: join(dir, 'data', 'key') };
  const configFile = join(dir, 'config.yaml');
  const server = (s: { host: string; port: number; tls: string }): string =>
    `{ host: ${s.host}, port: ${s.port}, tls: ${s.tls} }`;
  writeFileSync(
    configFile,
    `listen:
  imap: [{ port: 1143 }]
${options.listenPop3 ? '  pop3: [{ port: 1110 }]\n' : ''}store:
  path: ${storeSettings.path}
  keyFile: ${storeSettings.keyFile}
settings:
  tokenRequestTimeout: 5s
  limits:
    upstreamConnectTimeout: 10s
connections:
  - name: fake
    provider: custom
    clientId: test-client
    clientSecret: test-secret
    authorizeUrl: ${auth.authorizeUrl}
    tokenUrl: ${auth.tokenUrl}
    userinfoUrl: ${auth.userinfoUrl}
    scopes: ['https://mail.google.com/']
    imap: ${server(imap.server)}
    smtp: ${server(smtp.server)}
    pop3: ${server(pop3.server)}
${options.trustCa === false ? '' : `    caFile: ${certs.caFile}\n`}accounts:
  - username: ${EMAIL}
    connection: fake
  - username: '*@example.org'
    connection: fake
`,
  );

  let seeded: CheckTestEnv['seeded'];
  const grantKind = options.grant ?? 'fresh';
  if (grantKind !== 'none') {
    const store = await openStore(storeSettings, { env: {} });
    const grant = auth.issueGrant(email, grantKind === 'stale' ? { accessTokenTtlSeconds: 0 } : {});
    const connection = fakeConnection(auth);
    const account: ResolvedAccount = { id: email, username: email, email, connection, entry: email };
    await storeGrant(
      store,
      account,
      {
        accessToken: grant.accessToken,
        refreshToken: grant.refreshToken,
        // 'expired': the store knows; 'stale': only the upstream's refusal reveals it.
        expiresAt: grantKind === 'expired' ? Date.now() - 60_000 : Date.now() + 3_600_000,
        scopes: connection.scopes,
      },
      { email },
    );
    await store.close();
    seeded = { refreshToken: grant.refreshToken, accessToken: grant.accessToken };
  }

  return {
    auth,
    imap,
    smtp,
    pop3,
    dir,
    configFile,
    storeSettings,
    email,
    seeded,
    async record() {
      const store = await openStore(storeSettings, { env: {} });
      try {
        return await store.getToken(email.toLowerCase());
      } finally {
        await store.close();
      }
    },
    async check(...args: string[]): Promise<CliRun> {
      const out = capture();
      const err = capture();
      const code = await run(['node', 'xoauth-proxy', '--config', configFile, 'check', ...args], {
        stdout: out.stream,
        stderr: err.stream,
        stdin: process.stdin,
        env: {},
      });
      return { code, stdout: out.text(), stderr: err.text() };
    },
    async close() {
      await imap.close();
      await smtp.close();
      await pop3.close();
      await auth.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Every token the run could have leaked: the seeded ones and whatever the store holds now. */
export async function secretsOf(env: CheckTestEnv): Promise<string[]> {
  const record = await env.record();
  return [
    env.seeded?.accessToken,
    env.seeded?.refreshToken,
    record?.accessToken,
    record?.refreshToken,
  ].filter((s): s is string => typeof s === 'string' && s.length > 0);
}
