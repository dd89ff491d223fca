/**
 * Every limit of the IMAP front before login, each with its reason. The configurable ones come from
 * `settings.limits` in the config; the fixed ones are here because no client needs them changed.
 */
import type { LimitSettings } from '../../config/types.js';

export interface ImapLimits {
  /** Longest command line (between literals), CRLF excluded. RFC 9051 §4 suggests at least 8000 octets. */
  maxLineLength: number;
  /** Largest literal before login (LOGIN user/password, ID values); nobody's password is 64 KB. */
  maxLiteralSize: number;
  /** Literals in one command: LOGIN needs 2, ID up to 60 (30 fields); a flood of `{0}` must still stop. */
  maxLiteralsPerCommand: number;
  /** Commands (including SASL responses) before a successful login; a client hammering NOOP is dropped. */
  maxCommandsBeforeLogin: number;
  /** Failed logins on one connection, after which it is closed (the login limiter works across them). */
  maxFailedLogins: number;
  /** An idle client before login is dropped after this. */
  preAuthIdleTimeoutMs: number;
  /** One deadline for connecting to the upstream (DNS, TCP, TLS, greeting), and again for its login. */
  upstreamTimeoutMs: number;
}

export const MAX_LITERALS_PER_COMMAND = 64;

export function imapLimitsFrom(settings: LimitSettings): ImapLimits {
  return {
    maxLineLength: settings.maxLineLength,
    maxLiteralSize: settings.maxLiteralSize,
    maxLiteralsPerCommand: MAX_LITERALS_PER_COMMAND,
    maxCommandsBeforeLogin: settings.maxCommandsBeforeLogin,
    maxFailedLogins: settings.maxFailedLoginsPerConnection,
    preAuthIdleTimeoutMs: settings.preAuthIdleTimeoutMs,
    upstreamTimeoutMs: settings.upstreamConnectTimeoutMs,
  };
}

/** Sensible values for tests and for callers without a config. */
export const DEFAULT_IMAP_LIMITS: ImapLimits = {
  maxLineLength: 8192,
  maxLiteralSize: 64 * 1024,
  maxLiteralsPerCommand: MAX_LITERALS_PER_COMMAND,
  maxCommandsBeforeLogin: 50,
  maxFailedLogins: 3,
  preAuthIdleTimeoutMs: 60_000,
  upstreamTimeoutMs: 30_000,
};
