/**
 * Test environment for the IMAP proxy: the shared proxy environment (test/helpers/proxy-env.ts) with
 * a fake Gmail IMAP server as the upstream and a grant seeded as consent would store it.
 */
import { afterEach } from 'vitest';
import type {
  ListenerConfig,
  SaslMechanism,
  Settings,
  TlsMode,
  UpstreamPoolSettings,
  UpstreamServer,
} from '../../../src/config/types.js';
import { createImapServer } from '../../../src/proxy/imap/server.js';
import { fakeConnection } from '../../helpers/fake-auth-server.js';
import {
  startFakeImapServer,
  type FakeImapOptions,
  type FakeImapServer,
} from '../../helpers/fake-imap-server.js';
import { seedConsentGrant, startProxyEnv, type ProxyEnv } from '../../helpers/proxy-env.js';
import { RawImap } from './raw-client.js';

export { eventually, makeMessage, sessionLines } from '../../helpers/proxy-env.js';

export const USER = 'legacy-client';
export const PASSWORD = 'Pässwörd "with" \\ specials ✓';
export const EMAIL = 'alice@example.com';
export const CONSENT_HINT = 'Ask the mailbox owner to run: xoauth-proxy consent alice@example.com';

export interface EnvOptions {
  listenerTls: TlsMode;
  upstreamTls: 'implicit' | 'starttls';
  messages?: Buffer[];
  limits?: Partial<Settings['limits']>;
  /** The stored access token is one the fake already considers expired (the cache does not know). */
  staleAccessToken?: boolean;
  sasl?: SaslMechanism;
  /** The listener expects a PROXY protocol header from these balancers. */
  proxyProtocol?: ListenerConfig['proxyProtocol'];
  /** Point the connection at another IMAP server than the fake (e.g. one that stalls). */
  imapServer?: UpstreamServer;
  fake?: Partial<Omit<FakeImapOptions, 'tls' | 'checkAccessToken' | 'messages'>>;
  /** Warm upstream connections (default: none). */
  upstreamPool?: UpstreamPoolSettings;
}

export type ImapEnv = ProxyEnv<FakeImapServer>;

export function startImapEnv(options: EnvOptions): Promise<ImapEnv> {
  return startProxyEnv({
    name: 'imap-env',
    username: USER,
    password: PASSWORD,
    email: EMAIL,
    consentHint: CONSENT_HINT,
    startUpstream: (auth) =>
      startFakeImapServer({
        tls: options.upstreamTls,
        checkAccessToken: (t) => auth.checkAccessToken(t),
        messages: options.messages ?? [],
        ...options.fake,
      }),
    connection: (auth, upstream, certs) =>
      fakeConnection(auth, {
        imap: options.imapServer ?? upstream.server,
        ca: certs.caPem,
        sasl: options.sasl ?? 'xoauth2',
      }),
    limits: options.limits,
    noLimiterDelay: true,
    seed: (context) => seedConsentGrant(context, options.staleAccessToken),
    listenerTls: options.listenerTls,
    proxyProtocol: options.proxyProtocol,
    createServer: createImapServer,
    upstreamPool: options.upstreamPool,
  });
}

/** `LOGIN` with the password as a non-synchronizing literal (RFC 7888), as many clients send it. */
export const literalLogin = (tag: string): string =>
  `${tag} LOGIN ${USER} {${Buffer.byteLength(PASSWORD)}+}\r\n${PASSWORD}\r\n`;

/**
 * For raw-socket test files: `setup()` starts an environment (plain local listener, implicit-TLS
 * upstream unless told otherwise), `open()` connects a raw client and reads the greeting; both are
 * closed after each test (this registers the afterEach hook, so call it at the top of the file).
 */
export function rawImapHarness(): {
  setup(options?: Partial<EnvOptions>): Promise<ImapEnv>;
  open(env: ImapEnv, tls?: boolean): Promise<RawImap>;
} {
  let env: ImapEnv | undefined;
  const clients: RawImap[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await env?.close();
    env = undefined;
  });
  return {
    async setup(options = {}) {
      env = await startImapEnv({ listenerTls: 'none', upstreamTls: 'implicit', ...options });
      return env;
    },
    async open(e, tls = false) {
      const c = await RawImap.connect(e.port, tls);
      clients.push(c);
      await c.waitFor('\r\n');
      return c;
    },
  };
}
