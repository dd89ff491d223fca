/**
 * Every limit a protocol front applies before login, for all three protocols. The configurable ones
 * are `settings.limits` (their defaults live with the rest of the configuration's); the fixed ones
 * are here because no client needs them changed.
 */
import { DEFAULTS } from '../../config/defaults.js';
import type { LimitSettings } from '../../config/types.js';

export interface FrontLimits {
  /** Longest command line (IMAP: between literals), CRLF excluded. */
  maxLineLength: number;
  /** Largest single IMAP literal before login (LOGIN user/password, ID values). */
  maxLiteralSize: number;
  /** IMAP literals in one command: LOGIN needs 2, ID up to 60 (30 fields); a flood of `{0}` must stop. */
  maxLiteralsPerCommand: number;
  /**
   * All literal bytes of one IMAP command together. Without it one command could hold the per-literal
   * cap times the literal count in memory; a LOGIN or ID never comes near this.
   */
  maxLiteralBytesPerCommand: number;
  /** Commands (including SASL responses) before a successful login; a client hammering NOOP is dropped. */
  maxCommandsBeforeLogin: number;
  /** Failed logins on one connection, after which it is closed (the login limiter works across them). */
  maxFailedLogins: number;
  /** An idle client before login is dropped after this. */
  preAuthIdleTimeoutMs: number;
  /** From connect to login at most this long, however chatty the client. */
  loginDeadlineMs: number;
  /** One deadline for connecting to the upstream (DNS, TCP, TLS, greeting), and again for its login. */
  upstreamTimeoutMs: number;
  /** SMTP SIZE advertised in EHLO (bytes). */
  maxMessageSize: number;
}

export const MAX_LITERALS_PER_COMMAND = 64;
export const MAX_LITERAL_BYTES_PER_COMMAND = 32 * 1024;

/** The limits for a listener; without settings, the configuration's defaults. */
export function frontLimits(settings: LimitSettings = DEFAULTS.settings.limits): FrontLimits {
  return {
    maxLineLength: settings.maxLineLength,
    maxLiteralSize: settings.maxLiteralSize,
    maxLiteralsPerCommand: MAX_LITERALS_PER_COMMAND,
    maxLiteralBytesPerCommand: MAX_LITERAL_BYTES_PER_COMMAND,
    maxCommandsBeforeLogin: settings.maxCommandsBeforeLogin,
    maxFailedLogins: settings.maxFailedLoginsPerConnection,
    preAuthIdleTimeoutMs: settings.preAuthIdleTimeoutMs,
    loginDeadlineMs: settings.loginDeadlineMs,
    upstreamTimeoutMs: settings.upstreamConnectTimeoutMs,
    maxMessageSize: settings.smtpMaxMessageSize,
  };
}
