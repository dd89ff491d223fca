/**
 * Every limit of the POP3 front before login, each with its reason. The configurable ones come from
 * `settings.limits` in the config (shared with IMAP and SMTP); none is POP3-specific enough to need a
 * setting of its own.
 */
import type { LimitSettings } from '../../config/types.js';

export interface Pop3Limits {
  /**
   * Longest client line, CRLF excluded. RFC 2449 §4 caps commands at 255 octets, but a PLAIN response
   * with a long password, or a client that ignores the cap, needs more; the shared setting (8 KB) is
   * still far below anything that could hurt.
   */
  maxLineLength: number;
  /** Lines (commands and SASL responses) before a successful login; a client hammering CAPA is dropped. */
  maxCommandsBeforeLogin: number;
  /** Failed logins on one connection, after which it is closed (the login limiter works across them). */
  maxFailedLogins: number;
  /** RFC 1939 §3 "autologout timer": an idle client before login is dropped after this. */
  preAuthIdleTimeoutMs: number;
  /** One deadline for connecting to the upstream (DNS, TCP, TLS, greeting), and again for each login try. */
  upstreamTimeoutMs: number;
}

export function pop3LimitsFrom(settings: LimitSettings): Pop3Limits {
  return {
    maxLineLength: settings.maxLineLength,
    maxCommandsBeforeLogin: settings.maxCommandsBeforeLogin,
    maxFailedLogins: settings.maxFailedLoginsPerConnection,
    preAuthIdleTimeoutMs: settings.preAuthIdleTimeoutMs,
    upstreamTimeoutMs: settings.upstreamConnectTimeoutMs,
  };
}

/** Sensible values for tests and for callers without a config. */
export const DEFAULT_POP3_LIMITS: Pop3Limits = {
  maxLineLength: 8192,
  maxCommandsBeforeLogin: 20,
  maxFailedLogins: 3,
  preAuthIdleTimeoutMs: 60_000,
  upstreamTimeoutMs: 20_000,
};
