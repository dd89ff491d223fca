/**
 * Every default of the configuration in one place. The reasons are in docs/configuration.md.
 */
import type { HttpSettings, NotifySettings, PostgresStoreSettings, Settings } from './types.js';

export const DEFAULT_LISTEN_HOST = '127.0.0.1';

export const DEFAULTS: {
  store: { path: string; keyFile: string };
  postgres: Pick<PostgresStoreSettings, 'refreshLeaseMs' | 'poolMax' | 'timeoutMs'>;
  settings: Settings & Required<Pick<Settings, 'upstreamPool'>>;
  notify: NotifySettings;
  http: Pick<HttpSettings, 'consentHint'> & Required<Pick<HttpSettings, 'metrics'>>;
} = {
  store: { path: './data/tokens.db', keyFile: './data/key' },
  // A token request times out after tokenRequestTimeout (30 s) at most; renewed every third of this,
  // so only a holder that died loses it, and the others wait at most this long for it.
  postgres: { refreshLeaseMs: 20_000, poolMax: 10, timeoutMs: 5_000 },
  settings: {
    // Microsoft's HVE rejects tokens close to expiry; 10 minutes also covers clock skew.
    refreshMarginMs: 10 * 60_000,
    // Google drops refresh tokens unused for 6 months, Microsoft's last 90 days: a daily refresh keeps both.
    keepAliveIntervalMs: 24 * 3_600_000,
    tokenRequestTimeoutMs: 30_000,
    credentialCacheMs: 5 * 60_000,
    // Long enough for a client to finish sending a message; short of systemd's and Docker's kill timeouts
    // once those are raised to match (the unit and compose file allow 45s).
    shutdownGraceMs: 30_000,
    limits: {
      // RFC 7162 asks servers to accept command lines of at least 8000 octets.
      maxLineLength: 8192,
      maxLiteralSize: 8192,
      maxCommandsBeforeLogin: 20,
      maxFailedLoginsPerConnection: 3,
      // RFC 9051 5.4: the pre-login autologout timer is at least one minute.
      preAuthIdleTimeoutMs: 60_000,
      // RFC 5321 4.5.3.2.7: an SMTP server waits at least 5 minutes for the client's next command.
      postLoginIdleTimeoutMs: 5 * 60_000,
      upstreamConnectTimeoutMs: 20_000,
      // Below Gmail's 35882577 so the proxy never promises more than the upstream takes.
      smtpMaxMessageSize: 35_000_000,
      // Eight messages of the largest size being received or sent at once.
      messageMemory: 280_000_000,
      maxConnections: 10_000,
      // Generous for a NAT in front of an office; still stops one host from holding every slot.
      maxConnectionsPerAddress: 50,
      // The idle timer restarts on every byte; this bounds a client that trickles.
      loginDeadlineMs: 5 * 60_000,
    },
    upstreamPool: {
      enabled: true,
      maxPerHost: 4,
      // A third of the shortest pre-login idle cut a server may make (RFC 9051 §5.4: one minute for
      // IMAP; SMTP servers wait 5 minutes, RFC 5321 §4.5.3.2.7). Gmail's and Exchange Online's own
      // pre-login cuts are not documented, so the floor the RFCs allow is what we stay under.
      maxIdleMs: 20_000,
    },
    loginLimiter: {
      freeFailures: 3,
      baseDelayMs: 500,
      // Like Dovecot's 2 s: longer, and mail clients report a dead server instead of a wrong password.
      maxDelayMs: 2_000,
      lockAfter: 10,
      // Above lockAfter so one device with a stale password behind an office NAT locks only itself.
      addressLockAfter: 30,
      lockMs: 15 * 60_000,
      windowMs: 15 * 60_000,
    },
  },
  notify: { minIntervalMs: 3_600_000 },
  http: { consentHint: 'command', metrics: true },
};
