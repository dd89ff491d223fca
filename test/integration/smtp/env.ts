/**
 * Test environment for the SMTP proxy: the shared proxy environment (test/helpers/proxy-env.ts) with
 * a fake Gmail (smtp-server speaking XOAUTH2) as the upstream, the login limiter at short delays, and
 * the stored token in one of three states.
 */
import type { ListenerConfig, Settings, TlsMode, UpstreamServer } from '../../../src/config/types.js';
import type { CapabilitySource } from '../../../src/proxy/shared/upstream-capabilities.js';
import { createSmtpServer } from '../../../src/proxy/smtp/server.js';
import { fakeConnection } from '../../helpers/fake-auth-server.js';
import { startFakeSmtpUpstream, type FakeSmtpUpstream } from '../../helpers/fake-smtp-upstream.js';
import { startProxyEnv, type ProxyEnv } from '../../helpers/proxy-env.js';
import type { UpstreamPoolSettings } from '../../../src/config/types.js';

export { eventually, sessionLines } from '../../helpers/proxy-env.js';

export const USER = 'legacy-scanner';
export const PASSWORD = 'Sc4nner pässword!';
export const EMAIL = 'alice@example.com';
export const CONSENT_HINT = 'Ask the mailbox owner to run: xoauth-proxy consent alice@example.com';

export interface EnvOptions {
  listenerTls: TlsMode;
  upstreamTls: 'implicit' | 'starttls';
  minVersion?: ListenerConfig['minVersion'];
  settings?: Partial<Settings['limits']>;
  /**
   * The stored access token: 'valid' (default); 'stale': the store believes it has an hour left but
   * the provider already expired it (the upstream refuses it); 'expired': the store knows it expired.
   */
  accessToken?: 'valid' | 'stale' | 'expired';
  /** Whose mailbox the stored grant really is (default EMAIL); another one makes the upstream refuse every token. */
  grantFor?: string;
  loginLimiter?: Partial<Settings['loginLimiter']>;
  /** Point the connection at another SMTP server than the fake (e.g. one that stalls). */
  smtpServer?: UpstreamServer;
  /** What the sessions know of the upstreams' extensions (the daemon's cache); absent: none. */
  capabilities?: CapabilitySource;
  /** Warm upstream connections (default: none). */
  upstreamPool?: UpstreamPoolSettings;
}

export type SmtpEnv = ProxyEnv<FakeSmtpUpstream>;

export function startSmtpEnv(options: EnvOptions): Promise<SmtpEnv> {
  const kind = options.accessToken ?? 'valid';
  return startProxyEnv({
    name: 'xoauth-smtp',
    username: USER,
    password: PASSWORD,
    email: EMAIL,
    consentHint: CONSENT_HINT,
    startUpstream: (auth) =>
      startFakeSmtpUpstream({ tls: options.upstreamTls, checkAccessToken: (t) => auth.checkAccessToken(t) }),
    connection: (auth, upstream, certs) =>
      fakeConnection(auth, { smtp: options.smtpServer ?? upstream.server, ca: certs.caPem }),
    limits: options.settings,
    // Small delays keep the suite fast; the limiter itself is the real one.
    loginLimiter: { baseDelayMs: 50, maxDelayMs: 200, ...options.loginLimiter },
    seed: async ({ store, account, auth, connection }) => {
      const grant = auth.issueGrant(
        options.grantFor ?? EMAIL,
        kind === 'valid' ? {} : { accessTokenTtlSeconds: 0 },
      );
      await store.putToken({
        accountId: account.id,
        connection: connection.name,
        refreshToken: grant.refreshToken,
        accessToken: grant.accessToken,
        accessTokenExpiresAt: kind === 'expired' ? Date.now() - 1_000 : Date.now() + 3_600_000,
        scopes: ['https://mail.google.com/'],
        identity: EMAIL,
        state: 'active',
        lastRefreshAt: Date.now(),
        updatedAt: Date.now(),
      });
    },
    listenerTls: options.listenerTls,
    minVersion: options.minVersion,
    upstreamPool: options.upstreamPool,
    createServer: (listener, deps) =>
      createSmtpServer(
        listener,
        options.capabilities ? { ...deps, capabilities: options.capabilities } : deps,
        {
          serverName: 'proxy.test',
        },
      ),
  });
}
