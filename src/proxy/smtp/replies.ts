/**
 * Every reply the SMTP front sends itself, and the one place where a login failure becomes a reply
 * (RFC 4954 §6 and RFC 3463 codes), and where a send's outcome does (Graph mode). Single-line replies are strings without CRLF; the session adds it.
 */
import type { ProxyError } from '../../errors.js';
import type { SendOutcome } from '../../graph/types.js';
import type { Advertised, IntersectionRule } from '../shared/upstream-capabilities.js';
import type { SyntaxVerb } from './transaction-parser.js';

export const REPLY = {
  ok: '250 2.0.0 OK',
  bye: '221 2.0.0 Bye',
  readyForTls: '220 2.0.0 Ready to start TLS',
  authSucceeded: '235 2.7.0 Authentication successful',
  authRequired: '530 5.7.0 Authentication required',
  tlsRequired: '530 5.7.0 Must issue a STARTTLS command first',
  heloFirst: '503 5.5.1 Send EHLO first',
  unknownMechanism: '504 5.5.4 Unrecognized authentication mechanism',
  authCancelled: '501 5.7.0 Authentication cancelled',
  cannotDecode: '501 5.5.2 Cannot decode response',
  malformedPlain: '501 5.5.2 Malformed AUTH PLAIN response',
  badCredentials: '535 5.7.8 Authentication credentials invalid',
  temporaryFailure: '454 4.7.0 Temporary authentication failure, try again later',
  lineTooLong: '500 5.5.6 Line too long',
  unknownCommand: '500 5.5.2 Command not recognized',
  notImplemented: '502 5.5.1 Command not implemented',
  startTlsUnavailable: '502 5.5.1 STARTTLS not available',
  tlsActive: '503 5.5.1 TLS already active',
  tooManyCommands: '421 4.7.0 Too many commands before authentication, closing connection',
  tooManyFailures: '421 4.7.0 Too many failed authentication attempts, closing connection',
  idleTimeout: '421 4.4.2 Idle timeout, closing connection',
  http: '421 4.7.0 HTTP requests are not accepted here, closing connection',
  shutdown: '421 4.3.2 Service shutting down',
  /** For a client refused by the connection caps. */
  busy: '421 4.7.0 Too many connections, try again later',
  /** RFC 4954 AUTH LOGIN prompts: base64 "Username:" and "Password:". */
  loginUsername: '334 VXNlcm5hbWU6',
  loginPassword: '334 UGFzc3dvcmQ6',
  /** RFC 4954 §4: an empty server challenge is "334" followed by a space. */
  emptyChallenge: '334 ',
} as const;

/** The reply to a known command given arguments it cannot take. */
export function syntaxError(verb: 'EHLO' | 'HELO' | 'STARTTLS' | 'AUTH'): string {
  switch (verb) {
    case 'EHLO':
    case 'HELO':
      return `501 5.5.4 Syntax: ${verb} hostname`;
    case 'STARTTLS':
      return '501 5.5.4 Syntax: STARTTLS';
    case 'AUTH':
      return '501 5.5.4 Syntax: AUTH mechanism [initial-response]';
  }
}

export function greeting(serverName: string): string {
  return `220 ${serverName} ESMTP xoauth-proxy ready`;
}

export function heloReply(serverName: string): string {
  return `250 ${serverName}`;
}

/**
 * The upstream's EHLO keywords that may be advertised before AUTH: after it the client talks to the
 * upstream through a byte pipe, so every extension of the mail transaction works as the upstream
 * implements it. Never the upstream's AUTH or STARTTLS (those are our dialogue's), nor anything that
 * concerns the session itself (XCLIENT, VRFY, ETRN, BURL, which needs the upstream's IMAP).
 */
export const EHLO_PASS_THROUGH: IntersectionRule = {
  passThrough: new Set([
    'PIPELINING',
    '8BITMIME',
    'SMTPUTF8',
    'CHUNKING',
    'BINARYMIME',
    'DSN',
    'SIZE',
    'ENHANCEDSTATUSCODES',
    'DELIVERBY',
    'MT-PRIORITY',
    'FUTURERELEASE',
    'RRVS',
  ]),
  smallest: new Set(['SIZE']),
};

/**
 * Advertised while some reachable upstream's list is not known: only extensions every supported
 * upstream (Gmail, Exchange Online) has, because after AUTH the client talks to the upstream under
 * what it learned here.
 */
function fallbackExtensions(maxMessageSize: number): string[] {
  return ['PIPELINING', '8BITMIME', 'ENHANCEDSTATUSCODES', `SIZE ${maxMessageSize}`];
}

/**
 * The EHLO reply: the extensions all reachable upstreams share (or the fixed fallback), then our own
 * STARTTLS and AUTH.
 */
