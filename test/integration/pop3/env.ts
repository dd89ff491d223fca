/**
 * Test environment for the POP3 proxy: the shared proxy environment (test/helpers/proxy-env.ts) with
 * a fake Gmail POP3 server as the upstream and a grant seeded as consent would store it.
 */
import type {
  ListenerConfig,
  SaslMechanism,
  Settings,
  TlsMode,
  UpstreamServer,
} from '../../../src/config/types.js';
import { createPop3Server } from '../../../src/proxy/pop3/server.js';
import { fakeConnection } from '../../helpers/fake-auth-server.js';
import {
  startFakePop3Server,
  type FakePop3Options,
  type FakePop3Server,
} from '../../helpers/fake-pop3-server.js';
import { seedConsentGrant, startProxyEnv, type ProxyEnv } from '../../helpers/proxy-env.js';
import type { UpstreamPoolSettings } from '../../../src/config/types.js';

export { eventually, makeMessage, sessionLines } from '../../helpers/proxy-env.js';

export const USER = 'legacy-client';
/** Spaces, quotes, a colon and UTF-8: PASS takes the rest of the line, curl splits -u at the first colon. */
export const PASSWORD = 'Pässwörd with spaces: "q" ✓';
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
  /** The listener's lowest TLS version (old devices). */
  minVersion?: ListenerConfig['minVersion'];
  /** Point the connection at another POP3 server than the fake (e.g. one that never answers). */
  pop3Server?: UpstreamServer;
  /** Leave the test CA out of the connection's `ca`: the upstream's certificate must then be refused. */
  untrustedUpstream?: boolean;
  fake?: Partial<Omit<FakePop3Options, 'tls' | 'checkAccessToken' | 'messages'>>;
  /** Warm upstream connections (default: none). */
  upstreamPool?: UpstreamPoolSettings;
}

export type Pop3Env = ProxyEnv<FakePop3Server>;

export function startPop3Env(options: EnvOptions): Promise<Pop3Env> {
  return startProxyEnv({
    name: 'pop3-env',
    username: USER,
    password: PASSWORD,
    email: EMAIL,
    consentHint: CONSENT_HINT,
    startUpstream: (auth) =>
      startFakePop3Server({
        tls: options.upstreamTls,
        checkAccessToken: (t) => auth.checkAccessToken(t),
        messages: options.messages ?? [],
        ...options.fake,
      }),
    connection: (auth, upstream, certs) =>
      fakeConnection(auth, {
        pop3: options.pop3Server ?? upstream.server,
        ...(options.untrustedUpstream ? {} : { ca: certs.caPem }),
        sasl: options.sasl ?? 'xoauth2',
      }),
    limits: options.limits,
    noLimiterDelay: true,
    seed: (context) => seedConsentGrant(context, options.staleAccessToken),
    listenerTls: options.listenerTls,
    minVersion: options.minVersion,
    createServer: createPop3Server,
    upstreamPool: options.upstreamPool,
  });
}
