/**
 * Every limit a protocol front applies before login, for all three protocols, and the few of the
 * sessions the proxy runs itself after login (SMTP through Microsoft Graph). The configurable ones
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
  /** SMTP SIZE advertised in EHLO (bytes); in Graph mode also the largest message accepted. */
  maxMessageSize: number;
  /** After login, where the proxy answers the client itself: an idle client is dropped after this. */
  postLoginIdleTimeoutMs: number;
  /** Messages one SMTP session may send through the proxy's own transaction; then 421 and close. */
  maxMessagesPerSession: number;
  /** Recipients of one message (Microsoft Graph takes at most 500 per message); more get 452 4.5.3. */
  maxRecipients: number;
}

export const MAX_LITERALS_PER_COMMAND = 64;
export const MAX_LITERAL_BYTES_PER_COMMAND = 32 * 1024;
/** Like Exchange Online's default of 100 messages per SMTP connection: a runaway script reconnects. */
export const MAX_MESSAGES_PER_SESSION = 100;
/** Microsoft Graph refuses a message with more than 500 recipients. */
export const MAX_RECIPIENTS = 500;

/**
 * Room in each relayed socket's write buffer, per direction. A TLS socket reports a write done only
 * a turn of the event loop later (a plain one at once, when the kernel took the bytes), so with
 * Node's 16 KiB default one full TLS record fills it: pipe() pauses its source after every record
 * and resumes it a turn later. Into a plain socket the relay gathers the chunks of one pass of the
 * event loop into one write, and this is the most a batch holds before the source pauses. Either
 * way only a reader that really is slow pauses its source, after 96 KiB plus the chunk in hand.
 */
export const RELAY_WRITE_BUFFER = 96 * 1024;

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
    postLoginIdleTimeoutMs: settings.postLoginIdleTimeoutMs,
    maxMessagesPerSession: MAX_MESSAGES_PER_SESSION,
    maxRecipients: MAX_RECIPIENTS,
  };
}

/**
 * Replies a session may have queued for a client that does not read them (pipelined NOOPs, say)
 * before it stops reading that client; fixed, since an honest client never gets near it.
 */
export const MAX_PENDING_OUTPUT_BYTES = 64 * 1024;