export function ehloReply(
  serverName: string,
  options: { maxMessageSize: number; upstream: Advertised; offerStartTls: boolean; offerAuth: boolean },
): string {
  const extensions =
    options.upstream.kind === 'learned'
      ? options.upstream.extensions
      : fallbackExtensions(options.maxMessageSize);
  const lines = [serverName, ...extensions];
  if (options.offerStartTls) lines.push('STARTTLS');
  if (options.offerAuth) lines.push('AUTH PLAIN LOGIN');
  return lines.map((text, i) => `250${i === lines.length - 1 ? ' ' : '-'}${text}`).join('\r\n');
}

/** An SMTP reply as received from the upstream: code plus text lines, joined with CRLF by `format`. */
const UPSTREAM_REPLY = /^([2-5]\d\d)[ -](.*)$/;
const ENHANCED = /^\d\.\d{1,3}\.\d{1,3}(?: |$)/;

/** Keeps a reply line to printable text, so nothing from elsewhere can split or forge a reply. */
function clean(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x1f\x7f]/g, ' ').trim();
}

/**
 * Picks the reply for a failed login from the error's code (ProxyError), the single edge where the
 * program's errors meet SMTP.
 * - bad-credentials: 535 5.7.8, nothing more (no hint whether the user exists).
 * - needs-consent: 535 5.7.8 plus where the mailbox owner grants access.
 * - token-unavailable / upstream-unavailable: 454 4.7.0, temporary, so clients queue and retry.
 * - upstream-rejected: the upstream's own 5xx reply when it gave one (Exchange's
 *   `535 5.7.139 ... SmtpClientAuthentication is disabled for the Tenant` tells the admin what to fix).
 */
export function loginFailureReply(error: ProxyError, consentHint?: string): string {
  switch (error.code) {
    case 'bad-credentials':
      return REPLY.badCredentials;
    case 'needs-consent': {
      const hint = consentHint === undefined ? '' : ` ${clean(consentHint)}`;
      return `535 5.7.8 Account needs consent from the mailbox owner.${hint}`;
    }
    case 'upstream-rejected': {
      const passed = upstreamReplyText(error.detail);
      if (passed !== undefined) return passed;
      const why = error.detail === undefined ? '' : `: ${clean(error.detail)}`;
      return `535 5.7.8 Upstream server refused the login${why}`;
    }
    case 'token-unavailable':
    case 'upstream-unavailable':
    default:
      return REPLY.temporaryFailure;
  }
}

/**
 * The upstream's failure reply carried in an error's detail (lines separated by LF), re-emitted as a
 * well-formed multi-line reply with its own code; undefined unless every line is a 5xx reply line.
 */
export function upstreamReplyText(detail: string | undefined): string | undefined {
  if (detail === undefined) return undefined;
  const lines = detail.split(/\r?\n/).filter((l) => l.length > 0);
  if (lines.length === 0) return undefined;
  const parsed = lines.map((l) => UPSTREAM_REPLY.exec(l));
  const code = parsed[0]?.[1];
  if (code === undefined || !code.startsWith('5') || parsed.some((m) => m === null || m[1] !== code))
    return undefined;
  // We advertised ENHANCEDSTATUSCODES (RFC 2034), so lines from a server without them get one.
  const fallback = code === '535' ? '5.7.8' : `${code[0]}.0.0`;
  return parsed
    .map((m, i) => {
      const text = clean(m?.[2] ?? '');
      const withEnhanced = ENHANCED.test(text) ? text : `${fallback} ${text}`.trim();
      return `${code}${i === parsed.length - 1 ? ' ' : '-'}${withEnhanced}`;
    })
    .join('\r\n');
}

// ---- the mail transaction after a local login (Graph mode) ------------------------------------

export const TRANSACTION_REPLY = {
  alreadyAuthenticated: '503 5.5.1 Already authenticated',
  noTlsAfterAuth: '503 5.5.1 STARTTLS not available after authentication',
  senderOk: '250 2.1.0 Sender OK',
  recipientOk: '250 2.1.5 Recipient OK',
  nestedMail: '503 5.5.1 Sender already specified',
  mailFirst: '503 5.5.1 Send MAIL first',
  rcptFirst: '503 5.5.1 Send RCPT first',
  dataAfterBdat: '503 5.5.1 DATA not allowed after BDAT in the same transaction',
  tooManyRecipients: '452 4.5.3 Too many recipients',
  messageTooLarge: '552 5.3.4 Message size exceeds fixed maximum message size',
  /** The process's message memory is taken by other sessions' messages: later, it will not be. */
  insufficientStorage: '452 4.3.1 Insufficient system storage, try again later',
  startData: '354 End data with <CR><LF>.<CR><LF>',
  vrfy: '252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery',
  badSender: '501 5.1.7 Bad sender address syntax',
  badRecipient: '501 5.1.3 Bad recipient address syntax',
  dsnUnsupported: '555 5.5.4 DSN is not supported',
  paramUnsupported: '555 5.5.4 Unsupported parameter',
  tooManyMessages: '421 4.7.0 Too many messages in one connection, closing connection',
} as const;

/** The reply to a transaction command with arguments it cannot take. */
export function transactionSyntaxError(verb: SyntaxVerb): string {
  switch (verb) {
    case 'EHLO':
    case 'HELO':
      return `501 5.5.4 Syntax: ${verb} hostname`;
    case 'MAIL':
      return '501 5.5.4 Syntax: MAIL FROM:<address> [parameters]';
    case 'RCPT':
      return '501 5.5.4 Syntax: RCPT TO:<address>';
    case 'DATA':
      return '501 5.5.4 Syntax: DATA';
    case 'BDAT':
      return '501 5.5.4 Syntax: BDAT size [LAST]';
    case 'RSET':
      return '501 5.5.4 Syntax: RSET';
    case 'QUIT':
      return '501 5.5.4 Syntax: QUIT';
  }
}

/**
 * EHLO after a local login: what the proxy's own transaction implements (no AUTH, no STARTTLS: both
 * are done). No DSN or BINARYMIME: Graph has no equivalent to hand them to.
 */
export function localEhloReply(serverName: string, maxMessageSize: number): string {
  const lines = [serverName, ...localExtensions(maxMessageSize)];
  return lines.map((text, i) => `250${i === lines.length - 1 ? ' ' : '-'}${text}`).join('\r\n');
}

/**
 * The keywords of the proxy's own transaction, also what a listener reaching Graph-mode connections
 * may advertise before login (see shared/upstream-capabilities).
 */
export function localExtensions(maxMessageSize: number): string[] {
  return ['PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', `SIZE ${maxMessageSize}`, 'CHUNKING'];
}

/** RFC 3030 §2: each BDAT chunk but the last is acknowledged with its size. */
export function bdatReceived(size: number): string {
  return `250 2.0.0 ${size} octets received`;
}

/** A reply line without its CRLF, at the most (RFC 5321 §4.5.3.1.5: 512 octets with it). */
const MAX_REPLY_LINE = 510;

/** Longest reason text we put in a reply; RFC 5321 §4.5.3.1.5 caps a reply line at 512 octets. */
export const MAX_REASON_LENGTH = 300;

/**
 * A sender's reason as one safe reply text: printable ASCII only (no CR/LF to split or forge a reply,
 * no control characters), spaces collapsed, capped in length.
 */
export function safeReason(reason: string): string {
  const text = reason
    .replace(/[^\x20-\x7e]+/g, ' ')
    .replace(/ {2,}/g, ' ')
    .trim();
  return text.length > MAX_REASON_LENGTH ? `${text.slice(0, MAX_REASON_LENGTH - 3).trimEnd()}...` : text;
}

function withReason(prefix: string, fallback: string, reason: string): string {
  const text = safeReason(reason);
  return `${prefix} ${text.length > 0 ? text : fallback}`;
}

/**
 * The DATA (or last BDAT) reply for how sending ended: the one place a SendOutcome becomes SMTP.
 * - temporary: 451, so the client queues and retries; 4.4.5 (congestion) when the sender was told
 *   when to come back (Graph's 429 Retry-After), 4.4.0 otherwise.
 * - needs-consent: 554 5.7.0 plus where the mailbox owner grants access, as a failed login says.
 */
export function sendOutcomeReply(outcome: SendOutcome, consentHint?: string): string {
  switch (outcome.kind) {
    case 'sent':
      return '250 2.0.0 OK, message accepted for delivery';
    case 'temporary': {
      const retry = outcome.retryAfterSeconds;
      const code = retry === undefined ? '451 4.4.0' : '451 4.4.5';
      const base = withReason(code, 'Temporary failure, message not sent', outcome.reason);
      return retry === undefined ? base : `${base}; try again in ${Math.max(0, Math.ceil(retry))} seconds`;
    }
    case 'send-as-denied':
      return withReason('550 5.7.60', 'Not allowed to send as this sender', outcome.reason);
    case 'too-large':
      return withReason('552 5.3.4', 'Message too large', outcome.reason);
    case 'rejected':
      return withReason('554 5.6.0', 'Message refused', outcome.reason);
    case 'needs-consent': {
      const hint = consentHint === undefined ? '' : safeReason(consentHint);
      const base = withReason('554 5.7.0', 'Account needs consent from the mailbox owner.', outcome.reason);
      if (hint.length === 0) return base;
      // RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets with its CRLF. The hint (where to
      // grant access) is what the reader needs, so the reason gives way to it.
      const room = MAX_REPLY_LINE - hint.length - 1;
      return `${base.length <= room ? base : `${base.slice(0, room - 3).trimEnd()}...`} ${hint}`;
    }
  }
}
